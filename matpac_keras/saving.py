"""Loading `.keras` files written by this package, on any backend."""

import os

import keras

# Importing the modules registers their classes for deserialisation.
from matpac_keras import embedding, pretrainer  # noqa: F401
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.evaluation import classifier  # noqa: F401


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads any matpac_keras model from a `.keras` file, with a clear error for a bad path."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not path.endswith(".keras"):
        raise ValueError(
            f"{path!r}: expected a .keras file (convert .pt files with matpac-convert)"
        )
    return keras.saving.load_model(path, compile=False)


def load_backbone(path: str | os.PathLike) -> MatpacBackbone:
    """The (student) encoder of a saved backbone, pretrainer or classifier."""
    model = load_model(path)
    if isinstance(model, MatpacBackbone):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, MatpacBackbone):
        return backbone
    raise ValueError(f"{os.fspath(path)!r} holds a {type(model).__name__}, not a MATPAC model")
