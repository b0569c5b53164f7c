"""docs/adapt.md's "Adapt MATPAC to your audio", as a user runs it, on tiny stand-ins:
`matpac-convert` (the fixtures' encoder-only `.pt` for the published file) -> `matpac-train
--config.init_from=<the preset>` (`configs/demo.py:tiny` for the demo config, one epoch, on 60
FSDD recordings for "your audio") -> `matpac-evaluate` of the starting and of the adapted
encoder (3 probe epochs, one run).

Reads TFDS (TensorFlow) for the evaluation: run once, under TensorFlow; `init_from` itself is
tested on every backend in tests/training/init_from_test.py.
"""

import pathlib

import pytest

from tests.cli.run_cli import run_cli
from tests.evaluation.evaluate_cli_test import _jackson_subset

pytestmark = [pytest.mark.single_backend, pytest.mark.slow]  # four commands, ~2 min

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_convert_adapt_and_evaluate(fixtures_dir, fsdd_dir, tmp_path):
    audio = _jackson_subset(fsdd_dir, tmp_path / "my_audio")
    start, workdir = tmp_path / "matpac_base", tmp_path / "runs" / "adapted"
    checkpoint = fixtures_dir / "encoder_only.pt"  # its heads: 4 (not the published 64 wide)
    run_cli("convert", f"--checkpoint={checkpoint}", f"--output={start}", "--num_heads=4")
    trained = run_cli(
        "train",
        f"--config={ROOT / 'configs' / 'demo.py'}:tiny",
        f"--workdir={workdir}",
        f"--config.init_from={start}",
        f"--config.data.source={audio}",
        "--config.evaluate.linear_probe=False",
        "--config.train.epochs=1",
        "--config.train.warmup_epochs=0.5",
        "--config.train.teacher_temperature_epochs=0.5",
        "--config.train.verbose=0",
    )
    lines = trained.stdout.splitlines()
    assert lines[0] == (
        f"config.init_from {start} (MatpacBackbone preset): the student encoder and its EMA "
        "teacher start from it; the predictor and the classification heads start fresh (seeded "
        "init); the step counter, optimizer state and schedules start at 0"
    )
    assert lines[1] == (
        "config.init_from: the architecture is the checkpoint's: model.embed_dim 32 -> 128, "
        "model.depth 1 -> 3, model.num_heads 2 -> 4, model.max_frames 32 -> 128"
    )
    assert (workdir / "backbone.keras").is_file()
    for name, model in (("before", start), ("after", workdir / "backbone.keras")):
        evaluated = run_cli(
            "evaluate",
            "--task=matpac_spoken_digit",
            f"--model={model}",
            f"--manual_dir={audio}",
            f"--data_dir={tmp_path / 'tfds'}",
            f"--output_dir={tmp_path / name}",
            "--max_epochs=3",
            "--runs=1",
        )
        assert "| spoken_digit | accuracy |" in evaluated.stdout
        assert (tmp_path / name / "results.csv").is_file()
