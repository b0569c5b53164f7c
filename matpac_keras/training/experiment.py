"""From a training config (`configs/*.py`) to the objects of a run: checks, seeds, step budget,
pretrainer and optimizer. The config's fields are documented in `configs/matpac.py`."""

import os
import pathlib

import keras
from ml_collections import ConfigDict

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.config_ranges import PRETRAINING, check_ranges
from matpac_keras.distribute import KINDS, default_dtype_policy
from matpac_keras.errors import InputError
from matpac_keras.frontend import SAMPLE_RATE, num_frames
from matpac_keras.masking import MASK_SHAPES
from matpac_keras.optimizers import AdamW
from matpac_keras.pretrainer import MatpacPretrainer
from matpac_keras.schedules import StepBudget, WarmupCosineDecay, step_budget
from matpac_keras.training.callbacks import check_intervals
from matpac_keras.training.data_source import NAMED_CORPORA, in_memory_corpus
from matpac_keras.training.inputs import InMemoryCorpus


def check_config(config: ConfigDict, source=None) -> None:
    """Raises InputError naming the first field of `config` that cannot work, before anything
    is built or the source is read (`source`: a Python object replacing data.source).

    What needs the source's size (the step budget when data.num_examples is None, i.e.
    counted) is checked by `check_budget` once the source is counted."""
    train, data = config.train, config.data
    check_ranges(config, PRETRAINING)  # every number, NaN and infinities first
    check_intervals(train.log_every, train.checkpoint_every)
    steps = train.get("steps_per_execution", 1)
    if train.log_every % steps:
        raise InputError(
            f"config.train.log_every={train.log_every} must be a multiple of "
            f"config.train.steps_per_execution={steps} (metrics are seen once per execution)"
        )
    if steps > 1 and keras.backend.backend() == "torch":
        raise InputError(
            f"config.train.steps_per_execution={steps}: Keras runs one step per call under "
            "the torch backend; set it to 1 (or use TensorFlow or JAX)"
        )
    if train.get("jit_compile") not in (None, True, False):
        raise InputError(
            f"config.train.jit_compile must be True, False or None (auto); got "
            f"{train.jit_compile!r}"
        )
    if train.distribution not in KINDS:
        raise InputError(
            f"config.train.distribution must be one of {KINDS}; got {train.distribution!r}"
        )
    _check_masks(config.model)
    init_from = config.get("init_from")
    if init_from is not None and not os.path.exists(init_from):
        raise InputError(f"config.init_from {init_from}: no such file or preset directory")
    # With init_from, max_frames is the checkpoint's: `init_from.read_init_source` checks it.
    if init_from is None and data.crop_frames > config.model.max_frames:
        raise InputError(
            f"config.data.crop_frames={data.crop_frames} exceeds config.model.max_frames="
            f"{config.model.max_frames}"
        )
    if config.evaluate.linear_probe:
        from matpac_keras.training.probe import probe_loader

        probe_loader(config)
    corpus = in_memory_corpus(config, source)
    if data.num_examples is None and corpus is not None:
        check_budget(config, corpus.num_clips)
    if data.num_examples is not None:
        check_budget(config, data.num_examples)
    if corpus is not None:
        _check_corpus(config, corpus)
    elif source is None:
        _check_source(config)


def check_budget(
    config: ConfigDict, num_examples: int, usable: int | None = None, summary: str = ""
) -> StepBudget:
    """The run's step budget for `num_examples` clips per epoch; raises InputError if one
    batch needs more than the `usable` clips of the source (`summary`: its counts, for the
    message), or the run has no step or no room after its warm-up."""
    train = config.train
    if usable is not None and usable < train.global_batch_size:
        raise InputError(
            f"config.data.source: {summary or f'{usable} usable clips'}: fewer usable clips "
            f"than one batch of config.train.global_batch_size={train.global_batch_size}"
        )
    if num_examples < train.global_batch_size:
        raise InputError(
            f"config.data.num_examples={num_examples} clips per epoch, fewer than one batch of "
            f"config.train.global_batch_size={train.global_batch_size}"
        )
    budget = run_budget(config, num_examples)
    if budget.total_steps < 1:
        raise InputError(
            f"config.train.epochs={train.epochs} of {num_examples} clips at "
            f"config.train.global_batch_size={train.global_batch_size} is no step at all"
        )
    if not 0 <= budget.warmup_steps < budget.total_steps:
        raise InputError(
            f"config.train.warmup_epochs={train.warmup_epochs} gives {budget.warmup_steps} "
            f"warm-up steps; config.train.epochs={train.epochs} gives {budget.total_steps} steps "
            "in all: the warm-up must be shorter"
        )
    return budget


def _check_masks(model: ConfigDict) -> None:
    shape = model.mask_shape
    if shape not in MASK_SHAPES:
        raise InputError(f"config.model.mask_shape must be one of {MASK_SHAPES}; got {shape!r}")


def _check_corpus(config: ConfigDict, corpus: InMemoryCorpus) -> None:
    data = config.data
    if data.num_examples is not None and data.num_examples != corpus.num_clips:
        raise InputError(
            f"config.data.num_examples={data.num_examples}, but {corpus.description} has "
            f"{corpus.num_clips} clips"
        )
    frames = num_frames(corpus.num_samples)
    if frames < data.crop_frames:
        raise InputError(
            f"{corpus.description}: clips of {corpus.num_samples / SAMPLE_RATE:g} s give "
            f"{frames} frames, fewer than config.data.crop_frames={data.crop_frames}"
        )


def _check_source(config: ConfigDict) -> None:
    data = config.data
    if data.source is None:
        names = " or ".join(repr(name) for name in NAMED_CORPORA)
        raise InputError(
            f"config.data.source is not set: {names}, a prepared TFDS dataset directory or "
            "a folder of audio files"
        )
    if not pathlib.Path(data.source).exists():
        raise InputError(f"config.data.source {data.source!r} does not exist")


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy and the backend; with `deterministic`, asks for deterministic ops
    (TensorFlow op determinism, PyTorch deterministic algorithms, XLA GPU determinism)."""
    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    elif backend == "jax":  # read when JAX compiles for a GPU; CPU XLA is deterministic already
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()


def run_budget(config: ConfigDict, num_examples: int | None = None) -> StepBudget:
    """The run's length, warm-up and tau_t ramp in optimizer steps, from epochs (SPEC 5), for
    epochs of `num_examples` clips (default: config.data.num_examples, which must be set)."""
    num_examples = config.data.num_examples if num_examples is None else num_examples
    if num_examples is None:
        raise InputError("config.data.num_examples is None (count the source): count it first")
    return step_budget(
        num_examples=num_examples,
        global_batch_size=config.train.global_batch_size,
        epochs=config.train.epochs,
        warmup_epochs=config.train.warmup_epochs,
        teacher_temperature_epochs=config.train.teacher_temperature_epochs,
    )


def build_backbone(model: ConfigDict, **arguments) -> MatpacBackbone:
    """`model.variant` from the variant table, with any non-None size field overriding it
    (`arguments`: other MatpacBackbone arguments, those of a checkpoint the run starts from);
    built, so its weights are the first draws after seeding (the demo's random-init baseline
    is then the encoder the run started from)."""
    sizes = {k: model[k] for k in ("embed_dim", "depth", "num_heads") if model[k] is not None}
    dtype = default_dtype_policy() if model.dtype == "auto" else model.dtype
    backbone = MatpacBackbone.from_variant(
        model.variant, max_frames=model.max_frames, dtype=dtype, **sizes, **arguments
    )
    backbone.build(None)
    return backbone


def build_pretrainer(
    config: ConfigDict, budget: StepBudget, backbone_arguments: dict | None = None
) -> MatpacPretrainer:
    """The pretrainer of `config.model`, its schedules set by `budget` (built, teachers copied;
    `backbone_arguments`: as `build_backbone`'s)."""
    m = config.model
    pretrainer = MatpacPretrainer(
        build_backbone(m, **(backbone_arguments or {})),
        predictor_dim=m.predictor_dim,
        predictor_depth=m.predictor_depth,
        predictor_heads=m.predictor_heads,
        num_prediction_heads=m.num_prediction_heads,
        head_hidden_dim=m.head_hidden_dim,
        head_bottleneck_dim=m.head_bottleneck_dim,
        num_classes=m.num_classes,
        mask_ratio=m.mask_ratio,
        num_masked_views=m.num_masked_views,
        mask_shape=m.mask_shape,
        alpha=m.alpha,
        student_temperature=m.student_temperature,
        teacher_temperature=(*m.teacher_temperature, budget.teacher_temperature_steps),
        mcl_temperature=tuple(m.mcl_temperature),
        center_momentum=m.center_momentum,
        center_on=m.center_on,
        encoder_ema=tuple(m.encoder_ema),
        head_ema=tuple(m.head_ema),
        total_steps=budget.total_steps,
        ema_order=m.ema_order,
        teacher_init=m.teacher_init,
        seed=config.seed,
        dtype=m.dtype,
        compile=False,  # the run compiles it with its own optimizer
    )
    pretrainer.build(None)
    return pretrainer


def build_optimizer(optim: ConfigDict, budget: StepBudget) -> AdamW:
    """AdamW (PyTorch's arithmetic) with linear warm-up and cosine decay over the run."""
    schedule = WarmupCosineDecay(
        optim.lr,
        warmup_steps=budget.warmup_steps,
        total_steps=budget.total_steps,
        final_learning_rate=optim.final_lr,
    )
    return AdamW(
        learning_rate=schedule,
        beta_1=optim.beta_1,
        beta_2=optim.beta_2,
        epsilon=optim.epsilon,
        weight_decay=optim.weight_decay,
        global_clipnorm=optim.global_clipnorm,
    )
