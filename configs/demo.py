r"""The built-in demo: MATPAC on synthetic sounds, on a CPU, with no download.

    matpac-train --config=configs/demo.py --workdir=runs/demo

A procedurally generated corpus of 10 sound classes (`matpac_keras/demo/synthetic.py`: harmonic
tones with steady, gliding or vibrato pitch, tremolo, noise bands, slow and fast clicks, sweeps,
noise bursts; random pitch, level and background noise) is pretrained on, without its labels,
by a small ViT (D 128, 4 blocks, 4 heads) on 1.28 s crops of 2,000 clips of 2.5 s (128
frames: a 5 x 8 patch grid), 2,500 steps of 32 crops. Then a linear probe on held-out clips
(400 to fit it, 400 to score it) compares the pretrained encoder with the same architecture at
its random initialisation; both accuracies are printed and written to probe.json.

Compared with the paper's run (`configs/matpac.py`, whose fields these are), the model, corpus
and run are small, and so the learning rate is higher and the teacher EMAs faster.
`configs/demo.py:tiny` is the same on a one-block D=32 model for a few seconds: for tests.

`configs/demo.py:fsdd` is the real-audio demo: the same model pretrained on the Free Spoken Digit
Dataset recordings beside the checkout (`../shared/data/fsdd/recordings` from the repo root;
another folder with `--config.data.source=`), on its 2,700 train recordings only
(`data.exclude` leaves out repetitions 0-4, the standard test split), 0.33 s crops (32 frames:
a 5 x 2 patch grid; recordings shorter than one crop are dropped and counted), batch 64. Then a
linear probe on the digits (fitted on the train recordings, scored on the 300 test recordings,
each padded to 1 s), pretrained against random init.
"""

import pathlib

from ml_collections import config_dict

from matpac_keras.config_file import load_config

_MATPAC = pathlib.Path(__file__).with_name("matpac.py")
# The FSDD recordings beside the checkout: <repo>/../shared/data/fsdd/recordings.
FSDD_RECORDINGS = pathlib.Path(__file__).resolve().parents[2] / "shared/data/fsdd/recordings"


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    if arg not in (None, "", "tiny", "fsdd"):
        raise ValueError(f"configs/demo.py takes no variant, 'tiny' or 'fsdd'; got {arg!r}")
    config = load_config(_MATPAC, "runlocal" if arg == "tiny" else None)
    config.model.encoder_ema = (0.996, 1.0)
    config.model.head_ema = (0.996, 1.0)
    config.data.source = "synthetic"
    config.train.update(dict(epochs=40.0, warmup_epochs=2.0, teacher_temperature_epochs=4.0))
    config.optim.lr = 5e-4
    config.optim.final_lr = 1e-5
    config.evaluate.linear_probe = True
    config.train.jit_compile = None  # small models on a CPU: no XLA compilation to wait for
    if arg == "tiny":
        config.train.update(dict(epochs=4.0, warmup_epochs=1.0, teacher_temperature_epochs=1.0))
        config.train.update(dict(checkpoint_every=2, keep_checkpoints=100, tensorboard=False))
        config.evaluate.linear_probe = False
        config.evaluate.clips_per_class = 4
        return config
    config.model.update(dict(variant="tiny", embed_dim=128, depth=4, num_heads=4))
    config.model.update(dict(max_frames=128, dtype="float32"))
    config.model.update(dict(predictor_dim=128, predictor_depth=1, predictor_heads=4))
    config.model.update(dict(head_hidden_dim=512, head_bottleneck_dim=128, num_classes=256))
    config.data.synthetic.clips_per_class = 200
    config.data.crop_frames = 128
    config.train.update(dict(global_batch_size=32, log_every=25, checkpoint_every=250))
    config.train.keep_checkpoints = 2
    if arg == "fsdd":
        _fsdd(config)
    return config


def _fsdd(config: config_dict.ConfigDict) -> None:
    """Pretraining on FSDD's train recordings, then the digit probe (see the docstring)."""
    from matpac_keras.demo.fsdd import TEST_PATTERN

    config.data.source = str(FSDD_RECORDINGS)
    config.data.exclude = TEST_PATTERN
    config.data.crop_frames = 32
    config.model.max_frames = 32
    config.train.update(dict(global_batch_size=64, epochs=24.0, warmup_epochs=2.0))
    config.train.update(dict(teacher_temperature_epochs=4.0, log_every=25, checkpoint_every=250))
    config.evaluate.probe_source = "fsdd_digits"
