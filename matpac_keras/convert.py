"""Official MATPAC PyTorch `state_dict`s -> Keras models (SPEC section 8).

The architecture is read from tensor shapes; the number of attention heads cannot be, so it
comes from a head width (64 for the encoder, 32 for the predictor, as in the official models)
unless given; for an encoder width of no ViT variant the guess is logged as a warning. Loading
is strict: every Keras weight must receive exactly one checkpoint tensor of the right shape,
finite (no NaN or Inf), and every checkpoint tensor must be used, else
`CheckpointMismatchError` names the first offending tensor. The arguments shapes cannot tell
(`num_heads`, `predictor_num_heads`, `num_mels`) are checked against the checkpoint before a
model is built: a bad one raises an InputError naming it.

A checkpoint whose `pos_embed` is the sin-cos grid converts to the computed grid; any other
table is kept as the backbone's stored `position_table` (as the authors' code adds whatever
table a checkpoint holds). An AudioSet fine-tuned `enc_and_head` file, or an encoder with one of
the authors' probe heads (`classifier_from_state_dict`), becomes a `MatpacAudioClassifier` with
that task's labels (SPEC section 9).
"""

import numbers
import re

import numpy as np
from absl import logging

from matpac_keras.backbone import BACKBONE_VARIANTS, MatpacBackbone
from matpac_keras.errors import InputError
from matpac_keras.layers import sincos_2d
from matpac_keras.pretrainer import MatpacPretrainer

ENCODER_PREFIX = "student_encoder."
EMA_KEY, HEAD_EMA_KEY = "_ema", "_cls_head_ema"


class CheckpointMismatchError(InputError):
    """The checkpoint does not fit the model (missing, unexpected or mis-shaped tensor)."""


def _linear(weight: np.ndarray) -> np.ndarray:
    return weight.T  # PyTorch Linear [out, in] -> Keras Dense kernel [in, out]


def _count_blocks(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for key in state if (m := pattern.match(key))})


def _flatten(state: dict) -> dict:
    """Nested teacher dicts (`_ema`, `_cls_head_ema`) -> `_ema/<name>` keys; strips `model.`."""
    flat = {}
    for key, value in state.items():
        if isinstance(value, dict):
            for sub, tensor in value.items():
                flat[f"{key}/{sub.removeprefix('model.')}"] = np.asarray(tensor)
        else:
            flat[key] = np.asarray(value)
    return flat


def _heads_from_width(dim: int, head_width: int, what: str, argument: str) -> int:
    if dim % head_width:
        raise CheckpointMismatchError(
            f"{what} width {dim} is not a multiple of head width {head_width}: pass {argument}"
        )
    return dim // head_width


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_heads(num_heads, dim: int, argument: str, what: str) -> int:
    if not _is_int(num_heads) or num_heads < 1 or dim % num_heads:
        raise InputError(f"{argument}={num_heads}: must be a positive divisor of the {what} {dim}")
    return int(num_heads)


def _check_num_mels(num_mels, state: dict, embed_dim: int, patch_size: int) -> int:
    """`num_mels` if the checkpoint's position table is a (num_mels / patch) x T grid."""
    positions = state["pos_embed"].reshape(-1, embed_dim)[1:]
    tokens = positions.shape[0]
    if not _is_int(num_mels) or num_mels < patch_size or num_mels % patch_size:
        raise InputError(
            f"num_mels={num_mels}: must be a positive multiple of the patch size {patch_size}"
        )

    def is_grid(freq: int) -> bool:
        if tokens % freq or embed_dim % 4:
            return False
        return bool(
            np.allclose(positions, _sincos_rows(embed_dim, freq, tokens // freq), atol=1e-5)
        )

    freq = num_mels // patch_size
    if tokens % freq:
        raise InputError(
            f"num_mels={num_mels}: {freq} frequency patches do not divide the checkpoint's "
            f"{tokens} position tokens"
        )
    if not is_grid(freq):
        # Blame num_mels only if another grid fits; else the table itself is wrong, and
        # loading names the tensor.
        found = [f for f in range(1, tokens + 1) if is_grid(f)]
        if found:
            raise InputError(
                f"num_mels={num_mels}: the checkpoint's position table is not a grid of {freq} "
                f"frequency x {tokens // freq} time patches (it fits "
                f"num_mels={found[0] * patch_size})"
            )
    return int(num_mels)


def backbone_config(state: dict, num_heads: int | None = None, num_mels: int = 80) -> dict:
    """MatpacBackbone arguments read from an official state_dict.

    Raises:
        CheckpointMismatchError: not a MATPAC checkpoint.
        InputError: `num_heads` does not divide the encoder width, or `num_mels` does not fit
            the checkpoint's patch size and position table.
    """
    state = _flatten(state)
    required = (
        "patch_embed.proj.weight",
        "pos_embed",
        f"{ENCODER_PREFIX}norm.weight",
        f"{ENCODER_PREFIX}blocks.0.mlp.fc1.weight",
    )
    for key in required:
        if key not in state:
            raise CheckpointMismatchError(f"not a MATPAC checkpoint: tensor {key!r} is missing")
    embed_dim, _, patch_size, _ = state["patch_embed.proj.weight"].shape
    embed_dim, patch_size = int(embed_dim), int(patch_size)
    num_mels = _check_num_mels(num_mels, state, embed_dim, patch_size)
    if num_heads is None:
        num_heads = _heads_from_width(embed_dim, 64, "encoder", "num_heads")
        if embed_dim not in {v["embed_dim"] for v in BACKBONE_VARIANTS.values()}:
            logging.warning(
                "the encoder width %d is that of no ViT variant (%s): its head count, which "
                "the weights' shapes do not tell, is guessed as %d (heads of width 64); pass "
                "--num_heads if it was trained with another",
                embed_dim,
                ", ".join(str(v["embed_dim"]) for v in BACKBONE_VARIANTS.values()),
                num_heads,
            )
    num_heads = _check_heads(num_heads, embed_dim, "num_heads", "encoder width")
    table = state["pos_embed"].reshape(-1, embed_dim)
    num_tokens = table.shape[0] - 1
    freq = num_mels // patch_size
    time_patches = num_tokens // freq
    fc1 = state[f"{ENCODER_PREFIX}blocks.0.mlp.fc1.weight"]
    sincos = embed_dim % 4 == 0 and np.allclose(
        table,
        np.concatenate([np.zeros((1, embed_dim)), _sincos_rows(embed_dim, freq, time_patches)]),
        atol=1e-5,
    )
    return dict(
        embed_dim=embed_dim,
        depth=_count_blocks(state, f"{ENCODER_PREFIX}blocks."),
        num_heads=num_heads,
        mlp_ratio=fc1.shape[0] / embed_dim,
        patch_size=patch_size,
        num_mels=num_mels,
        max_frames=int(time_patches * patch_size),
        stored_positions=not sincos,
    )


def _sincos_rows(embed_dim: int, freq: int, time: int) -> np.ndarray:
    return sincos_2d(embed_dim, freq, time).reshape(-1, embed_dim)


def _mcl_prefix(state: dict) -> str | None:
    for prefix in ("mcl_heads.mcl_heads.", "mcl_heads."):
        if f"{prefix}0.weight" in state:
            return prefix
    return None


def pretrainer_config(state: dict, predictor_num_heads: int | None = None) -> dict:
    """MatpacPretrainer arguments (besides the backbone) read from a full training state_dict.

    Raises:
        CheckpointMismatchError: not a training checkpoint.
        InputError: `predictor_num_heads` does not divide the predictor width.
    """
    state = _flatten(state)
    if "decoder.decoder_embed.weight" not in state:
        raise CheckpointMismatchError("not a training checkpoint: 'decoder.*' tensors are missing")
    predictor_dim = int(state["decoder.decoder_embed.weight"].shape[0])
    if predictor_num_heads is None:
        predictor_num_heads = _heads_from_width(
            predictor_dim, 32, "predictor", "predictor_num_heads"
        )
    predictor_num_heads = _check_heads(
        predictor_num_heads, predictor_dim, "predictor_num_heads", "predictor width"
    )
    mcl = _mcl_prefix(state)
    head = "cls_student_head."
    return dict(
        predictor_dim=predictor_dim,
        predictor_depth=_count_blocks(state, "decoder.decoder_blocks."),
        predictor_heads=predictor_num_heads,
        num_prediction_heads=_count_blocks(state, mcl) if mcl else 1,
        head_hidden_dim=int(state[f"{head}mlp.0.weight"].shape[0]),
        head_bottleneck_dim=int(state[f"{head}mlp.4.weight"].shape[0]),
        num_classes=int(state[_weight_norm_tensors(state, f"{head}last_layer.")[1]].shape[0]),
    )


def _weight_norm_tensors(state: dict, prefix: str) -> tuple[str, str]:
    """Keys of (g, v) for `weight_norm` (old style) or a parametrization (new style)."""
    for g_key, v_key in (
        (f"{prefix}weight_g", f"{prefix}weight_v"),
        (
            f"{prefix}parametrizations.weight.original0",
            f"{prefix}parametrizations.weight.original1",
        ),
    ):
        if g_key in state:
            return g_key, v_key
    raise CheckpointMismatchError(f"no weight-norm tensors under {prefix!r}")


class _Assigner:
    """Collects (variable, checkpoint key, transform) and applies them strictly."""

    def __init__(self, state: dict):
        self.state = state
        self.used: set[str] = set()
        self.pending: list = []

    def take(self, variable, key: str, transform=lambda x: x):
        if key not in self.state:
            raise CheckpointMismatchError(
                f"checkpoint has no tensor {key!r} (needed for Keras weight {variable.path})"
            )
        value = np.asarray(transform(self.state[key]), dtype="float32")
        if not np.isfinite(value).all():
            raise CheckpointMismatchError(
                f"tensor {key!r} (Keras weight {variable.path}) holds NaN or infinite values: "
                "a corrupt or diverged checkpoint; nothing written"
            )
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointMismatchError(
                f"tensor {key!r} has shape {self.state[key].shape}, which does not fit Keras "
                f"weight {variable.path} of shape {tuple(variable.shape)}"
            )
        self.used.add(key)
        self.pending.append((variable, value))

    def check_fixed(self, key: str, expected: np.ndarray):
        """A non-trainable tensor we compute ourselves (sin-cos positions): must match."""
        if key not in self.state:
            return
        value = self.state[key].reshape(-1, expected.shape[-1])[1:]
        if value.shape != expected.shape or not np.allclose(value, expected, atol=1e-5):
            raise CheckpointMismatchError(
                f"tensor {key!r} is not the fixed sin-cos position table this model uses "
                f"(shape {self.state[key].shape})"
            )
        self.used.add(key)

    def finish(self, ignore_prefixes: tuple = ()):
        unused = sorted(
            k for k in self.state if k not in self.used and not k.startswith(ignore_prefixes)
        )
        if unused:
            raise CheckpointMismatchError(
                f"checkpoint tensor {unused[0]!r} has no place in the model "
                f"({len(unused)} unused tensors)"
            )
        for variable, value in self.pending:
            variable.assign(value)


def _assign_dense(a: _Assigner, dense, prefix: str):
    a.take(dense.kernel, f"{prefix}weight", _linear)
    a.take(dense.bias, f"{prefix}bias")


def _assign_norm(a: _Assigner, norm, prefix: str):
    a.take(norm.gamma, f"{prefix}weight")
    a.take(norm.beta, f"{prefix}bias")


def _assign_stack(a: _Assigner, stack, blocks_prefix: str, norm_key: str):
    for i, block in enumerate(stack.blocks):
        p = f"{blocks_prefix}{i}."
        _assign_norm(a, block.norm1, p + "norm1.")
        _assign_dense(a, block.attn.qkv, p + "attn.qkv.")
        _assign_dense(a, block.attn.proj, p + "attn.proj.")
        _assign_norm(a, block.norm2, p + "norm2.")
        _assign_dense(a, block.fc1, p + "mlp.fc1.")
        _assign_dense(a, block.fc2, p + "mlp.fc2.")
    _assign_norm(a, stack.norm, norm_key)


def _assign_backbone(a: _Assigner, backbone: MatpacBackbone):
    patch = backbone.patch_size
    a.take(
        backbone.patch_embedding.projection.kernel,
        "patch_embed.proj.weight",
        lambda w: w.reshape(w.shape[0], patch * patch).T,
    )
    a.take(backbone.patch_embedding.projection.bias, "patch_embed.proj.bias")
    a.take(backbone.cls_token, "cls_token")
    if backbone.stored_positions:  # used as stored, as the authors' code does
        a.take(backbone.position_table, "pos_embed", lambda p: p.reshape(-1, p.shape[-1]))
    else:
        a.check_fixed("pos_embed", backbone.positions.reshape(-1, backbone.embed_dim))
    _assign_stack(a, backbone.encoder, f"{ENCODER_PREFIX}blocks.", f"{ENCODER_PREFIX}norm.")


def _assign_head(a: _Assigner, head, prefix: str):
    for index, dense in zip((0, 2, 4), head.mlp, strict=True):
        _assign_dense(a, dense, f"{prefix}mlp.{index}.")
    g_key, v_key = _weight_norm_tensors(a.state, f"{prefix}last_layer.")
    a.take(head.last_layer.g, g_key, lambda g: g.reshape(-1))
    a.take(head.last_layer.v, v_key, _linear)


def _assign_pretrainer(a: _Assigner, model: MatpacPretrainer):
    _assign_backbone(a, model.backbone)
    predictor = model.predictor
    _assign_dense(a, predictor.input_projection, "decoder.decoder_embed.")
    a.take(predictor.mask_token, "decoder.mask_token")
    a.check_fixed(
        "decoder.decoder_pos_embed", predictor.positions.reshape(-1, predictor.predictor_dim)
    )
    _assign_stack(a, predictor.trunk, "decoder.decoder_blocks.", "decoder.decoder_norm.")
    mcl = _mcl_prefix(a.state)
    if mcl:
        for i, head in enumerate(predictor.output_heads):
            _assign_dense(a, head, f"{mcl}{i}.")
    else:
        _assign_dense(a, predictor.output_heads[0], "decoder.decoder_pred.")
    _assign_head(a, model.student_head, "cls_student_head.")
    _assign_stack(a, model.teacher_encoder, f"{EMA_KEY}/blocks.", f"{EMA_KEY}/norm.")
    _assign_head(a, model.teacher_head, f"{HEAD_EMA_KEY}/")
    a.take(model.center, "cls_head_loss.center")


def is_training_checkpoint(state: dict) -> bool:
    return any(key.startswith("decoder.") for key in state)


def load_official_weights(model, state: dict) -> None:
    """Strictly copies an official state_dict into a built MatpacBackbone or MatpacPretrainer."""
    a = _Assigner(_flatten(state))
    if isinstance(model, MatpacPretrainer):
        # MATPAC++ files keep the unused single-head `decoder_pred`; a scoring head is unused.
        ignored = (
            ("decoder.decoder_pred.", "mcl_heads.scoring_head.") if _mcl_prefix(a.state) else ()
        )
        _assign_pretrainer(a, model)
        a.finish(ignored)
    else:
        _assign_backbone(a, model)
        a.finish()


def model_from_state_dict(
    state: dict,
    num_heads: int | None = None,
    predictor_num_heads: int | None = None,
    num_mels: int = 80,
    **pretrainer_kwargs,
):
    """Builds the Keras model an official state_dict describes and loads it (strictly).

    Encoder-only files give a MatpacBackbone; training files a MatpacPretrainer, to which
    `pretrainer_kwargs` (schedules, loss weights: what shapes cannot tell) are passed.
    """
    backbone = MatpacBackbone(**backbone_config(state, num_heads, num_mels))
    if is_training_checkpoint(state):
        model = MatpacPretrainer(
            backbone,
            **pretrainer_config(state, predictor_num_heads),
            **{"compile": False, **pretrainer_kwargs},
        )
    else:
        model = backbone
    model.build(None)
    load_official_weights(model, state)
    return model


HEAD_NORM_PREFIX, HEAD_PREFIX, PROBE_PREFIX = "head_norm.", "head.", "probe."


def has_classification_head(state: dict) -> bool:
    """Whether a state_dict is an AudioSet fine-tuned file with its head (`head.*`)."""
    return f"{HEAD_PREFIX}weight" in state


def _check_head_shape(weight, task: str, width: int, what: str, key: str) -> None:
    """Refuses a head whose [outputs, inputs] disagree with `task` and the encoder."""
    from matpac_keras.class_mappings import task_head

    expected = task_head(task).num_classes
    shape = tuple(int(n) for n in np.shape(weight))
    if len(shape) != 2 or shape[0] != expected:
        raise CheckpointMismatchError(
            f"{key} has shape {list(shape)}: {shape[0] if shape else '?'} outputs, but task "
            f"{task!r} has {expected} classes"
        )
    if shape[1] != width:
        raise CheckpointMismatchError(
            f"{key} has shape {list(shape)}: {shape[1]} inputs, but the encoder's {what} has "
            f"{width}"
        )


def classifier_from_state_dict(
    state: dict,
    probe: dict | None = None,
    task: str | None = None,
    num_heads: int | None = None,
    num_mels: int = 80,
):
    """A `MatpacAudioClassifier` (with its preprocessor and the task's labels) from the
    authors' files (SPEC section 9), loaded strictly:

    - `probe` None: an AudioSet fine-tuned encoder + head state_dict (`head_norm.*`, `head.*`):
      BatchNorm (running statistics, no affine) + Linear on the frequency-averaged clip
      embedding, 527 AudioSet labels in `mid` order (`task` None or "audioset");
    - `probe` a probe head's state_dict (`probe.weight` [n, F x D], `probe.bias`), `state` the
      encoder-only state_dict it was trained on: Linear on the concatenated clip embedding,
      with `task`'s labels (`class_mappings.TASK_HEADS`).

    Raises:
        CheckpointMismatchError: a missing or unused tensor, or a head whose shape disagrees
            with the task (its number of classes) or the encoder (its width), naming both.
        InputError: an unknown task, or `num_heads` / `num_mels` that do not fit.
    """
    from matpac_keras.audio_classifier import (
        MatpacAudioClassifier,
        MatpacAudioClassifierPreprocessor,
    )
    from matpac_keras.class_mappings import task_head, task_labels

    state = _flatten(state)
    with_head = has_classification_head(state)
    if probe is None:
        if not with_head:
            raise CheckpointMismatchError(
                f"no classification head: tensor {HEAD_PREFIX + 'weight'!r} is missing (an "
                "encoder-only file needs one of the authors' probe heads and its task)"
            )
        task = task or "audioset"
        if task != "audioset":
            raise InputError(f"task {task!r}: an AudioSet fine-tuned head's task is 'audioset'")
        prefix, pooling, head_norm = HEAD_PREFIX, "freq_mean", True
    else:
        if with_head:
            raise CheckpointMismatchError(
                "the checkpoint has its own head (head.*): a probe head goes on an encoder-only "
                "checkpoint"
            )
        if task is None:
            raise InputError("a probe head needs its task (one of class_mappings.TASK_HEADS)")
        task_head(task)
        probe = _flatten(probe)
        for key in (f"{PROBE_PREFIX}weight", f"{PROBE_PREFIX}bias"):
            if key not in probe:
                raise CheckpointMismatchError(f"not a probe head: tensor {key!r} is missing")
        clash = sorted(set(probe) & set(state))
        if clash:
            raise CheckpointMismatchError(f"probe tensor {clash[0]!r} is also in the encoder file")
        state = {**state, **probe}
        prefix, pooling, head_norm = PROBE_PREFIX, "concat", False
    encoder = {k: v for k, v in state.items() if not k.startswith((HEAD_NORM_PREFIX, prefix))}
    backbone = MatpacBackbone(**backbone_config(encoder, num_heads, num_mels))
    freqs = backbone.num_freq_patches
    width = backbone.embed_dim * (freqs if pooling == "concat" else 1)
    what = (
        f"clip embedding ({freqs} x {backbone.embed_dim})"
        if pooling == "concat"
        else "frequency-averaged embedding"
    )
    _check_head_shape(state[f"{prefix}weight"], task, width, what, f"{prefix}weight")
    model = MatpacAudioClassifier(
        backbone,
        num_classes=task_head(task).num_classes,
        preprocessor=MatpacAudioClassifierPreprocessor(),
        pooling=pooling,
        head_norm=head_norm,
        labels=task_labels(task),
        multi_label=task_head(task).multi_label,
    )
    a = _Assigner(state)
    _assign_backbone(a, model.backbone)
    if head_norm:
        a.take(model.head_norm.moving_mean, f"{HEAD_NORM_PREFIX}running_mean")
        a.take(model.head_norm.moving_variance, f"{HEAD_NORM_PREFIX}running_var")
        if f"{HEAD_NORM_PREFIX}num_batches_tracked" in state:  # a counter, not a weight
            a.used.add(f"{HEAD_NORM_PREFIX}num_batches_tracked")
    _assign_dense(a, model.output_dense, prefix)
    a.finish()
    return model
