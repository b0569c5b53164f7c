r"""Fine-tuning a MATPAC backbone end to end on a downstream task (`matpac-finetune`).

    matpac-finetune --config=configs/finetune.py --workdir=runs/ft_esc50 \
        --config.task=esc50 --config.fold=fold1 --config.model=matpac.keras \
        --config.data_dir=~/tensorflow_datasets --config.manual_dir=/data/ESC-50-master

    matpac-finetune --config=configs/finetune.py:audioset --workdir=runs/as \
        --config.model=matpac_plus_base_audioset --config.data_dir=~/tensorflow_datasets \
        --config.manual_dir=/data/audioset   # model: a preset directory or .keras file

Variants (`--config=configs/finetune.py:<variant>`):
- "" (default): the paper-size model, 6.08 s crops, batch 32, AdamW 1e-4 with layer decay 0.75.
- "fsdd": spoken digits (clips of at most 2.3 s), 1.12 s crops.
- "tiny": a 2-block random-init backbone, 2 epochs: a smoke test on CPU.
- "audioset": the AudioSet recipe (`matpac_keras/training/audioset_finetune.py`): balanced +
  unbalanced training splits read by random access with class-balanced sampling, 9.92 s
  (992-frame) crops, MixUp and masking, the authors' head (BatchNorm + Linear on the
  frequency-averaged embedding), binary cross-entropy, layer-wise lr decay, 150,000 steps of
  128 counted in steps, checkpointed and resumable (the same command continues a killed run),
  mAP on the eval split. Expected cost on one GPU, an estimate on paper from FLOPs (not
  measured): 19.2 M crops x 169.6 GFLOP = 3.3e18 FLOP, about 4.5 h at 200 TFLOP/s sustained
  (9 h at 100); the arithmetic is in `_audioset`'s docstring.
- "audioset_tiny": the AudioSet recipe on the "tiny" variant's backbone, 6 steps of 4 crops of
  64 frames (the tiny model's max_frames, not 992), on the builder's dummy data in CI.
Without `model`, the backbone is a new `backbone` variant (random initialisation).

The small tasks (every variant but the AudioSet ones) hold their clips in memory and count
epochs, keeping the weights of the lowest validation loss (`evaluation/finetune.py`).
"""

import ml_collections
from ml_collections import config_dict

VARIANTS = ("", "fsdd", "tiny", "audioset", "audioset_tiny")


def _data_and_model(config: ml_collections.ConfigDict, task: str) -> None:
    """The fields every recipe has: data location, seed, model and its augmentations."""
    # === Task and data ===
    config.task = task  # evaluation/tasks.py name, or "audioset"
    config.data_dir = config_dict.placeholder(str)  # TFDS data_dir
    config.manual_dir = config_dict.placeholder(str)  # downloaded files, if not prepared yet
    config.seed = 0
    # === Model ===
    config.model = config_dict.placeholder(str)  # pre-trained .keras file or preset
    config.backbone = "base"  # random-init variant when `model` is unset
    config.backbone_overrides = ml_collections.ConfigDict()  # unset fields: the variant's
    for field in ("embed_dim", "depth", "num_heads", "max_frames"):
        config.backbone_overrides[field] = config_dict.placeholder(int)
    config.dropout = 0.0
    config.erase_factor = 0.5  # probability of each log-mel rectangle mask
    config.num_erasures = 2
    # === Optimisation ===
    config.learning_rate = 1e-4
    config.weight_decay = 0.05
    config.layer_decay = 0.75  # 1.0 disables layer-wise decay
    config.clip_norm = 3.0  # global-norm clipping; 0 disables it
    config.embed_batch_size = 16  # chunks per batch when scoring whole test clips


def _tiny(config: ml_collections.ConfigDict) -> None:
    """A 2-block random-init backbone on crops of its whole 64-frame position grid."""
    config.backbone = "tiny"
    config.backbone_overrides.update(dict(embed_dim=32, depth=2, num_heads=2, max_frames=64))
    config.crop_frames = 64
    config.learning_rate = 1e-3


def _audioset(config: ml_collections.ConfigDict) -> None:
    """The AudioSet recipe (matpac_keras/training/audioset_finetune.py): the training splits
    present, class-balanced sampling (weight of a clip: sum over its labels of 1 / label
    count), 992-frame crops, MixUp 0.5, masking, the authors' head (BatchNorm + Linear on the
    frequency-averaged embedding, 527 labels in mid order), binary cross-entropy, AdamW 1e-4
    with layer decay 0.75, 10,000 warm-up steps then cosine, 150,000 steps of 128 crops,
    checkpoints every 2,000 steps (the same command resumes), test mAP on eval every 10,000.

    The budget, 19.2 M draws, is of the order of Audio-MAE's AS-2M fine-tuning (100 epochs of
    200,000 weighted draws); lr 1e-4 at batch 128 is BEiT/MAE's linear scaling of 4e-4 at 512.
    Not tuned here.

    Expected cost on one GPU, an estimate on paper from FLOPs (not measured). The ViT-B
    encoder on one 992-frame crop: 5 x 62 = 310 patches + cls = 311 tokens; FLOPs counted as
    ../shared/reference_bench/README.md does (matmul multiply-adds x 2; norms, softmax, GELU
    not counted): 12 blocks x (24 x 311 x 768^2 + 4 x 311^2 x 768) = 56.39 GFLOP, + the patch
    embedding 2 x 310 x 256 x 768 = 0.12 GFLOP, + the head 2 x 768 x 527 = 0.8 MFLOP: 56.52
    GFLOP forward, x 3 with the backward pass = 169.6 GFLOP a crop; x 150,000 steps x 128
    crops = 3.26e18 FLOP: 9.0 / 4.5 / 2.3 hours at 100 / 200 / 400 TFLOP/s sustained. Each
    test on AudioSet's ~20,000 eval clips (precise mode, 992 + 16 frames a 10 s clip, 57.5
    GFLOP) adds 1.2e15 FLOP: seconds. Reading: 19.2 M random reads of ~320 KB clips (6 TB),
    plus, on the first start, one pass over the training splits to count their labels.
    """
    config.train_splits = "balanced_train,unbalanced_train"  # those the dataset has are used
    config.test_split = "eval"
    config.deterministic = False  # deterministic ops (slower): bit-exact resumes on GPUs too
    # The authors' AudioSet model takes 992 frames; a 608-frame encoder is widened to it.
    config.crop_frames = 992
    config.batch_size = 128
    config.steps = 150_000
    config.warmup_steps = 10_000
    config.mixup_alpha = 0.5  # 0 disables MixUp
    config.log_every = 100
    config.checkpoint_every = 2_000  # a multiple of log_every
    config.keep_checkpoints = 3
    config.tensorboard = True
    config.eval_every = 10_000  # steps between test mAPs (metrics.jsonl); 0: only at the end
    config.test_clips = 256  # test clips read (and held) at a time
    config.workers = 8  # threads reading and cropping batches ahead of the model


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        expected = ", ".join(map(repr, VARIANTS[:-1])) + f" or {VARIANTS[-1]!r}"
        raise ValueError(f"unknown variant {variant!r}: expected {expected}")
    config = ml_collections.ConfigDict()
    if variant.startswith("audioset"):
        _data_and_model(config, "audioset")
        _audioset(config)
        if variant == "audioset_tiny":
            # Crops of the tiny model's max_frames, 64, not 992 (15 times its cost, for
            # nothing a smoke test needs).
            _tiny(config)
            config.batch_size = 4
            config.steps = 6
            config.warmup_steps = 2
            config.log_every = 1
            config.checkpoint_every = 2
            config.keep_checkpoints = 100
            config.tensorboard = False
            config.eval_every = 3
            config.test_clips = 2
            config.workers = 1
        return config

    _data_and_model(config, "esc50")
    config.fold = "fold1"  # test fold of ESC-50 / UrbanSound8K
    config.valid_fraction = 0.1  # held out where the task has no validation split
    # === Training ===
    config.crop_frames = 608
    config.batch_size = 32
    config.epochs = 50
    config.warmup_epochs = 5
    config.mixup_alpha = 0.3  # 0 disables MixUp
    config.patience = 0  # epochs without a lower validation loss before stopping; 0: never

    if variant == "fsdd":
        config.task = "spoken_digit"
        config.crop_frames = 112
        config.epochs = 20
        config.warmup_epochs = 2
    elif variant == "tiny":
        config.task = "spoken_digit"
        _tiny(config)
        config.batch_size = 8
        config.epochs = 2
        config.warmup_epochs = 1
    return config
