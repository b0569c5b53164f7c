"""`config.init_from`: a run that starts from a checkpoint (further pre-training).

The starting point is one of:
  - an official `.pt` (or an `.npz` of its tensors): encoder-only (the published layout) or a
    full training state_dict (student, predictor `decoder.*`, heads, centre, teachers `_ema` /
    `_cls_head_ema`), read by `torch_checkpoint.read_state_dict` and loaded by
    `convert.load_official_weights`;
  - a `.keras` file or a keras-hub preset directory of a `MatpacBackbone` or of a
    `MatpacPretrainer` (its `save_to_preset` writes `task.json` and `task.weights.h5`).

The architecture is the checkpoint's: it takes the place of `config.model`'s (`ARCHITECTURE`
fields, and those of a full checkpoint, `PRETRAINER_FIELDS`), and `apply_architecture` names
every field that changed. A `.pt` file does not show its attention heads: they come from
`config.model.num_heads` (or the variant's) and `predictor_heads`, and must divide the widths.
An encoder (encoder-only `.pt`, backbone `.keras` / preset) gives the student encoder and its
EMA teacher; the predictor and the heads start from the run's seeded initialisation. A full
checkpoint gives all of it (student, predictor, heads, teachers, centre). Either way the step
counter, the optimizer state and the schedules start at 0, and the mask generator is the run's.
"""

import contextlib
import copy
import dataclasses
import json
import os

import numpy as np
from keras import ops
from ml_collections import ConfigDict

from matpac_keras.backbone import BACKBONE_VARIANTS
from matpac_keras.convert import (
    backbone_config,
    has_classification_head,
    is_training_checkpoint,
    load_official_weights,
    pretrainer_config,
)
from matpac_keras.errors import InputError
from matpac_keras.pretrainer import MatpacPretrainer
from matpac_keras.saving import (
    TASK_CONFIG,
    import_model_module,
    load_backbone,
    load_model,
    read_keras_config,
    read_preset_config,
)
from matpac_keras.torch_checkpoint import read_state_dict

FIELD = "config.init_from"
# config.model fields an encoder fixes, then those a full checkpoint fixes too.
ARCHITECTURE = ("embed_dim", "depth", "num_heads", "max_frames")
PRETRAINER_FIELDS = (
    "predictor_dim",
    "predictor_depth",
    "predictor_heads",
    "num_prediction_heads",
    "head_hidden_dim",
    "head_bottleneck_dim",
    "num_classes",
)
# MatpacBackbone arguments that config.model lacks: passed to `build_backbone` as they are.
BACKBONE_ARGUMENTS = ("mlp_ratio", "patch_size", "num_mels", "stored_positions")
BACKBONE, PRETRAINER = "matpac_keras>MatpacBackbone", "matpac_keras>MatpacPretrainer"
# The sub-layers of a pretrainer whose weights a full checkpoint gives (not `step`, nor the
# mask generator: the run's own start at 0 and from its seed).
PRETRAINER_LAYERS = ("backbone", "predictor", "student_head", "teacher_encoder", "teacher_head")


@dataclasses.dataclass
class InitSource:
    """A checkpoint to start from, read (its architecture) but not loaded yet.

    Attributes:
        path: the file or preset directory.
        kind: what it is, in words ("official encoder-only .pt", "MatpacPretrainer preset").
        full: True: student, predictor, heads, teachers and centre; False: the encoder only.
        model: config.model fields of its architecture (`ARCHITECTURE`, `PRETRAINER_FIELDS`).
        backbone: MatpacBackbone arguments config.model lacks (`BACKBONE_ARGUMENTS`).
    """

    path: str
    kind: str
    full: bool
    model: dict
    backbone: dict
    state: dict | None = dataclasses.field(default=None, repr=False)  # a .pt's tensors

    def describe(self) -> str:
        """The run's first log line: what was loaded and what starts fresh."""
        if self.full:
            loaded = (
                "the student encoder, predictor, classification heads, EMA teachers and centre "
                "start as saved"
            )
        else:
            loaded = (
                "the student encoder and its EMA teacher start from it; the predictor and the "
                "classification heads start fresh (seeded init)"
            )
        return (
            f"{FIELD} {self.path} ({self.kind}): {loaded}; the step counter, optimizer state "
            "and schedules start at 0"
        )

    def record(self) -> dict:
        """What a run's checkpoints record of it (JSON): its architecture, for resumes."""
        return dict(path=self.path, kind=self.kind, model=self.model, backbone=self.backbone)

    def load(self, pretrainer: MatpacPretrainer) -> None:
        """Gives `pretrainer` (built from the architecture of `apply_architecture`) the
        checkpoint's weights: all of them (full), or the encoder and its teacher."""
        with _naming(self.path):
            if self.state is not None:
                load_official_weights(pretrainer if self.full else pretrainer.backbone, self.state)
            elif self.full:
                saved = _load_pretrainer(self.path)
                for name in PRETRAINER_LAYERS:
                    _copy_weights(getattr(saved, name), getattr(pretrainer, name), self.path)
                pretrainer.center.assign(ops.convert_to_numpy(saved.center))
            else:
                _copy_weights(load_backbone(self.path), pretrainer.backbone, self.path)
        if not self.full:  # the teacher encoder := the loaded student; the heads stay as built
            pretrainer.copy_students_to_teachers(heads=False)
        self.state = None  # loaded: the tensors are not needed any more


def read_init_source(config: ConfigDict) -> InitSource:
    """The `InitSource` of `config.init_from`, its architecture checked against the config.

    Raises:
        InputError: naming config.init_from and the path: missing, not a checkpoint, a model
            of another kind (an audio classifier, ...); a head count of config.model that does
            not divide the checkpoint's width (naming the field); or a config.data.crop_frames
            longer than the checkpoint's max_frames (naming both).
    """
    path = os.fspath(config.init_from)
    if not os.path.exists(path):
        raise InputError(f"{FIELD} {path}: no such file or preset directory")
    with _naming(path):
        if os.path.isdir(path):
            source = _read_preset(path)
        elif path.endswith(".keras"):
            source = _read_keras(path)
        else:
            source = _read_torch(path, config.model)
    crop = config.data.crop_frames
    if crop > source.model["max_frames"]:
        raise InputError(
            f"config.data.crop_frames={crop} exceeds the max_frames={source.model['max_frames']} "
            f"of {FIELD} {path}: crops must fit the checkpoint's position grid"
        )
    return source


def apply_architecture(config: ConfigDict, model: dict) -> tuple[ConfigDict, str]:
    """A copy of `config` whose config.model takes the `model` fields, and the log line naming
    every field that changed (old -> new; an unset size is its variant's)."""
    config = copy.deepcopy(config)
    changes = []
    for field, new in model.items():
        old = _effective(config.model, field)
        if old != new:
            changes.append(f"model.{field} {old} -> {new}")
        config.model[field] = new
    changed = ", ".join(changes) if changes else "no field of config.model changed"
    return config, f"{FIELD}: the architecture is the checkpoint's: {changed}"


def _effective(model: ConfigDict, field: str):
    value = model[field]
    if value is None and field in ("embed_dim", "depth", "num_heads"):
        return BACKBONE_VARIANTS.get(model.variant, {}).get(field)
    return value


@contextlib.contextmanager
def _naming(path: str):
    """Re-raises an InputError (or a missing file) as one naming config.init_from and the
    path first; one that names its config field already passes as it is."""
    try:
        yield
    except (InputError, FileNotFoundError) as error:
        message = str(error)
        if message.startswith("config."):
            raise
        message = message.split(f"{path}: ", 1)[-1]
        raise InputError(f"{FIELD} {path}: {message}") from error


def _split(backbone: dict) -> tuple[dict, dict]:
    """MatpacBackbone arguments -> (config.model fields, the other arguments)."""
    return (
        {key: backbone[key] for key in ARCHITECTURE},
        {key: backbone[key] for key in BACKBONE_ARGUMENTS},
    )


def _from_saved_config(path: str, kind: str, saved: dict) -> InitSource:
    """The InitSource of a saved (serialised) MatpacBackbone or MatpacPretrainer config."""
    import_model_module(saved)
    if saved.get("registered_name") not in (BACKBONE, PRETRAINER):
        raise InputError(
            f"{path}: holds a {saved.get('class_name')} ({saved.get('module') or 'unknown module'})"
            ", not a MatpacBackbone or MatpacPretrainer to start pretraining from"
        )
    arguments = saved.get("config", {})
    full = "backbone" in arguments
    backbone = arguments["backbone"]["config"] if full else arguments
    model, rest = _split(backbone)
    if full:
        model.update({key: arguments[key] for key in PRETRAINER_FIELDS})
    what = "MatpacPretrainer" if full else "MatpacBackbone"
    return InitSource(path, f"{what} {kind}", full, model, rest)


def _read_keras(path: str) -> InitSource:
    return _from_saved_config(path, ".keras", read_keras_config(path))


def _read_preset(path: str) -> InitSource:
    backbone = read_preset_config(path)  # also checks the backbone's weights are there
    task = os.path.join(path, TASK_CONFIG)
    if not os.path.isfile(task):
        return _from_saved_config(path, "preset", backbone)
    try:
        with open(task, encoding="utf-8") as file:
            saved = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: corrupt {TASK_CONFIG} (not valid JSON: {error})") from error
    if not isinstance(saved, dict) or saved.get("registered_name") != PRETRAINER:
        name = saved.get("class_name") if isinstance(saved, dict) else None
        raise InputError(
            f"{path}: a preset of a {name or 'model'} (its {TASK_CONFIG}), not of a "
            "MatpacBackbone or MatpacPretrainer to start pretraining from"
        )
    return _from_saved_config(path, "preset", saved)


def _read_torch(path: str, model: ConfigDict) -> InitSource:
    state = read_state_dict(path, flag=FIELD)
    if has_classification_head(state):
        raise InputError(
            f"{path}: an AudioSet fine-tuned classifier (head.*), not a pretraining checkpoint: "
            "start from the encoder-only file"
        )
    backbone = backbone_config(state, num_heads=1)  # the heads: config.model's, checked below
    backbone["num_heads"] = _heads(model, "num_heads", backbone["embed_dim"], "encoder", path)
    fields, rest = _split(backbone)
    full = is_training_checkpoint(state)
    if full:
        head = pretrainer_config(state, predictor_num_heads=1)
        head["predictor_heads"] = _heads(
            model, "predictor_heads", head["predictor_dim"], "predictor", path
        )
        fields.update(head)
    suffix = os.path.splitext(path)[1] or "file"
    kind = f"official {'training' if full else 'encoder-only'} {suffix}"
    return InitSource(path, kind, full, fields, rest, state)


def _heads(model: ConfigDict, field: str, width: int, what: str, path: str) -> int:
    """config.model's head count for a `.pt` width (which it must divide)."""
    heads = _effective(model, field)
    if not isinstance(heads, int) or heads < 1 or width % heads:
        raise InputError(
            f"config.model.{field}={heads} does not divide the {what} width {width} of {FIELD} "
            f"{path} (a .pt file does not show its attention heads: set config.model.{field})"
        )
    return heads


def _load_pretrainer(path: str) -> MatpacPretrainer:
    if os.path.isdir(path):
        try:
            return MatpacPretrainer.from_preset(path)
        except Exception as error:
            reason = (str(error).strip().splitlines() or [""])[0]
            what = f"{type(error).__name__}: {reason}"
            raise InputError(f"{path}: corrupt preset ({what})") from error
    return load_model(path)


def _copy_weights(source, target, path: str) -> None:
    """`target`'s weights := `source`'s (the same layer of the same architecture)."""
    shapes = [[tuple(w.shape) for w in layer.weights] for layer in (source, target)]
    if shapes[0] != shapes[1]:
        raise InputError(f"{path}: the weights of {source.name} do not fit the model built from it")
    for saved, variable in zip(source.weights, target.weights, strict=True):
        variable.assign(np.asarray(ops.convert_to_numpy(saved), dtype=variable.dtype))
