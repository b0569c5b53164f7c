"""Label names of a classification head, kept in a JSON file beside the head's `.keras` file.

A head (a probe or a fine-tuned classifier: a Keras model taking a clip embedding [B, F*D]) is
saved as `NAME.keras`; its labels go to `NAME.labels.json`:

    {"labels": ["dog", "rain", ...], "activation": "softmax"}

`labels[k]` names output unit k. `activation` says how the head's outputs become probabilities:
"softmax" (single-label logits), "sigmoid" (multi-label logits) or "none" (the head already
outputs probabilities). A JSON file rather than the model config, so any Keras model (Sequential,
functional or subclassed) can be a head, and the labels can be read without loading the model.
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from matpac_keras.errors import InputError
from matpac_keras.outputs import atomic_output

ACTIVATIONS = ("softmax", "sigmoid", "none")


def logit_probabilities(logits, activation: str) -> np.ndarray:
    """Probabilities [N, K] (float32) of logits [N, K]: "sigmoid" (each on its own) or
    "softmax" (over the row), computed in float64; "none" gives the logits."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
    logits = np.asarray(logits, "float64")
    if activation == "none":
        return logits.astype("float32")
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-logits))).astype("float32")
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype("float32")


def top_k_labels(probabilities, names, k: int) -> list[list[tuple[str, float]]]:
    """Per row of `probabilities` [N, K], the `k` most probable (name, probability) pairs, most
    probable first; ties keep the output order."""
    probabilities = np.asarray(probabilities)
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [
        [(names[i], float(row[i])) for i in indices]
        for row, indices in zip(probabilities, order, strict=True)
    ]


@dataclass(frozen=True)
class HeadLabels:
    """The label names of a head's output units and the activation that gives probabilities."""

    labels: tuple[str, ...]
    activation: str


def labels_path(head_path: str | os.PathLike) -> str:
    """`dir/probe.keras` -> `dir/probe.labels.json`."""
    head_path = os.fspath(head_path)
    return head_path.removesuffix(".keras") + ".labels.json"


def _validate(labels, activation, where: str) -> HeadLabels:
    if not isinstance(labels, list | tuple) or not labels:
        raise InputError(f"{where}: 'labels' must be a non-empty list of strings")
    if not all(isinstance(label, str) and label for label in labels):
        raise InputError(f"{where}: every label must be a non-empty string")
    if len(set(labels)) != len(labels):
        raise InputError(f"{where}: labels must be unique")
    if activation not in ACTIVATIONS:
        raise InputError(f"{where}: 'activation' must be one of {ACTIVATIONS}; got {activation!r}")
    return HeadLabels(tuple(labels), activation)


def save_head_labels(
    head_path: str | os.PathLike, labels: list[str], activation: str, overwrite: bool = True
) -> str:
    """Writes the labels of the head saved at `head_path`; returns the JSON file's path.

    Written atomically (matpac_keras.outputs): a failed or killed write leaves the old file or
    none. With `overwrite=False` an existing label file is refused (OutputError).
    """
    path = labels_path(head_path)
    _validate(labels, activation, path)
    with atomic_output(path, overwrite=overwrite) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump({"labels": list(labels), "activation": activation}, file, indent=1)
    return path


def load_head_labels(path: str | os.PathLike) -> HeadLabels:
    """Reads a `.labels.json` file, or the one beside the head `.keras` file given."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        path = labels_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no label file at {path!r}: write it with matpac_keras.head_labels.save_head_labels"
        )
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(content, dict) or set(content) != {"labels", "activation"}:
        raise InputError(f"{path}: expected an object with the keys 'labels' and 'activation'")
    return _validate(content["labels"], content["activation"], path)
