"""Every CLI prints an error the user can fix as one line, checks its outputs before the work.

Each case runs the command as a user does (a subprocess) and checks the whole of stderr: one
`Error: ...` line and exit status 1, the traceback only with --verbosity=1; a bug keeps its
traceback. Outputs: an existing one is refused without --overwrite, an unwritable location
before any input is read (shown by giving a missing input too: the error names the output),
a full file system names the file, and a run killed while saving leaves the old output.
"""

import os
import pathlib
import signal
import subprocess
import sys

import keras
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.cli import entry
from matpac_keras.workdir_lock import workdir_lock

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(module: str, *args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"matpac_keras.cli.{module}", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=ENV,
    )


def _one_line(result: subprocess.CompletedProcess) -> str:
    """The single `Error:` line of a failed run (asserting it is all of stderr)."""
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    backbone = MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=64)
    backbone.build(None)
    backbone.save(path)
    return path


# --- The shared entry point ------------------------------------------------------------------

APP = """
import errno, sys
from absl import app
from matpac_keras.cli.entry import run_app
from matpac_keras.errors import InputError

def main(argv):
    kind = argv[1]
    if kind == "input":
        raise InputError("clips/a.wav: not an audio file")
    if kind == "usage":
        raise app.UsageError("--frames needs --mode=fast")
    if kind == "missing":
        open("nowhere/x.wav")
    if kind == "full":
        raise OSError(errno.ENOSPC, "No space left on device", "out/emb.npz")
    if kind == "bug":
        raise KeyError("a bug")

run_app(sys.modules[__name__], main)
"""


@pytest.mark.parametrize(
    "kind, line",
    [
        ("input", "Error: clips/a.wav: not an audio file"),
        ("usage", "Error: --frames needs --mode=fast"),
        ("missing", "Error: nowhere/x.wav: No such file or directory"),
        ("full", "Error: out/emb.npz: No space left on device"),
    ],
)
def test_user_errors_are_one_line_and_verbose_shows_the_traceback(kind, line, tmp_path):
    command = [sys.executable, "-c", APP, kind]
    quiet = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=ENV)
    assert _one_line(quiet) == line
    verbose = subprocess.run(
        [*command, "--verbosity=1"], capture_output=True, text=True, cwd=tmp_path, env=ENV
    )
    assert verbose.returncode == 1
    assert verbose.stderr.startswith("Traceback (most recent call last):")
    assert verbose.stderr.strip().splitlines()[-1] == line


def test_a_bug_keeps_its_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", APP, "bug"], capture_output=True, text=True, cwd=tmp_path, env=ENV
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "KeyError: 'a bug'"
    assert "Error: " not in result.stderr.replace("KeyError: ", "")


def test_error_line_names_the_file():
    assert entry.error_line(OSError(30, "Read-only file system", "/x/m.keras")) == (
        "Error: /x/m.keras: Read-only file system"
    )
    assert entry.error_line(FileNotFoundError("--model m.keras: no such file")) == (
        "Error: --model m.keras: no such file"
    )
    assert entry.error_line(ValueError("two\n  lines")) == "Error: two lines"
    assert entry.is_user_error(OSError(28, "No space left on device"))
    assert not entry.is_user_error(OSError(5, "Input/output error"))
    assert not entry.is_user_error(ValueError("a bug"))


# --- Flags validated at the door -------------------------------------------------------------


@pytest.mark.parametrize(
    "module, flag, message",
    [
        ("convert", "--num_heads=-4", "flag --num_heads=-4: -4 is not a positive integer"),
        ("convert", "--num_heads=0", "flag --num_heads=0: 0 is not a positive integer"),
        ("convert", "--predictor_num_heads=0", "flag --predictor_num_heads=0: 0 is not a positive"),
        ("convert", "--num_mels=0", "flag --num_mels=0: 0 is not a positive integer"),
        ("export", "--crop_frames=0", "flag --crop_frames=0: 0 is not a positive integer"),
        ("evaluate", "--learning_rate=0", "flag --learning_rate=0.0: must be in (0, inf)"),
        ("evaluate", "--temporal_support=1,x", "--temporal_support: expected numbers of seconds"),
        ("evaluate", "--hop=0.5", "--hop and --aggregate need --temporal_support"),
        ("tag", "--top_k=0", "flag --top_k=0: 0 is not a positive integer"),
    ],
)
def test_out_of_range_flags_are_refused_naming_the_flag(module, flag, message, tmp_path):
    required = {
        "convert": ["--checkpoint=c.pt", "--output=o"],
        "export": ["--model=m.keras", "--output=o"],
        "evaluate": ["--task=esc50", "--features=logmel_stats"],
        "tag": ["--model=m.keras", "a.wav"],
    }[module]
    line = _one_line(_cli(module, *required, flag, cwd=tmp_path))
    assert line.startswith(f"Error: {message}"), line
    assert os.listdir(tmp_path) == []


def test_missing_required_flag_is_one_line(tmp_path):
    line = _one_line(_cli("convert", "--checkpoint=c.pt", cwd=tmp_path))
    assert line.startswith("Error: flag --output=None: Flag --output must have a value")


# --- matpac-convert --------------------------------------------------------------------------


def test_convert_missing_checkpoint(tmp_path):
    missing = tmp_path / "missing.pt"
    result = _cli("convert", f"--checkpoint={missing}", f"--output={tmp_path / 'm'}")
    assert _one_line(result) == f"Error: --checkpoint {missing}: no such file"
    verbose = _cli(
        "convert", f"--checkpoint={missing}", f"--output={tmp_path / 'm'}", "--verbosity=1"
    )
    assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == f"Error: --checkpoint {missing}: no such file"
    assert os.listdir(tmp_path) == []


def test_convert_checks_the_output_before_reading_the_checkpoint(tmp_path):
    existing = tmp_path / "m.keras"
    existing.write_bytes(b"the user's model")
    missing = tmp_path / "missing.pt"
    line = _one_line(_cli("convert", f"--checkpoint={missing}", f"--output={existing}"))
    assert line == f"Error: --output {existing}: already exists (pass --overwrite to replace it)"
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder")
    line = _one_line(_cli("convert", f"--checkpoint={missing}", f"--output={notes / 'm.keras'}"))
    assert line == f"Error: --output {notes / 'm.keras'}: {notes} is a file, not a folder"
    line = _one_line(_cli("convert", f"--checkpoint={missing}", f"--output={notes}"))
    assert line == f"Error: --output {notes}: is a file; a folder is written here"
    line = _one_line(_cli("convert", f"--checkpoint={missing}", f"--output={tmp_path}/"))
    assert line == (  # a preset directory: an existing, non-empty one is kept
        f"Error: --output {tmp_path}: already exists and is not empty (pass --overwrite to "
        "replace it)"
    )
    assert existing.read_bytes() == b"the user's model"


def test_unwritable_output_folders_are_refused_before_work(immutable_folder, tiny_model, tmp_path):
    missing = tmp_path / "missing.pt"
    output = immutable_folder / "m.keras"
    line = _one_line(_cli("convert", f"--checkpoint={missing}", f"--output={output}"))
    assert line.startswith(
        f"Error: --output {output}: cannot write in the folder {immutable_folder}: "
    )
    out_dir = immutable_folder / "eval"
    line = _one_line(
        _cli("evaluate", "--task=gtzan", f"--model={tiny_model}", f"--output_dir={out_dir}")
    )  # the dataset is not prepared: the output is checked first
    assert line.startswith(f"Error: {out_dir / 'results.md'}: cannot write in the folder")
    line = _one_line(_cli("export", f"--model={missing}", f"--output={immutable_folder / '1'}"))
    assert line.startswith(f"Error: --output {immutable_folder / '1'}: cannot write in the folder")


@pytest.fixture()
def tiny_file_system(tmp_path):
    """A 48 KiB tmpfs: writing a model there fails with ENOSPC."""
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_full_file_system_names_the_file(tiny_file_system, fixtures_dir):
    output = tiny_file_system / "m.keras"
    checkpoint = fixtures_dir / "encoder_only.pt"  # 4 heads: no guess, so no warning
    result = _cli("convert", f"--checkpoint={checkpoint}", "--num_heads=4", f"--output={output}")
    assert _one_line(result) == f"Error: {output}: cannot write it: No space left on device"
    assert os.listdir(tiny_file_system) == []  # no partial model, no temporary


KILLED_SAVE = """
import os, signal, sys
import keras

save = keras.Model.save

def save_half_then_die(model, path, *args, **kwargs):
    save(model, path, *args, **kwargs)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # as a kill during the write leaves it
    os.kill(os.getpid(), signal.SIGKILL)

keras.Model.save = save_half_then_die
from matpac_keras.cli import convert

sys.argv = ["matpac-convert", *sys.argv[1:]]
convert.run()
"""


def test_convert_killed_while_saving_keeps_the_old_model(tmp_path, fixtures_dir, tiny_model):
    output = tmp_path / "m.keras"
    output.write_bytes(tiny_model.read_bytes())  # the user's earlier model
    before = output.read_bytes()
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, f"--checkpoint={fixtures_dir / 'train_full.pt'}"]
        + [f"--output={output}", "--overwrite"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert output.read_bytes() == before  # the old model, whole
    assert isinstance(keras.saving.load_model(output, compile=False), MatpacBackbone)
    [stale] = [p for p in os.listdir(tmp_path) if p != "m.keras"]
    assert stale.startswith(".tmp-m.keras.")  # hidden; never loaded by mistake


# --- matpac-export ---------------------------------------------------------------------------


def test_export_checks_the_output_before_loading_anything(tmp_path, tiny_model):
    missing = tmp_path / "missing.keras"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "saved_model.pb").write_text("an older export")
    line = _one_line(_cli("export", f"--model={missing}", f"--output={busy}"))
    assert line == (
        f"Error: --output {busy}: already exists and is not empty (pass --overwrite to replace it)"
    )
    line = _one_line(
        _cli("export", f"--model={tiny_model}", f"--output={tiny_model}", "--overwrite")
    )
    assert line == f"Error: --output {tiny_model}: is a file; a folder is written here"
    assert isinstance(keras.saving.load_model(tiny_model, compile=False), MatpacBackbone)


# --- matpac-evaluate -------------------------------------------------------------------------


def test_evaluate_checks_the_model_before_any_dataset(tmp_path):
    """More cases in-process: tests/evaluation/evaluate_cli_test.py."""
    empty = tmp_path / "tfds"  # nothing prepared: reaching TFDS would fail differently
    probe = tmp_path / "probe.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(probe)
    line = _one_line(
        _cli(
            "evaluate",
            "--task=gtzan",
            f"--data_dir={empty}",
            f"--model={probe}",
            f"--output_dir={tmp_path / 'out'}",
        )  # fmt: skip
    )
    assert line.startswith(f"Error: --model {probe}: holds a Sequential"), line
    assert not empty.exists() and not (tmp_path / "out").exists()


# --- matpac-finetune -------------------------------------------------------------------------


def _finetune(workdir, *args):
    config = (
        []
        if any(a.startswith("--config=") for a in args)
        else ["--config=configs/finetune.py:tiny"]
    )
    return _cli("finetune", *config, f"--workdir={workdir}", *args)


def test_finetune_refuses_a_workdir_in_use_naming_its_pid(tmp_path):
    workdir = tmp_path / "run"
    with workdir_lock(workdir):  # as a first run would hold it
        line = _one_line(_finetune(workdir, f"--config.data_dir={tmp_path / 'tfds'}"))
    assert line.startswith(f"Error: --workdir {workdir}: in use by pid {os.getpid()} on "), line
    assert sorted(os.listdir(workdir)) == [".lock"]


def test_finetune_bad_fields_are_one_line(tmp_path):
    """More cases in-process: tests/evaluation/finetune_cli_test.py."""
    line = _one_line(_finetune(tmp_path / "run", "--config.epochs=0"))
    assert line == "Error: config.epochs=0: must be in [1, inf)"
    line = _one_line(_finetune(tmp_path / "run", "--config.epochs=two"))  # parsing the flags
    assert line.startswith("Error: ") and "epochs" in line
    line = _one_line(_finetune(tmp_path / "run", "--config=configs/finetune.py:bogus"))
    assert line.startswith("Error: flag --config=configs/finetune.py:bogus: ")
    assert line.endswith(
        "ValueError: unknown variant 'bogus': expected '', 'fsdd', 'tiny', 'audioset' or "
        "'audioset_tiny' (see --helpshort)"
    )  # the config file's error, not its traceback
    line = _one_line(_finetune(tmp_path / "run", "--config=configs/missing.py"))
    assert line == "Error: --config configs/missing.py: no such file"
    assert not (tmp_path / "run").exists()
