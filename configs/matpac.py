r"""MATPAC pretraining as in the paper (SPEC sections 4-5): ViT-Base on AudioSet, 300 epochs.

    matpac-train --config=configs/matpac.py --workdir=runs/matpac \
        --config.data.source=/data/tfds/matpac_audioset/1.0.0 \
        --config.data.split=balanced_train+unbalanced_train

`configs/matpac.py:runlocal` is the same run shrunk to a one-block model and a few steps on the
synthetic demo corpus (or on `--config.data.source=...`): a check of a set-up in a minute on a
CPU. Any field can be overridden, e.g. `--config.optim.lr=1e-4`.

Epochs and step counts: schedules are given in epochs of `data.num_examples` clips and become
optimizer steps at `train.global_batch_size` (floor(epochs * num_examples / batch)). By default
(`data.num_examples` None) the run counts the usable clips of its source before it starts and
logs and prints how many files it found, used and dropped, by reason (see data.* below). The
official run's step figures, 294,816 updates, 19,654 warm-up and 9,827 for the tau_t ramp (300,
20 and 10 epochs at batch 2048), are those of `--config.data.num_examples=2012615`; SPEC section
5's 2,012,215 clips would give 294,758, 19,650 and 9,825 instead, matching none of those
figures, so it reads as a typo of one digit. Set it to reproduce the paper's schedules exactly
on a copy of AudioSet that lacks some clips.

Fields (every number is checked against its range in `matpac_keras/config_ranges.py` before
any work; NaN and infinities are refused):
  seed: seeds the initialisation, the masks and the data order.
  init_from: None (random init), or a checkpoint to start from (further pre-training): an
    official `.pt` (encoder-only or a full training checkpoint; `.npz` exports too), or a
    `.keras` file or keras-hub preset directory of a MatpacBackbone or MatpacPretrainer. Its
    architecture replaces config.model's (sizes, max_frames, and with a full checkpoint the
    predictor, heads and classes; one log line names the fields that changed); a .pt does not
    show its attention heads: model.num_heads (or the variant's) and model.predictor_heads must
    divide its widths. An encoder gives the student and its EMA teacher (predictor and heads
    start fresh), a full checkpoint all of it (teachers and centre as saved); the step,
    optimizer and schedules start at 0. A workdir with checkpoints resumes them and ignores it.
    With evaluate.linear_probe, probe.json also scores the encoder it started from.
  allow_config_change: a workdir with checkpoints resumes with the config they recorded; True
    lets a run continue it with other values (e.g. a longer train.epochs), keeping the old
    config as config.<step>.json. False (default): such a run is refused, naming the fields.
  deterministic: deterministic ops (bit-identical resumes under TensorFlow and torch; slower).
  model.variant: a row of `matpac_keras.backbone.BACKBONE_VARIANTS`; model.embed_dim, depth and
    num_heads override it when set. model.max_frames: frames of the encoder's input.
    model.dtype: "auto" (default: "mixed_bfloat16" where training runs on GPUs or TPUs,
    "float32" on CPUs; `distribute.default_dtype_policy`) or a Keras dtype policy:
    "mixed_float16" (the paper's fp16 with dynamic loss scaling), "mixed_bfloat16", "float32".
  model.*: the other arguments of `matpac_keras.pretrainer.MatpacPretrainer` (predictor and head
    sizes, mask ratio, alpha, temperatures, centre, EMA ramps, EMA order, teacher_init:
    "independent", the official code's own draws of the teachers, or "copy", the teachers start
    as copies of the students; see benchmarks/pretrain_vs_authors.md); the tau_t ramp's length is
    train.teacher_temperature_epochs, the EMA ramps span the run.
    model.num_masked_views: K masked views of each crop per step (default 1, the paper). With
    K > 1 (EAT's cheaper recipe) the teacher encodes each crop's *whole* token grid once
    ([cls; all tokens]; with K = 1 it encodes [cls; the masked tokens], as the official code),
    its classification (centred, sharpened probabilities) is computed once on those tokens, and
    each view's targets are gathered at its masked positions; the student runs on the B * K
    views; the losses are averaged over views; the centre moves with the teacher output over
    all the crops' tokens; the logged collapse monitors are over the views' masked tokens.
    A step then costs about K times the student's FLOPs (`matpac_keras.flops`,
    benchmarks/pretrain_cost.md). model.mask_shape: "random" (the paper) or "inverse_block"
    (visible tokens in 3 x 3 blocks, the rest masked; `matpac_keras.masking`); the same number of
    visible tokens either way.
  data.source: "synthetic" (the demo corpus, sized by data.synthetic), a prepared TFDS dataset
    directory (holding dataset_info.json, read with data.split; any `matpac_datasets` builder)
    or a folder of audio files (searched recursively by extension; data.exclude: comma-separated
    file-name patterns to leave out, e.g. "*_[0-4].wav"). In Python, `loop.train(config,
    workdir, source=...)` also takes a tf.data.Dataset of examples with a 1-D "audio" or a
    `matpac_keras.training.inputs.InMemoryCorpus`.
    data.num_examples: clips per epoch; None: counted. A folder is counted from the files'
    headers (a file whose header cannot be read is bad_audio, one shorter than a crop at 16 kHz
    too_short; the rest are used); a TFDS split by its num_examples (its builder already left
    out bad clips, and pretraining builders clips under 6.08 s; a shorter clip than the crop is
    dropped, and counted, when read); a tf.data.Dataset by its cardinality (set it if unknown).
    data.crop_frames: frames of each random crop. data.shuffle_buffer: examples shuffled
    together (TFDS sources). data.logmel_in_step: False (default), the pipeline computes the
    log-mel crops on the CPU (tf.data); True, it reads, crops and batches waveforms only and
    the training step computes their log-mel on the accelerator (what a GPU run wants:
    benchmarks/pipeline.md); the same losses either way (tests/pretrainer_waveform_test.py).
    File and TFDS sources only: the in-memory demo corpora hold log-mels already.
  train.global_batch_size, epochs, warmup_epochs, teacher_temperature_epochs: the run's length.
    train.log_every: steps per metrics.jsonl row (each row is the mean over its steps).
    train.checkpoint_every: steps between checkpoints (a multiple of log_every);
    train.keep_checkpoints: how many of the newest to keep. train.tensorboard: also write
    TensorBoard events. train.distribution: "single", "mirrored" or "multi_worker"
    (TensorFlow), "data_parallel" (JAX), see `matpac_keras.distribute`. train.verbose: Keras's
    fit verbosity (1: a progress bar, 2: a line per epoch, 0: silent).
    train.steps_per_execution: steps run by one call of the compiled step, without returning
    to Python in between (Keras's `compile(steps_per_execution=...)`: fewer host round trips on
    an accelerator); log_every and checkpoint_every must be multiples of it.
    train.jit_compile: True (the paper config: the whole step, EMA, centre and schedules, compiled
    by XLA under TensorFlow and JAX; on a CPU 1.18x Keras's default there,
    benchmarks/train_throughput.md), None (Keras's "auto": XLA under JAX, and under TensorFlow
    on a GPU; the demo and test configs, which compile faster without it) or False.
  optim.*: AdamW as PyTorch computes it: peak lr after a linear warm-up from 0, cosine decay to
    final_lr at the end; betas, epsilon, decoupled weight decay, global-norm clipping.
  evaluate.linear_probe: after training, a linear probe, pretrained against random init, on
    the labelled clips of evaluate.probe_source: "synthetic" (held-out synthetic clips,
    evaluate.clips_per_class per probe split), "fsdd_digits" (FSDD's standard split, from the
    folder data.source), or a "module:function" returning `matpac_keras.training.probe.ProbeClips`.
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    config.seed = 0
    config.deterministic = False
    config.allow_config_change = False  # resume a workdir with another config (docstring)
    config.init_from = config_dict.placeholder(str)  # a checkpoint to start from; None: random

    config.model = config_dict.ConfigDict()
    config.model.variant = "base"
    config.model.embed_dim = config_dict.placeholder(int)
    config.model.depth = config_dict.placeholder(int)
    config.model.num_heads = config_dict.placeholder(int)
    config.model.max_frames = 608
    config.model.dtype = "auto"  # bf16 on GPUs/TPUs, float32 on CPUs; the paper: mixed_float16
    config.model.predictor_dim = 512
    config.model.predictor_depth = 8
    config.model.predictor_heads = 16
    config.model.num_prediction_heads = 1
    config.model.head_hidden_dim = 2048
    config.model.head_bottleneck_dim = 256
    config.model.num_classes = 2048
    config.model.mask_ratio = 0.7
    config.model.num_masked_views = 1  # K > 1: EAT's shared-teacher views (docstring)
    config.model.mask_shape = "random"  # or "inverse_block" (data2vec 2.0, EAT)
    config.model.alpha = 0.5
    config.model.student_temperature = 0.1
    config.model.teacher_temperature = (0.04, 0.07)
    config.model.mcl_temperature = (0.1, 0.99997)
    config.model.center_momentum = 0.9
    config.model.center_on = "probabilities"
    config.model.encoder_ema = (0.99995, 0.99999)
    config.model.head_ema = (0.998, 1.0)
    config.model.ema_order = "before_update"
    config.model.teacher_init = "independent"  # the official code's; or "copy" (M2D, DINO)

    config.data = config_dict.ConfigDict()
    config.data.source = config_dict.placeholder(str)
    config.data.split = "train"
    config.data.num_examples = config_dict.placeholder(int)
    config.data.exclude = ""
    config.data.crop_frames = 608
    config.data.shuffle_buffer = 10_000
    config.data.logmel_in_step = False  # True: waveform crops in, log-mel inside the step
    config.data.synthetic = config_dict.ConfigDict()
    config.data.synthetic.clips_per_class = 100
    config.data.synthetic.seconds = 2.5

    config.train = config_dict.ConfigDict()
    config.train.global_batch_size = 2048
    config.train.epochs = 300.0
    config.train.warmup_epochs = 20.0
    config.train.teacher_temperature_epochs = 10.0
    config.train.log_every = 100
    config.train.checkpoint_every = 5000
    config.train.keep_checkpoints = 3
    config.train.tensorboard = True
    config.train.distribution = "single"
    config.train.verbose = 1
    config.train.steps_per_execution = 1
    # The whole step in XLA (1.18x on a CPU too, benchmarks/train_throughput.md); None: "auto".
    config.train.jit_compile = config_dict.placeholder(bool)
    config.train.jit_compile = True

    config.optim = config_dict.ConfigDict()
    config.optim.lr = 3e-4
    config.optim.final_lr = 0.0
    config.optim.beta_1 = 0.9
    config.optim.beta_2 = 0.95
    config.optim.epsilon = 1e-6
    config.optim.weight_decay = 0.05
    config.optim.global_clipnorm = 3.0

    config.evaluate = config_dict.ConfigDict()
    config.evaluate.linear_probe = False
    config.evaluate.probe_source = "synthetic"
    config.evaluate.clips_per_class = 40

    if arg == "runlocal":
        _runlocal(config)
    elif arg:
        raise ValueError(f"configs/matpac.py takes no variant or 'runlocal'; got {arg!r}")
    return config


def _runlocal(config: config_dict.ConfigDict) -> None:
    """A one-block D=32 model on 32-frame crops of 20 synthetic clips, batch 4, 1 epoch."""
    config.model.update(
        dict(variant="tiny", embed_dim=32, depth=1, num_heads=2, max_frames=32, dtype="float32")
    )
    config.model.update(dict(predictor_dim=16, predictor_depth=1, predictor_heads=2))
    config.model.update(dict(head_hidden_dim=32, head_bottleneck_dim=16, num_classes=32))
    config.data.source = "synthetic"
    config.data.synthetic.clips_per_class = 2
    config.data.synthetic.seconds = 0.5
    config.data.crop_frames = 32
    config.train.update(dict(global_batch_size=4, epochs=1.0, warmup_epochs=0.4))
    config.train.update(dict(teacher_temperature_epochs=0.4, log_every=1, checkpoint_every=5))
    config.train.jit_compile = None
