"""Loading `.keras` files written by this package, on any backend.

A `.keras` file is a zip archive (`config.json`, `metadata.json`, `model.weights.h5`). Before
Keras reads it, the archive is checked whole (its central directory and every member's CRC), so
a truncated or damaged file is reported as such, naming it, rather than as Keras's "File not
found"; a model that still fails to load is reported the same way, with Keras's reason.
"""

import json
import os
import zipfile

import keras

# Importing the modules registers their classes for deserialisation.
from matpac_keras import embedding, pretrainer  # noqa: F401
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.errors import InputError
from matpac_keras.evaluation import classifier  # noqa: F401

MATPAC_MODELS = ("MatpacBackbone", "MatpacPretrainer", "MatpacClassifier", "TokenFeatures")


def _corrupt(path: str, reason: str) -> InputError:
    return InputError(f"{path}: corrupt or truncated .keras file ({reason})")


def read_keras_config(path: str | os.PathLike) -> dict:
    """The model config (`config.json`) of a `.keras` file, after checking the archive.

    Raises:
        FileNotFoundError: no file at `path`.
        InputError: not a `.keras` name, not a zip archive, a damaged member, or no valid
            `config.json`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not path.endswith(".keras"):
        raise InputError(f"{path}: expected a .keras file (convert .pt files with matpac-convert)")
    if not zipfile.is_zipfile(path):
        raise _corrupt(path, "not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise _corrupt(path, f"member {damaged} fails its CRC check")
            if "config.json" not in archive.namelist():
                raise _corrupt(path, "no config.json")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _corrupt(path, f"config.json is not valid JSON: {e}") from e
    if not isinstance(config, dict) or "class_name" not in config:
        raise _corrupt(path, "config.json holds no model config")
    return config


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads any Keras model (matpac_keras's or a plain one) from a `.keras` file.

    Raises:
        FileNotFoundError: no file at `path`.
        InputError: naming the file: not a `.keras` file, corrupt or truncated, or a model
            Keras cannot rebuild (e.g. of a class this package does not know).
    """
    path = os.fspath(path)
    config = read_keras_config(path)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Could not locate class" in str(e) or "Unknown" in type(e).__name__:
            raise InputError(
                f"{path}: holds a {config.get('class_name')} that cannot be rebuilt ({reason})"
            ) from e
        raise _corrupt(path, f"{type(e).__name__}: {reason}") from e


def load_backbone(path: str | os.PathLike) -> MatpacBackbone:
    """The (student) encoder of a saved backbone, pretrainer or classifier.

    Raises:
        FileNotFoundError: no file at `path`.
        InputError: as `load_model`, or the file holds another kind of model.
    """
    path = os.fspath(path)
    config = read_keras_config(path)
    name, module = config.get("class_name"), str(config.get("module") or "")
    if name not in MATPAC_MODELS or not module.startswith("matpac_keras"):
        raise InputError(
            f"{path}: holds a {name} ({module or 'unknown module'}), not a MATPAC model "
            f"(one of {', '.join(MATPAC_MODELS)})"
        )
    model = load_model(path)
    if isinstance(model, MatpacBackbone):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, MatpacBackbone):
        return backbone
    raise InputError(f"{path}: holds a {type(model).__name__}, not a MATPAC model")
