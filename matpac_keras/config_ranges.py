"""The allowed range of every numeric field of every config, and the one validator that checks
them: pretraining (`configs/matpac.py` and the files built on it), fine-tuning
(`configs/finetune.py`, both recipes) and `matpac-evaluate`'s probe and run options.

Each table maps a field's dotted path (a sequence's item as `path[i]`) to a `Range`.
`check_ranges` raises `InputError` for the first field out of its range, before any work, as

    config.train.epochs=-1.0: must be in (0, inf)

NaN and infinities are refused everywhere (the upper bound `inf` is open); an integer field
refuses a float and every numeric field a bool or a string. The tables hold every numeric field
of the configs (tests/reliability/config_test.py checks it for every config variant), so a new
field needs its range here.
"""

import dataclasses
import math
import numbers
import re

from matpac_keras.errors import InputError


@dataclasses.dataclass(frozen=True)
class Range:
    """`low` .. `high` (None: unbounded), each end included unless `low_open`/`high_open`;
    `integer`: whole numbers only; `optional`: None is allowed too (a field left unset)."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def interval(self) -> str:
        left = "(" if self.low_open else "["
        if self.high is None:
            return f"{left}{self.low}, inf)"
        return f"{left}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def error(self, value) -> str | None:
        """Why `value` is out of this range, or None."""
        if value is None and self.optional:
            return None
        kind = "an integer" if self.integer else "a number"
        numeric = numbers.Integral if self.integer else numbers.Real  # NumPy's scalars too
        if isinstance(value, bool) or not isinstance(value, numeric):
            return f"expected {kind}{' or None' if self.optional else ''}"
        if not math.isfinite(value):
            return f"must be a finite number in {self.interval()}"
        too_low = value < self.low or (value == self.low and self.low_open)
        too_high = self.high is not None and (
            value > self.high or (value == self.high and self.high_open)
        )
        return f"must be in {self.interval()}" if too_low or too_high else None


def count(low: int = 1, high: int | None = None, optional: bool = False) -> Range:
    """Whole numbers from `low` (to `high`)."""
    return Range(low, high, integer=True, optional=optional)


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)  # [0, 1]
OPEN_FRACTION = Range(0, 1, low_open=True, high_open=True)  # (0, 1)
SEED = count(0)
# Model sizes: bounded so that a typo cannot allocate the machine's memory before it fails.
WIDTH = count(1, 16_384)
DEPTH = count(1, 256)
HEADS = count(1, 1024)
MAX_FRAMES = count(16, 65_536)  # 16 frames (one patch) .. 655 s

# A backbone's constructor arguments, checked when one is built or loaded (a preset's or a
# `.keras` file's config.json included: `backbone.check_backbone_config`), before anything is
# allocated. The sizes are those of the config tables above; the patch size is free here.
BACKBONE = {
    "embed_dim": WIDTH,
    "depth": DEPTH,
    "num_heads": HEADS,
    "mlp_ratio": Range(0, 64, low_open=True),
    "patch_size": count(1, 256),
    "num_mels": count(1, 1024),
    "max_frames": count(1, MAX_FRAMES.high),
}


PRETRAINING = {
    "seed": SEED,
    "model.embed_dim": count(1, WIDTH.high, optional=True),
    "model.depth": count(1, DEPTH.high, optional=True),
    "model.num_heads": count(1, HEADS.high, optional=True),
    "model.max_frames": MAX_FRAMES,
    "model.predictor_dim": WIDTH,
    "model.predictor_depth": DEPTH,
    "model.predictor_heads": HEADS,
    "model.num_prediction_heads": count(1, 64),
    "model.head_hidden_dim": WIDTH,
    "model.head_bottleneck_dim": WIDTH,
    "model.num_classes": count(1, 1_048_576),
    "model.mask_ratio": OPEN_FRACTION,
    "model.num_masked_views": count(1, 64),
    "model.alpha": FRACTION,
    "model.student_temperature": POSITIVE,
    "model.teacher_temperature[0]": POSITIVE,
    "model.teacher_temperature[1]": POSITIVE,
    "model.mcl_temperature[0]": POSITIVE,
    "model.mcl_temperature[1]": Range(0, 1, low_open=True),
    "model.center_momentum": FRACTION,
    "model.encoder_ema[0]": FRACTION,
    "model.encoder_ema[1]": FRACTION,
    "model.head_ema[0]": FRACTION,
    "model.head_ema[1]": FRACTION,
    "data.num_examples": count(1, optional=True),
    "data.crop_frames": MAX_FRAMES,
    "data.shuffle_buffer": count(1),
    "data.synthetic.clips_per_class": count(1),
    "data.synthetic.seconds": POSITIVE,
    "train.global_batch_size": count(1),
    "train.epochs": POSITIVE,
    "train.warmup_epochs": NON_NEGATIVE,
    "train.teacher_temperature_epochs": NON_NEGATIVE,
    "train.log_every": count(1),
    "train.checkpoint_every": count(1),
    "train.keep_checkpoints": count(1),
    "train.verbose": count(0, 2),
    "train.steps_per_execution": count(1),
    "optim.lr": NON_NEGATIVE,  # 0: the weights stay as they are (tests of init_from)
    "optim.final_lr": NON_NEGATIVE,
    "optim.beta_1": Range(0, 1, high_open=True),
    "optim.beta_2": Range(0, 1, high_open=True),
    "optim.epsilon": POSITIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.global_clipnorm": Range(0, optional=True),  # 0 or None: no clipping
    "evaluate.clips_per_class": count(1),
}

_BACKBONE_OVERRIDES = {
    "backbone_overrides.embed_dim": count(1, WIDTH.high, optional=True),
    "backbone_overrides.depth": count(1, DEPTH.high, optional=True),
    "backbone_overrides.num_heads": count(1, HEADS.high, optional=True),
    "backbone_overrides.max_frames": count(16, MAX_FRAMES.high, optional=True),
}

# The fields of both fine-tuning recipes (configs/finetune.py's `_data_and_model`).
_FINETUNING_COMMON = {
    "seed": SEED,
    **_BACKBONE_OVERRIDES,
    "dropout": Range(0, 1, high_open=True),
    "erase_factor": FRACTION,
    "num_erasures": count(0),
    "learning_rate": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "layer_decay": Range(0, 1, low_open=True),
    "clip_norm": NON_NEGATIVE,
    "embed_batch_size": count(1),
    "crop_frames": MAX_FRAMES,
    "batch_size": count(1),
    "mixup_alpha": NON_NEGATIVE,
}

FINETUNING = {  # the in-memory tasks (evaluation/finetune.py)
    **_FINETUNING_COMMON,
    "valid_fraction": OPEN_FRACTION,
    "epochs": count(1),
    "warmup_epochs": count(0),
    "patience": count(0),
}

AUDIOSET_FINETUNING = {  # training/audioset_finetune.py
    **_FINETUNING_COMMON,
    "steps": count(1),
    "warmup_steps": count(0),
    "log_every": count(1),
    "checkpoint_every": count(1),
    "keep_checkpoints": count(1),
    "eval_every": count(0),
    "test_clips": count(1),
    "workers": count(1, 256),
}

# matpac-evaluate's probe (`evaluation.probe.ProbeConfig`) and run (`runner.RunConfig`)
# options and its other numbers, by flag name (None: the --protocol preset's value).
EVALUATION = {
    "init_seed": SEED,
    "embed_batch_size": count(1),
    "learning_rate": POSITIVE,
    "batch_size": count(1),
    "max_epochs": count(1),
    "patience": count(0, optional=True),
    "weight_decay": NON_NEGATIVE,
    "runs": count(1, 1000),
    "first_seed": SEED,
    "valid_fraction": OPEN_FRACTION,
}

_ITEM = re.compile(r"^(.*)\[(\d+)\]$")


def field_value(config, path: str):
    """The value at `path` ("a.b", "a.b[1]") of a ConfigDict, dict or object with attributes."""
    item = _ITEM.match(path)
    if item:
        sequence = field_value(config, item.group(1))
        index = int(item.group(2))
        if not isinstance(sequence, list | tuple) or len(sequence) <= index:
            raise InputError(f"config.{item.group(1)}={sequence!r}: expected more numbers")
        return sequence[index]
    node = config
    for key in path.split("."):
        node = node[key] if isinstance(node, dict) or hasattr(node, "keys") else getattr(node, key)
    return node


def check_ranges(config, ranges: dict[str, Range], prefix: str = "config.") -> None:
    """InputError naming `<prefix><field>=<value>` and its range for the first field of `ranges`
    whose value in `config` is out of it (fields `config` lacks are skipped)."""
    for path, allowed in ranges.items():
        try:
            value = field_value(config, path)
        except (KeyError, AttributeError):
            continue
        reason = allowed.error(value)
        if reason is not None:
            raise InputError(f"{prefix}{path}={value!r}: {reason}")


def numeric_fields(config, prefix: str = "") -> list[str]:
    """The dotted paths of every numeric (int or float, not bool) leaf of a ConfigDict, items of
    sequences as `path[i]`: what the tables must cover."""
    paths = []
    for key in config.keys():
        value, path = config[key], f"{prefix}{key}"
        if hasattr(value, "keys"):
            paths += numeric_fields(value, path + ".")
        elif isinstance(value, list | tuple):
            paths += [f"{path}[{i}]" for i, v in enumerate(value) if _is_number(v)]
        elif _is_number(value) or _numeric_placeholder(config, key):
            paths.append(path)
    return paths


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric_placeholder(config, key) -> bool:
    """A ConfigDict field left None whose declared type is a number (`placeholder(int)`)."""
    field = getattr(config, "_fields", {}).get(key)
    field_type = getattr(field, "_field_type", None)
    return field_type in (int, float)
