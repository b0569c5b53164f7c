"""Issue 25, item 5: every numeric field of every config has a range, checked before any work.

Out-of-range values, NaN and infinities are refused naming the field and its range, by the one
validator (`matpac_keras.config_ranges`) that pretraining, both fine-tuning recipes and
`matpac-evaluate` share; an unknown or mistyped `--config.*` field is one `Error:` line.
"""

import pathlib

import pytest

from matpac_keras import config_ranges
from matpac_keras.config_file import load_config
from matpac_keras.errors import InputError
from matpac_keras.evaluation import finetune
from matpac_keras.training import audioset_finetune, experiment
from tests.cli.run_cli import run_cli

pytestmark = pytest.mark.single_backend  # config checks: no backend computation

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
PRETRAINING = [
    ("matpac.py", None),
    ("matpac.py", "runlocal"),
    ("matpac_plusplus.py", None),
    ("matpac_plusplus.py", "runlocal"),
    ("demo.py", None),
    ("demo.py", "tiny"),
    ("demo.py", "fsdd"),
]
FINETUNING = ["", "fsdd", "tiny", "audioset", "audioset_tiny"]


def _table(variant: str) -> dict:
    if variant.startswith("audioset"):
        return config_ranges.AUDIOSET_FINETUNING
    return config_ranges.FINETUNING


@pytest.mark.parametrize("name, variant", PRETRAINING)
def test_every_numeric_pretraining_field_has_a_range_that_its_default_meets(name, variant):
    config = load_config(CONFIGS / name, variant)
    fields = config_ranges.numeric_fields(config)
    assert {"model.depth", "optim.lr", "model.teacher_temperature[1]"} <= set(fields)
    assert set(fields) <= set(config_ranges.PRETRAINING), "fields without a range"
    config_ranges.check_ranges(config, config_ranges.PRETRAINING)


@pytest.mark.parametrize("variant", FINETUNING)
def test_every_numeric_finetuning_field_has_a_range_that_its_default_meets(variant):
    config = load_config(CONFIGS / "finetune.py", variant)
    fields = config_ranges.numeric_fields(config)
    assert {"learning_rate", "backbone_overrides.depth"} <= set(fields)
    assert set(fields) <= set(_table(variant)), "fields without a range"
    config_ranges.check_ranges(config, _table(variant))


def _set(config, field: str, value) -> None:
    *parents, name = field.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    node[name] = value


@pytest.mark.parametrize(
    "field, value, message",
    [
        # model.depth=-1 trained a 0-block model; optim.lr=nan failed only at step 2.
        ("model.depth", -1, "config.model.depth=-1: must be in [1, 256]"),
        ("model.embed_dim", 0, "config.model.embed_dim=0: must be in [1, 16384]"),
        ("model.max_frames", 10**9, "config.model.max_frames=1000000000: must be in [16, 65536]"),
        ("model.mask_ratio", 1.0, "config.model.mask_ratio=1.0: must be in (0, 1)"),
        ("train.epochs", -1.0, "config.train.epochs=-1.0: must be in (0, inf)"),
        ("optim.lr", float("nan"), "config.optim.lr=nan: must be a finite number in [0, inf)"),
        ("optim.lr", float("inf"), "config.optim.lr=inf: must be a finite number in [0, inf)"),
        ("optim.beta_2", 1.0, "config.optim.beta_2=1.0: must be in [0, 1)"),
        ("train.verbose", 3, "config.train.verbose=3: must be in [0, 2]"),
        ("seed", -1, "config.seed=-1: must be in [0, inf)"),
        ("data.num_examples", 0, "config.data.num_examples=0: must be in [1, inf)"),
        ("data.synthetic.seconds", -0.5, "config.data.synthetic.seconds=-0.5: must be in (0, inf)"),
    ],
)
def test_pretraining_values_out_of_range_are_refused_before_work(field, value, message):
    config = load_config(CONFIGS / "demo.py", "tiny")
    experiment.check_config(config)
    _set(config, field, value)
    with pytest.raises(InputError) as raised:
        experiment.check_config(config)
    assert str(raised.value).startswith(message)


def test_a_range_refuses_bools_strings_and_floats_for_integers():
    assert config_ranges.count(1).error(2.0) == "expected an integer"
    assert config_ranges.count(1).error(True) == "expected an integer"
    assert config_ranges.POSITIVE.error("1") == "expected a number"
    assert config_ranges.count(1, optional=True).error(None) is None
    assert config_ranges.count(1).error(None) == "expected an integer"


def test_a_tuple_field_is_checked_item_by_item():
    config = load_config(CONFIGS / "demo.py", "tiny")
    config.model.teacher_temperature = (0.04, float("nan"))
    with pytest.raises(InputError, match=r"config.model.teacher_temperature\[1\]=nan"):
        experiment.check_config(config)


@pytest.mark.parametrize(
    "variant, field, value, message",
    [
        ("tiny", "learning_rate", float("nan"), "config.learning_rate=nan: must be a finite"),
        ("tiny", "weight_decay", float("inf"), "config.weight_decay=inf: must be a finite"),
        ("tiny", "seed", -3, "config.seed=-3: must be in [0, inf)"),
        ("tiny", "backbone_overrides.depth", -1, "config.backbone_overrides.depth=-1: must be"),
        ("audioset_tiny", "mixup_alpha", float("nan"), "config.mixup_alpha=nan: must be a"),
        ("audioset_tiny", "workers", 0, "config.workers=0: must be in [1, 256]"),
    ],
)
def test_finetuning_values_out_of_range_are_refused(variant, field, value, message):
    config = load_config(CONFIGS / "finetune.py", variant)
    check = audioset_finetune.check_config if variant.startswith("audioset") else None
    check = check or finetune.check_config
    check(config)
    _set(config, field, value)
    with pytest.raises(InputError) as raised:
        check(config)
    assert str(raised.value).startswith(message)


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    "module, args, line",
    [
        # Each was a traceback or absl's "FATAL Flags parsing error" before.
        (
            "train",
            ["--config=configs/demo.py:tiny", "--config.train.epochs=-1"],
            "Error: config.train.epochs=-1.0: must be in (0, inf)",
        ),
        (
            "train",
            ["--config=configs/demo.py:tiny", "--config.optim.lr=nan"],
            "Error: config.optim.lr=nan: must be a finite number in [0, inf)",
        ),
        (
            "train",
            ["--config=configs/demo.py:tiny", "--config.train.epochs=abc"],
            "Error: flag --config.train.epochs=abc: could not convert string to float: 'abc' "
            "(see --helpshort)",
        ),
        (
            "finetune",
            ["--config=configs/finetune.py:tiny", "--config.nope=1"],
            "Error: --config.nope=1: the config has no field nope (see --helpshort)",
        ),
        (
            "finetune",
            ["--config=configs/finetune.py:tiny", "--config.learning_rat=1"],
            "Error: --config.learning_rat=1: the config has no field learning_rat (did you mean "
            "--config.learning_rate?) (see --helpshort)",
        ),
        (
            "evaluate",
            ["--task=esc50", "--features=logmel_stats", "--weight_decay=nan"],
            "Error: flag --weight_decay=nan: must be a finite number in [0, inf) (see --helpshort)",
        ),
    ],
)
def test_bad_config_values_are_one_line_before_any_work(module, args, line, tmp_path):
    out = ["--output_dir", str(tmp_path / "out")] if module == "evaluate" else []
    workdir = [f"--workdir={tmp_path / 'run'}"] if module != "evaluate" else []
    result = run_cli(module, *args, *workdir, *out, ok=False)
    assert result.returncode == 1
    assert _error_line(result) == line
    assert list(tmp_path.iterdir()) == []
