"""A run's verdict: a linear probe on labelled held-out clips, pretrained vs random init.

The labelled clips come from a probe source named by `config.evaluate.probe_source`: one of
`PROBE_SOURCES` ("synthetic": held-out clips of the demo corpus; "fsdd_digits": the Free
Spoken Digit Dataset's standard split, from the folder of `config.data.source`), or any
"module:function" whose function takes the config and returns `ProbeClips`. Both encoders embed
the same clips ("precise" clip embeddings, SPEC section 6); a logistic-regression probe is
fitted on the train clips and scored on the test clips. The random encoder is the same
architecture initialised from the run's seed.
"""

import dataclasses
import importlib

import numpy as np
from ml_collections import ConfigDict

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.errors import InputError
from matpac_keras.evaluation.logistic_regression import probe_accuracy

PROBE_SOURCES = {
    "synthetic": "matpac_keras.demo.synthetic:probe_data",
    "fsdd_digits": "matpac_keras.demo.fsdd:probe_data",
}


@dataclasses.dataclass
class ProbeClips:
    """Labelled clips for a probe: 16 kHz mono float32 waveforms (any lengths) and int labels.

    Attributes:
        description: the clips in words, for the printed line ("held-out synthetic clips").
        train_waveforms, train_labels: the clips the probe is fitted on.
        test_waveforms, test_labels: the clips it is scored on.
    """

    description: str
    train_waveforms: list
    train_labels: np.ndarray
    test_waveforms: list
    test_labels: np.ndarray


def load_probe_data(config: ConfigDict) -> ProbeClips:
    """The `ProbeClips` of `config.evaluate.probe_source` (a registered name or module:function)."""
    return probe_loader(config)(config)


def probe_loader(config: ConfigDict):
    """The function that `config.evaluate.probe_source` names (checked before a run starts, so
    that a bad name fails at once rather than after the training); InputError naming it."""
    name = config.evaluate.probe_source
    target = PROBE_SOURCES.get(name, name)
    module_name, _, function = target.partition(":")
    if not function:
        raise InputError(
            f"config.evaluate.probe_source {name!r}: not one of {sorted(PROBE_SOURCES)} or a "
            "'module:function'"
        )
    try:
        loader = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as error:
        raise InputError(f"config.evaluate.probe_source {name!r}: {error}") from error
    return loader


def embed(backbone: MatpacBackbone, waveforms, batch_size: int = 64) -> np.ndarray:
    """Clip embeddings [N, F*D] of waveforms of any lengths."""
    extractor = EmbeddingExtractor(backbone, mode="precise", batch_size=batch_size)
    lengths = {len(w) for w in waveforms}
    if len(lengths) == 1:
        return extractor.embed_waveforms(np.stack(waveforms)).embedding
    return np.stack([result.embedding for result in extractor.embed_clips(waveforms)])


def compare_with_random_init(
    backbone: MatpacBackbone,
    random_backbone: MatpacBackbone,
    data: ProbeClips,
    seed: int,
    init_from: MatpacBackbone | None = None,
) -> dict:
    """Probe accuracies {"pretrained": ..., "random_init": ...} (each with the chosen l2), the
    chance level, the clip counts and the probe's description; with `init_from` (the encoder a
    run started from, `config.init_from`), its accuracy too, as "init_from"."""
    results = {}
    encoders = [("pretrained", backbone), ("random_init", random_backbone)]
    if init_from is not None:
        encoders.append(("init_from", init_from))
    for name, encoder in encoders:
        result = probe_accuracy(
            embed(encoder, data.train_waveforms),
            data.train_labels,
            embed(encoder, data.test_waveforms),
            data.test_labels,
            seed=seed,
        )
        results[name] = {"accuracy": result.accuracy, "l2": result.l2}
    results["chance"] = 1.0 / len(np.unique(data.train_labels))
    results["probe_clips"] = {"train": len(data.train_labels), "test": len(data.test_labels)}
    results["description"] = data.description
    return results
