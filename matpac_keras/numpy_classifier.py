"""A `MatpacAudioClassifier`'s head in NumPy, for tagging without Keras.

`matpac-tag --runtime=onnx|openvino` scores clips with the classifier's encoder exported to a
runtime (`encoder_runtime`) and its head, saved here as arrays: the optional frequency-mean
pooling, the optional BatchNorm (inference statistics) and the Dense layer (kernel, bias).
`NumpyClassifier` offers what `tagging.tag_files` uses of a `MatpacAudioClassifier`
(`clip_extractor`, `classify`, `probabilities`, `head_labels`, `label_names`), so the files are
tagged as the classifier tags them, within float32 rounding, importing neither TensorFlow nor
Keras.

    head_arrays(classifier)                  # Keras: the head's arrays (raises for heads with
                                             # an output activation, which stay in Keras)
    save_head(arrays, "head.npz"); NumpyClassifier.load("head.npz", encoder)
"""

import json
import os

import numpy as np

from matpac_keras.head_labels import HeadLabels, logit_probabilities
from matpac_keras.numpy_embedding import NumpyEmbeddingExtractor, check_chunk_frames


def head_arrays(classifier) -> dict[str, np.ndarray]:
    """The head of a `MatpacAudioClassifier` as arrays (and its settings as JSON `config`).

    Raises:
        ValueError: a Dense layer with an output activation (logits are needed).
    """
    from keras import ops

    if classifier.activation not in (None, "linear"):
        raise ValueError(f"a head with an output activation ({classifier.activation!r})")
    config = {
        "num_classes": classifier.num_classes,
        "pooling": classifier.pooling,
        "labels": None if classifier.labels is None else list(classifier.labels),
        "multi_label": classifier.multi_label,
        "crop_frames": classifier.crop_frames,
        "num_freq_patches": classifier.backbone.num_freq_patches,
        "embed_dim": classifier.backbone.embed_dim,
    }
    arrays = {
        "kernel": ops.convert_to_numpy(classifier.output_dense.kernel),
        "bias": ops.convert_to_numpy(classifier.output_dense.bias),
    }
    if classifier.head_norm is not None:
        norm = classifier.head_norm
        config["norm_epsilon"] = float(norm.epsilon)
        arrays["norm_mean"] = ops.convert_to_numpy(norm.moving_mean)
        arrays["norm_variance"] = ops.convert_to_numpy(norm.moving_variance)
    arrays = {name: np.asarray(value, "float32") for name, value in arrays.items()}
    return {**arrays, "config": np.array(json.dumps(config))}


def save_head(arrays: dict[str, np.ndarray], path) -> None:
    """Writes `head_arrays` to the `.npz` `path` atomically (a temporary beside it, renamed)."""
    path = os.fspath(path)
    staging = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(staging, **arrays)
    os.replace(staging, path)


class NumpyClassifier:
    """A classifier's head (`head_arrays`) on an exported encoder, in NumPy.

    Args:
        arrays: the head's arrays and `config` (`head_arrays`, or read by `load`).
        encoder: the exported encoder of the classifier's backbone (`encoder_runtime`).
    """

    def __init__(self, arrays: dict[str, np.ndarray], encoder):
        self.config = json.loads(str(arrays["config"]))
        self.arrays = {name: value for name, value in arrays.items() if name != "config"}
        self.encoder = encoder
        self.num_classes = self.config["num_classes"]
        self.labels = None if self.config["labels"] is None else tuple(self.config["labels"])
        self.multi_label = self.config["multi_label"]
        self.crop_frames = self.config["crop_frames"]

    @classmethod
    def load(cls, path, encoder) -> "NumpyClassifier":
        with np.load(path) as data:
            return cls({name: data[name] for name in data.files}, encoder)

    def clip_extractor(self, crop_frames: int | None = None, batch_size: int = 16):
        """`MatpacAudioClassifier.clip_extractor`, on the exported encoder."""
        crop_frames = self.crop_frames if crop_frames is None else crop_frames
        spec = self.encoder.spec
        if crop_frames is not None:
            check_chunk_frames(crop_frames, spec, "crop_frames")
        return NumpyEmbeddingExtractor(
            spec,
            mode="precise" if crop_frames is None else "fast",
            batch_size=batch_size,
            chunk_frames=crop_frames,
            encoder=self.encoder,
        )

    def classify(self, features, training=None) -> np.ndarray:
        """Logits [B, classes] of clip embeddings [B, F * D] (`MatpacAudioClassifier.classify`
        at inference)."""
        features = np.asarray(features, "float32")
        if self.config["pooling"] == "freq_mean":
            shape = (-1, self.config["num_freq_patches"], self.config["embed_dim"])
            features = features.reshape(shape).mean(axis=1)
        if "norm_mean" in self.arrays:
            scale = 1.0 / np.sqrt(self.arrays["norm_variance"] + self.config["norm_epsilon"])
            features = (features - self.arrays["norm_mean"]) * scale
        return features @ self.arrays["kernel"] + self.arrays["bias"]

    def probabilities(self, logits, activation: str | None = None) -> np.ndarray:
        return logit_probabilities(logits, activation or self.head_labels().activation)

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.labels or tuple(f"class {i}" for i in range(self.num_classes))

    def head_labels(self, activation: str | None = None) -> HeadLabels:
        return HeadLabels(
            self.label_names, activation or ("sigmoid" if self.multi_label else "softmax")
        )
