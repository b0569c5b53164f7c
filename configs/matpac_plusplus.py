r"""MATPAC++ pretraining (arXiv 2508.12709): MATPAC with 5 prediction heads trained by
multiple choice learning (SPEC section 4), everything else as `configs/matpac.py`.

    matpac-train --config=configs/matpac_plusplus.py --workdir=runs/matpac_plusplus \
        --config.data.source=/data/tfds/matpac_audioset/1.0.0 \
        --config.data.split=balanced_train+unbalanced_train

Per masked token each head's prediction loss is weighted by softmax(-loss / T) with
T = 0.1 * 0.99997**step (`model.mcl_temperature`), and by the winner-takes-all min once
T <= 1e-4; the best head's prediction feeds the classification head.
`configs/matpac_plusplus.py:runlocal` shrinks it as `configs/matpac.py:runlocal` does.
"""

import pathlib

from ml_collections import config_dict

from matpac_keras.config_file import load_config

_MATPAC = pathlib.Path(__file__).with_name("matpac.py")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    config = load_config(_MATPAC, arg)
    config.model.num_prediction_heads = 5
    return config
