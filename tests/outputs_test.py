"""`matpac_keras.outputs`: outputs checked before the work, written atomically, never half-written.

The kill tests SIGKILL a child process inside `atomic_output` (while writing, and between the
two renames of a folder replacement) and check what a user then finds on disk.
"""

import errno
import os
import pathlib
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from matpac_keras.outputs import (
    OutputError,
    atomic_output,
    check_output,
    check_writable_folder,
    remove_stale_temporaries,
    with_suffix,
)

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _hidden(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _killed_inside(script: str) -> subprocess.CompletedProcess:
    """Runs `script` in a child that must be SIGKILLed (by itself or by us on "KILL ME")."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = child.stdout.readline()
    if line.strip() == "KILL ME":
        child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, (line, stderr)
    return child


def test_kill_during_the_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=np.arange(5.0))
    _killed_inside(
        f"""
        import sys, time
        from matpac_keras.outputs import atomic_output
        with atomic_output({str(path)!r}, overwrite=True) as temporary:
            with open(temporary, "wb") as f:
                f.write(b"PK\\x03\\x04 half of a zip")  # a truncated npz, as a kill leaves
                f.flush()
                print("KILL ME", flush=True)
                time.sleep(60)
        """
    )
    with np.load(path) as arrays:  # the old output, whole
        np.testing.assert_array_equal(arrays["embeddings"], np.arange(5.0))
    [stale] = [name for name in _hidden(tmp_path)]
    assert stale.startswith(".tmp-emb.npz.") and stale.endswith(".npz")
    remove_stale_temporaries(tmp_path, "emb.npz")
    assert _hidden(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["emb.npz"]


def test_kill_before_the_first_output_leaves_none(tmp_path):
    path = tmp_path / "model.keras"
    _killed_inside(
        f"""
        import time
        from matpac_keras.outputs import atomic_output
        with atomic_output({str(path)!r}) as temporary:
            temporary.write_bytes(b"partial")
            print("KILL ME", flush=True)
            time.sleep(60)
        """
    )
    assert not path.exists()  # no truncated model.keras for a user to load
    remove_stale_temporaries(tmp_path, "model.keras")
    assert os.listdir(tmp_path) == []


def test_kill_between_the_renames_of_a_folder_replacement(tmp_path):
    path = tmp_path / "1"
    path.mkdir()
    (path / "saved_model.pb").write_text("old")
    _killed_inside(
        f"""
        import os, signal
        from matpac_keras import outputs
        replace = os.replace
        calls = []

        def replace_then_die(source, target):
            if calls:  # the second rename: new folder in
                os.kill(os.getpid(), signal.SIGKILL)
            calls.append(source)
            replace(source, target)

        outputs.os.replace = replace_then_die
        with outputs.atomic_output({str(path)!r}, overwrite=True, folder=True) as temporary:
            (temporary / "saved_model.pb").write_text("new")
        """
    )
    assert not path.exists()  # the old folder is aside, the new one still temporary
    assert len(_hidden(tmp_path)) == 2
    remove_stale_temporaries(tmp_path, "1")
    assert os.listdir(tmp_path) == ["1"] and (path / "saved_model.pb").read_text() == "old"


def test_existing_output_is_refused_without_overwrite(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(OutputError, match=f"{path}: already exists .pass --overwrite"):
        check_output(path)
    with pytest.raises(OutputError, match=f"^--output {path}: already exists"):
        check_output(path, flag="--output")  # the flag that named it, first
    with pytest.raises(OutputError, match="already exists"):
        with atomic_output(path) as temporary:
            temporary.write_text("new")
    assert path.read_text() == "old" and _hidden(tmp_path) == []
    assert check_output(path, overwrite=True) == path
    with atomic_output(path, overwrite=True) as temporary:
        temporary.write_text("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["model.keras"]


def test_output_appearing_during_the_write_is_not_replaced(tmp_path):
    path = tmp_path / "results.csv"
    with pytest.raises(OutputError, match="appeared while writing"):
        with atomic_output(path) as temporary:
            temporary.write_text("ours")
            path.write_text("another run's")
    assert path.read_text() == "another run's" and os.listdir(tmp_path) == ["results.csv"]


def test_an_error_inside_the_block_leaves_nothing(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with pytest.raises(KeyError):
        with atomic_output(path, overwrite=True) as temporary:
            temporary.write_text("half")
            raise KeyError("a bug")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]
    with pytest.raises(RuntimeError, match="nothing was written"):
        with atomic_output(tmp_path / "b.json"):
            pass


def test_a_full_disk_names_the_output(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(OutputError, match=f"{path}: cannot write it: No space left on device"):
        with atomic_output(path) as temporary:
            temporary.write_bytes(b"begun")
            with open("/dev/full", "wb") as full:  # a real ENOSPC from the kernel
                full.write(b"more")
                full.flush()
    assert os.listdir(tmp_path) == []


def test_wrong_kind_is_refused_even_with_overwrite(tmp_path):
    folder, file = tmp_path / "folder", tmp_path / "file.keras"
    folder.mkdir()
    file.write_text("a model")
    with pytest.raises(OutputError, match=f"{folder}: is a folder; a file is written here"):
        check_output(folder, overwrite=True)
    with pytest.raises(OutputError, match=f"{file}: is a file; a folder is written here"):
        check_output(file, overwrite=True, folder=True)
    assert file.read_text() == "a model"
    with pytest.raises(OutputError, match="/dev/null: is not a regular file"):
        check_output("/dev/null", overwrite=True)  # renaming over it would replace the device


def test_folder_output_replaces_the_old_folder(tmp_path):
    path = tmp_path / "export" / "1"
    with atomic_output(path, folder=True) as temporary:
        assert temporary.is_dir() and temporary.parent == path.parent
        (temporary / "old.pb").write_text("old")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    with pytest.raises(OutputError, match="already exists"):
        check_output(path, folder=True)
    with atomic_output(path, overwrite=True, folder=True) as temporary:
        (temporary / "new.pb").write_text("new")
        (temporary / "variables").mkdir()
    assert sorted(os.listdir(path)) == ["new.pb", "variables"]
    assert os.listdir(path.parent) == ["1"]  # no folder left aside
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, folder=True) == empty  # nothing to lose: no --overwrite needed
    with atomic_output(empty, folder=True) as temporary:
        (temporary / "a").write_text("a")
    assert os.listdir(empty) == ["a"]


def test_suffix_handling(tmp_path):
    assert with_suffix("out/x", ".npz") == pathlib.Path("out/x.npz")
    assert with_suffix("out/x.npz", ".npz") == pathlib.Path("out/x.npz")
    assert with_suffix("x.v1", ".keras") == pathlib.Path("x.v1.keras")
    assert check_output(tmp_path / "x", suffix=".npz") == tmp_path / "x.npz"
    path = check_output(tmp_path / "emb.v2", suffix=".npz")
    with atomic_output(path) as temporary:
        assert temporary.name.endswith(".v2.npz")
        np.savez(temporary, a=np.ones(3))  # np.savez adds .npz unless the name has it
    assert os.listdir(tmp_path) == ["emb.v2.npz"]
    with np.load(path) as arrays:
        np.testing.assert_array_equal(arrays["a"], np.ones(3))


def test_folder_that_cannot_hold_the_output_is_refused_before_work(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("x")
    message = f"{file}/sub/model.keras: {file} is a file, not a folder"
    with pytest.raises(OutputError, match=message):
        check_output(file / "sub" / "model.keras")
    if os.path.isdir("/proc"):  # os.access says writable to root; creating a file fails
        message = "/proc/model.keras: cannot write in the folder /proc: "
        with pytest.raises(OutputError, match=message):
            check_output("/proc/model.keras")
    created = tmp_path / "new" / "deeper"
    assert check_writable_folder(created) == tmp_path and not created.exists()


def test_unwritable_folder_is_refused_before_work(immutable_folder):
    with pytest.raises(OSError) as raw:  # what writing there without the check would give
        (immutable_folder / "probe").write_text("x")
    assert raw.value.errno in (errno.EPERM, errno.EACCES)
    message = f"model.keras: cannot write in the folder {immutable_folder}: "
    with pytest.raises(OutputError, match=message):
        check_output(immutable_folder / "model.keras")
    with pytest.raises(OutputError, match="1: cannot write in the folder"):
        check_output(immutable_folder / "1", folder=True)
    with pytest.raises(OutputError, match=f"a/b: cannot write in the folder {immutable_folder}:"):
        check_writable_folder(immutable_folder / "a" / "b")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a mode-0555 folder")
def test_read_only_mode_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    try:
        with pytest.raises(OutputError, match="cannot write in the folder"):
            check_output(folder / "model.keras")
    finally:
        folder.chmod(0o755)


def test_stale_temporaries_of_other_outputs_are_kept(tmp_path):
    ours = tmp_path / ".tmp-x.12-abcdefgh"
    other = tmp_path / ".tmp-x.keras.12-abcdefgh.keras"  # the output "x.keras", not "x"
    unrelated = tmp_path / ".tmp-x.notes"
    for path in (ours, other, unrelated):
        path.write_text("")
    remove_stale_temporaries(tmp_path, "x")
    assert _hidden(tmp_path) == [".tmp-x.keras.12-abcdefgh.keras", ".tmp-x.notes"]
    remove_stale_temporaries(tmp_path, "x.keras")
    assert _hidden(tmp_path) == [".tmp-x.notes"]
