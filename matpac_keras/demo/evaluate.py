"""The demo's verdict: a linear probe on held-out synthetic clips, pretrained vs random init.

Both encoders embed the same held-out clips ("precise" clip embeddings, SPEC section 6); a
logistic-regression probe is fitted on one held-out split and scored on another. The random
encoder is the same architecture initialised from the run's seed.
"""

import numpy as np
from ml_collections import ConfigDict

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.demo.synthetic import make_corpus
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.evaluation.logistic_regression import probe_accuracy


def embed(backbone: MatpacBackbone, waveforms: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Clip embeddings [N, F*D] of equal-length waveforms, `batch_size` chunks at a time."""
    extractor = EmbeddingExtractor(backbone, mode="precise", batch_size=batch_size)
    return extractor.embed_waveforms(waveforms).embedding


def compare_with_random_init(
    backbone: MatpacBackbone, random_backbone: MatpacBackbone, config: ConfigDict
) -> dict:
    """Probe accuracies {"pretrained": ..., "random_init": ...} (each with the chosen l2) on
    `config.evaluate.clips_per_class` held-out clips per class for training the probe and as
    many for testing it."""
    clips, seconds = config.evaluate.clips_per_class, config.data.synthetic.seconds
    train_x, train_y = make_corpus(clips, seconds, config.seed, "probe_train")
    test_x, test_y = make_corpus(clips, seconds, config.seed, "probe_test")
    results = {}
    for name, encoder in (("pretrained", backbone), ("random_init", random_backbone)):
        result = probe_accuracy(
            embed(encoder, train_x), train_y, embed(encoder, test_x), test_y, seed=config.seed
        )
        results[name] = {"accuracy": result.accuracy, "l2": result.l2}
    results["chance"] = 1.0 / len(np.unique(train_y))
    results["probe_clips"] = {"train": len(train_y), "test": len(test_y)}
    return results
