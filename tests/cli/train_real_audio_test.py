"""`matpac-train` on real audio, as a user runs it: from a folder of FSDD recordings and from a
TFDS-prepared FSDD, killed with SIGKILL and resumed; sources that cannot give one batch.

40 recordings of the Free Spoken Digit Dataset (../shared/data/fsdd/recordings, or
$MATPAC_FSDD) are copied into a manual dir once per module; that folder is the folder source and
`matpac_spoken_digit` is prepared from it for the TFDS source. The runs use
`configs/matpac.py:runlocal` (D=32, one block, batch 4) on 16-frame crops, under the current
KERAS_BACKEND: a run SIGKILLed half way and started again must end with the checkpoints of an
uninterrupted run, bit for bit, across epochs of the real-audio pipeline.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from matpac_keras.frontend import samples_for_frames
from matpac_keras.training.checkpoint import list_checkpoints, read_checkpoint
from matpac_keras.training.metrics_log import read_metrics
from tests.cli.train_test import REPO, _env, _kill_mid_way, _run, assert_same_checkpoint

CONFIG = "configs/matpac.py:runlocal"
CROP = 16
OVERRIDES = (
    f"--config.data.crop_frames={CROP}",
    "--config.train.checkpoint_every=2",
    "--config.train.keep_checkpoints=100",
    "--config.train.tensorboard=False",
)
EPOCHS = 2
CLIPS = 40


@pytest.fixture(scope="module")
def manual_dir(fsdd_recordings, tmp_path_factory) -> pathlib.Path:
    """40 recordings spread over digits, speakers and repetitions, copied into a folder."""
    folder = tmp_path_factory.mktemp("fsdd40")
    for path in sorted(fsdd_recordings.glob("*.wav"))[::75][:CLIPS]:
        shutil.copy(path, folder / path.name)
    assert len(list(folder.iterdir())) == CLIPS
    return folder


@pytest.fixture(scope="module")
def tfds_dir(manual_dir, tmp_path_factory) -> pathlib.Path:
    """`matpac_spoken_digit` prepared from the 40 recordings; its version directory."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from matpac_datasets import builder_class

    builder = builder_class("spoken_digit")(data_dir=os.fspath(tmp_path_factory.mktemp("tfds")))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    )
    return pathlib.Path(builder.data_dir)


def _usable(folder) -> int:
    """Recordings of at least one crop at 16 kHz (8 kHz files: twice their frames)."""
    return sum(soundfile.info(p).frames * 2 >= samples_for_frames(CROP) for p in folder.iterdir())


def _kill_and_resume(tmp_path_factory, source: str, total: int) -> dict:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax")))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    options = dict(config=CONFIG, epochs=EPOCHS)
    overrides = (f"--config.data.source={source}", *OVERRIDES)
    reference, resumed = tmp_path_factory.mktemp("reference"), tmp_path_factory.mktemp("resumed")
    finished = _run(reference, *overrides, **options)
    killed_at = _kill_mid_way(resumed, *overrides, total=total, **options)
    resume = _run(resumed, *overrides, **options)
    return dict(
        reference=reference,
        resumed=resumed,
        killed_at=killed_at,
        stdout=finished.stdout,
        resume_stderr=resume.stderr,
    )


def _assert_resumed_exactly(runs: dict, total: int) -> None:
    killed_at = runs["killed_at"]
    assert total // 2 <= killed_at < total
    assert f"step {killed_at} of {total}" in runs["resume_stderr"]
    reference = dict(list_checkpoints(runs["reference"]))
    resumed = dict(list_checkpoints(runs["resumed"]))
    assert max(reference) == max(resumed) == total
    for step in sorted(s for s in reference if s > killed_at):
        assert_same_checkpoint(reference[step], resumed[step])
    metadata, final = read_checkpoint(resumed[total])
    assert int(final["model"]["matpac_pretrainer/step"]) == total
    per_epoch = total // EPOCHS  # the last step ends the second epoch
    assert metadata["data_position"] == {"epoch": 1, "batch": per_epoch}
    assert metadata["epoch_lengths"] == [per_epoch]
    assert read_metrics(runs["reference"]) == read_metrics(runs["resumed"])


@pytest.mark.slow  # 3 training processes
def test_folder_run_killed_and_resumed_ends_as_an_uninterrupted_one(manual_dir, tmp_path_factory):
    usable = _usable(manual_dir)
    total = EPOCHS * usable // 4  # data.num_examples counted: the usable recordings
    runs = _kill_and_resume(tmp_path_factory, os.fspath(manual_dir), total)
    _assert_resumed_exactly(runs, total)
    config = (runs["reference"] / "config.json").read_text()
    assert f'"num_examples": {usable}' in config
    dropped = CLIPS - usable
    line = f"data: {CLIPS} clips in folder {manual_dir}: {usable} used, {dropped} dropped"
    assert line in runs["stdout"].splitlines()[0]
    assert f"trained {total} of {total} steps" in runs["stdout"]


@pytest.mark.slow  # 3 training processes
def test_tfds_run_killed_and_resumed_ends_as_an_uninterrupted_one(tfds_dir, tmp_path_factory):
    import tensorflow_datasets as tfds

    train_clips = tfds.builder_from_directory(os.fspath(tfds_dir)).info.splits["train"]
    assert 8 <= train_clips.num_examples < CLIPS  # repetitions 0-4 are the test split
    total = EPOCHS * train_clips.num_examples // 4
    runs = _kill_and_resume(tmp_path_factory, os.fspath(tfds_dir), total)
    _assert_resumed_exactly(runs, total)
    assert f"TFDS matpac_spoken_digit[train] ({tfds_dir})" in runs["stdout"]


def test_tf_data_dataset_source_trains(tfds_dir, tmp_path):
    """In Python: `train(config, workdir, source=<tf.data.Dataset>)`, its length counted."""
    import tensorflow_datasets as tfds

    from matpac_keras.config_file import load_config
    from matpac_keras.training.loop import train

    dataset = tfds.builder_from_directory(os.fspath(tfds_dir)).as_dataset(split="train")
    config = load_config(pathlib.Path(REPO) / "configs" / "matpac.py", "runlocal")
    config.data.source = "a tf.data.Dataset"  # recorded only; the dataset replaces it
    config.data.crop_frames = CROP
    config.train.update(dict(verbose=0, tensorboard=False, epochs=1.0))
    result = train(config, tmp_path, source=dataset)
    count = int(dataset.cardinality())
    assert result.failure is None and result.step == result.total_steps == count // 4
    assert result.data_summary.startswith(f"{count} clips in a tf.data.Dataset: ")
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, count // 4 + 1))
    assert all(np.isfinite(r["loss"]) for r in rows)


@pytest.mark.slow  # 2 training runs
def test_log_mel_in_the_step_trains_as_the_pipelines(tfds_dir, tmp_path):
    """`data.logmel_in_step=True`: waveform crops in, their log-mel computed by the training step:
    the same losses, step for step, as log-mel crops from the pipeline, on real recordings."""
    from matpac_keras.config_file import load_config
    from matpac_keras.training.loop import train

    rows = {}
    for in_step in (False, True):
        config = load_config(pathlib.Path(REPO) / "configs" / "matpac.py", "runlocal")
        config.data.source = os.fspath(tfds_dir)
        config.data.crop_frames = CROP
        config.data.logmel_in_step = in_step
        config.train.update(dict(verbose=0, tensorboard=False, epochs=2.0))  # 2 x 5 steps
        result = train(config, tmp_path / str(in_step))
        assert result.failure is None and result.step == result.total_steps == 10
        rows[in_step] = read_metrics(tmp_path / str(in_step))
    assert [r["step"] for r in rows[True]] == [r["step"] for r in rows[False]]
    for a, b in zip(rows[False], rows[True], strict=True):
        for key in ("loss", "loss_cls", "loss_pred"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)


def _train_fails(tmp_path, source, *overrides) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-c",
        "import sys; from matpac_keras.cli.train import run; sys.argv[0] = 'matpac-train'; run()",
        f"--config={CONFIG}",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.source={source}",
        f"--config.data.crop_frames={CROP}",
        *overrides,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=REPO, env=_env()
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not list_checkpoints(tmp_path / "run")
    return result


@pytest.mark.single_backend  # refused from the files' headers, before any backend work
def test_folder_of_corrupt_files_fails_at_once_naming_the_reason(tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for i in range(6):
        (folder / f"clip{i}.wav").write_bytes(np.random.default_rng(i).bytes(3000))
    result = _train_fails(tmp_path, folder)
    assert result.stderr.splitlines()[-1] == (
        f"Error: config.data.source: 6 clips in folder {folder}: 0 used, 6 dropped (bad_audio 6): "
        "fewer usable clips than one batch of config.train.global_batch_size=4"
    )


@pytest.mark.single_backend  # refused from the files' headers, before any backend work
def test_fewer_usable_clips_than_one_batch_fails_at_once(manual_dir, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for path in sorted(manual_dir.iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    usable = _usable(folder)
    (folder / "broken.flac").write_bytes(b"fLaC not really")
    result = _train_fails(tmp_path, folder, "--config.train.global_batch_size=1000")
    too_short = f", too_short {3 - usable}" if usable < 3 else ""
    assert result.stderr.splitlines()[-1] == (
        f"Error: config.data.source: 4 clips in folder {folder}: {usable} used, {4 - usable} "
        f"dropped (bad_audio 1{too_short}): fewer usable clips than one batch of "
        "config.train.global_batch_size=1000"
    )


@pytest.mark.single_backend
def test_tfds_directory_prepared_before_the_package_rename_opens(tfds_dir, tmp_path, monkeypatch):
    """A directory whose features.json names `datasets.audio_builder_lib.PcmAudio` (prepared
    when the builders' package was `datasets/`) opens, and reads the same examples."""
    import tensorflow_datasets as tfds

    from matpac_keras.data.inventory import LEGACY_FEATURE_NAMES, open_source, take_inventory

    legacy = tmp_path / "matpac_spoken_digit" / "1.0.0"
    shutil.copytree(tfds_dir, legacy)
    features = legacy / "features.json"
    text = features.read_text()
    assert "matpac_datasets.audio_builder_lib.PcmAudio" in text
    features.write_text(
        text.replace("matpac_datasets.audio_builder_lib", "datasets.audio_builder_lib")
    )
    registered = tfds.features.FeatureConnector._registered_features
    for name in LEGACY_FEATURE_NAMES:  # as in a fresh process: the alias not registered yet
        monkeypatch.delitem(registered, name, raising=False)
    with pytest.raises(ValueError, match="Unrecognized FeatureConnector type"):
        tfds.builder_from_directory(os.fspath(legacy))  # the user's error before the fix
    builder = open_source(os.fspath(legacy))
    inventory = take_inventory(builder, CROP, "train")
    reference = tfds.builder_from_directory(os.fspath(tfds_dir))
    assert inventory.found == reference.info.splits["train"].num_examples
    old = [ex["audio"] for ex in tfds.as_numpy(builder.as_dataset(split="test"))]
    new = [ex["audio"] for ex in tfds.as_numpy(reference.as_dataset(split="test"))]
    assert len(old) == len(new) > 0
    for a, b in zip(old, new, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.single_backend
def test_folder_inventory_counts_from_headers_and_excludes(manual_dir, tmp_path):
    from matpac_keras.data.inventory import take_inventory

    folder = tmp_path / "nested"
    (folder / "a" / "b").mkdir(parents=True)
    files = sorted(manual_dir.iterdir())[:6]
    for path in files:
        shutil.copy(path, folder / "a" / "b" / path.name)
    (folder / "a" / "empty.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio")
    long_enough = [p for p in files if soundfile.info(p).frames * 2 >= samples_for_frames(24)]
    inventory = take_inventory(os.fspath(folder), 24)
    assert inventory.found == 7 and inventory.usable == len(long_enough)
    assert sorted(map(os.path.basename, inventory.files)) == [p.name for p in long_enough]
    assert inventory.dropped.counts == {"bad_audio": 1, "too_short": 6 - len(long_enough)}
    kept = take_inventory(os.fspath(folder), 24, exclude=("*_[0-4].wav", "empty.*"))
    test_split = [p for p in files if int(p.stem.split("_")[2]) < 5]
    assert kept.found == 6 - len(test_split)
