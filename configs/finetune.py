r"""Fine-tuning a MATPAC backbone end to end on a downstream task (`matpac-finetune`).

    matpac-finetune --config=configs/finetune.py --workdir=runs/ft_esc50 \
        --config.task=esc50 --config.fold=fold1 --config.model=matpac.keras \
        --config.data_dir=~/tensorflow_datasets --config.manual_dir=/data/ESC-50-master

Variants (`--config=configs/finetune.py:<variant>`):
- "" (default): the paper-size model, 6.08 s crops, batch 32, AdamW 1e-4 with layer decay 0.75.
- "fsdd": spoken digits (clips of at most 2.3 s), 1.12 s crops.
- "tiny": a 2-block random-init backbone, 2 epochs: a smoke test on CPU.
Without `model`, the backbone is a new `backbone` variant (random initialisation).
"""

import ml_collections
from ml_collections import config_dict


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # === Task and data ===
    config.task = "esc50"  # evaluation/tasks.py name
    config.data_dir = config_dict.placeholder(str)  # TFDS data_dir
    config.manual_dir = config_dict.placeholder(str)  # downloaded files, if not prepared yet
    config.fold = "fold1"  # test fold of ESC-50 / UrbanSound8K
    config.valid_fraction = 0.1  # held out where the task has no validation split
    config.seed = 0
    # === Model ===
    config.model = config_dict.placeholder(str)  # pre-trained .keras file
    config.backbone = "base"  # random-init variant when `model` is unset
    config.backbone_overrides = ml_collections.ConfigDict()  # unset fields: the variant's
    for field in ("embed_dim", "depth", "num_heads", "max_frames"):
        config.backbone_overrides[field] = config_dict.placeholder(int)
    config.dropout = 0.0
    config.erase_factor = 0.5  # probability of each log-mel rectangle mask
    config.num_erasures = 2
    # === Training ===
    config.crop_frames = 608
    config.batch_size = 32
    config.epochs = 50
    config.warmup_epochs = 5
    config.learning_rate = 1e-4
    config.weight_decay = 0.05
    config.layer_decay = 0.75  # 1.0 disables layer-wise decay
    config.clip_norm = 3.0  # global-norm clipping; 0 disables it
    config.mixup_alpha = 0.3  # 0 disables MixUp
    config.patience = 0  # epochs without a lower validation loss before stopping; 0: never
    config.embed_batch_size = 16  # chunks per batch when scoring whole test clips

    if variant == "fsdd":
        config.task = "spoken_digit"
        config.crop_frames = 112
        config.epochs = 20
        config.warmup_epochs = 2
    elif variant == "tiny":
        config.task = "spoken_digit"
        config.backbone = "tiny"
        config.backbone_overrides.update(dict(embed_dim=32, depth=2, num_heads=2, max_frames=64))
        config.crop_frames = 64
        config.batch_size = 8
        config.epochs = 2
        config.warmup_epochs = 1
        config.learning_rate = 1e-3
    elif variant:
        raise ValueError(f"unknown variant {variant!r}: expected '', 'fsdd' or 'tiny'")
    return config
