"""`MatpacAudioClassifier`: a MATPAC backbone with a classification head, as a keras-hub Task.

Normalised log-mel [B, mels, frames] -> (SpecAugment-style masking while training) ->
backbone -> per-time-step features (the frequency tokens of a step concatenated, index f * D + d,
as the clip embeddings) -> mean over time -> the head -> logits [B, classes]. Two heads:

- `pooling="concat"` (default): the [B, F * D] time mean itself: the authors' downstream probe
  heads (`probe.weight` [n, 5 D]) and this package's fine-tuning.
- `pooling="freq_mean"`: the mean of that over the F frequency tokens, [B, D]: the authors'
  AudioSet head, with `head_norm=True` (BatchNorm over D without scale or offset, eps 1e-5,
  as their `head_norm`) before the Dense layer (SPEC section 9).

Inputs take at most the backbone's `max_frames`; `clip_logits` scores clips of any length
through the embedder (`embedding.py`), like the clip embeddings or like training crops. With a
`MatpacAudioClassifierPreprocessor` (waveform -> log-mel), `fit` and `predict` take 16 kHz
waveforms of one length. `save_to_preset(dir)` / `MatpacAudioClassifier.from_preset(dir)`
round-trip it through keras-hub; `MatpacAudioClassifier.from_preset(backbone_preset,
num_classes=n)` starts one from a converted backbone.
"""

import keras
import keras_hub
import numpy as np
from keras import ops

from matpac_keras.audio_converter import MatpacAudioConverter
from matpac_keras.backbone import MatpacBackbone, export_spectrogram_model
from matpac_keras.embedding import (
    EmbeddingExtractor,
    bucketed_embeddings,
    check_chunk_frames,
    time_step_features,
)
from matpac_keras.head_labels import (  # noqa: F401  (top_k_labels: importers take it from here)
    ACTIVATIONS,
    HeadLabels,
    logit_probabilities,
    top_k_labels,
)

POOLINGS = ("concat", "freq_mean")


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacAudioClassifierPreprocessor(keras_hub.models.Preprocessor):
    """16 kHz waveforms `[batch, samples]` -> the normalised log-mel the classifier takes.

    Args:
        audio_converter: MatpacAudioConverter, or None for the default one.
    """

    backbone_cls = MatpacBackbone
    audio_converter_cls = MatpacAudioConverter

    def __init__(self, audio_converter: MatpacAudioConverter | None = None, **kwargs):
        super().__init__(**kwargs)
        self.audio_converter = audio_converter or MatpacAudioConverter()

    def call(self, x, y=None, sample_weight=None):
        return keras.utils.pack_x_y_sample_weight(self.audio_converter(x), y, sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "audio_converter": keras.layers.serialize(self.audio_converter),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("audio_converter"), dict):
            config["audio_converter"] = keras.layers.deserialize(config["audio_converter"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacAudioClassifier(keras_hub.models.Task):
    """Backbone + time-mean pooling + a linear head (optionally normalised), trainable end to end.

    Args:
        backbone: MatpacBackbone. The encoder (pre-trained or not); trained with the head.
        num_classes: int. Output logits.
        preprocessor: None (inputs are normalised log-mels) or a
            `MatpacAudioClassifierPreprocessor` (inputs of `fit`/`predict` are waveforms).
        pooling: "concat" ([B, F * D] features) or "freq_mean" ([B, D]). Defaults to "concat".
        head_norm: bool. BatchNorm (no scale, no offset, eps 1e-5) before the Dense layer.
            Defaults to False.
        activation: None (logits, the default) or an activation of the Dense layer.
        dropout: float. Dropout on the pooled features. Defaults to 0.
        erase_factor: float in [0, 1]. Probability of masking one random rectangle of the
            log-mel (time x mel span, each a sqrt(scale) fraction) with 0 (the normalised mean)
            while training, via `keras.layers.RandomErasing`. 0 (default) disables it.
        erase_scale: (min, max) area fraction of the masked rectangle. Defaults to (0.02, 0.25).
        num_erasures: int. Independent masks applied in turn. Defaults to 2.
        labels: None or `num_classes` label names, in output order (the authors' heads carry
            theirs: `matpac-convert`). Defaults to None.
        multi_label: bool. The classes are tags (any number per clip): `probabilities`
            defaults to a sigmoid, else a softmax. Defaults to False.
        crop_frames: None or int. How `clip_logits` (and so `matpac-tag` and `matpac-export`)
            scores a whole clip: None (default) through the precise clip embedding (chunks of
            `max_frames`, as the authors' heads were trained); an int, a multiple of the patch
            size up to `max_frames`, through crops of that length, as `matpac-finetune`
            trained and tested (it sets its `crop_frames`).

    Compiled by default (as keras-hub tasks are) with Adam(5e-5), sparse categorical
    cross-entropy on the logits and accuracy; `compile` again for other choices.

    Example:
    >>> model = MatpacAudioClassifier(MatpacBackbone.from_variant("tiny"), num_classes=10)
    >>> logits = model(keras.ops.zeros((2, 80, 96)))  # [2, 10]
    >>> model.fit(keras.ops.zeros((2, 80, 96)), np.array([3, 7]))
    """

    backbone_cls = MatpacBackbone
    preprocessor_cls = MatpacAudioClassifierPreprocessor

    def __init__(
        self,
        backbone: MatpacBackbone,
        num_classes: int,
        preprocessor: MatpacAudioClassifierPreprocessor | None = None,
        pooling: str = "concat",
        head_norm: bool = False,
        activation=None,
        dropout: float = 0.0,
        erase_factor: float = 0.0,
        erase_scale: tuple[float, float] = (0.02, 0.25),
        num_erasures: int = 2,
        labels=None,
        multi_label: bool = False,
        crop_frames: int | None = None,
        **kwargs,
    ):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive; got {num_classes}")
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"labels: {len(labels)} names for num_classes={num_classes}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        if not 0 <= erase_factor <= 1:
            raise ValueError(f"erase_factor must be in [0, 1]; got {erase_factor}")
        if crop_frames is not None:
            check_chunk_frames(crop_frames, backbone, "crop_frames")
        dtype = backbone.dtype_policy
        # === Config ===
        self.num_classes = num_classes
        self.pooling = pooling
        self.activation = keras.activations.serialize(keras.activations.get(activation))
        self.dropout = dropout
        self.erase_factor = erase_factor
        self.erase_scale = tuple(erase_scale)
        self.num_erasures = num_erasures
        self.labels = None if labels is None else tuple(str(label) for label in labels)
        self.multi_label = bool(multi_label)
        self.crop_frames = None if crop_frames is None else int(crop_frames)
        # keras-hub's Task compiles here (with the defaults above), and under PyTorch only layers
        # set after it are tracked: the layers come next.
        super().__init__(**{"dtype": dtype, **kwargs})
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.erasers = [
            keras.layers.RandomErasing(
                factor=(erase_factor, erase_factor),
                scale=tuple(erase_scale),
                fill_value=0.0,
                value_range=(-1.0, 1.0),
                data_format="channels_last",
                dtype=dtype,
                name=f"erasing_{i}",
            )
            for i in range(num_erasures if erase_factor > 0 else 0)
        ]
        self.head_norm = (
            keras.layers.BatchNormalization(
                epsilon=1e-5, center=False, scale=False, dtype=dtype, name="head_norm"
            )
            if head_norm
            else None
        )
        self.output_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="output_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, activation=activation, dtype=dtype, name="predictions"
        )
        self.build()

    @property
    def head_dim(self) -> int:
        """Width of the head's input: F * D ("concat") or D ("freq_mean")."""
        bb = self.backbone
        return bb.embed_dim * (bb.num_freq_patches if self.pooling == "concat" else 1)

    def build(self, input_shape=None):
        if self.built:
            return
        if self.head_norm is not None:
            self.head_norm.build((None, self.head_dim))
        self.output_dense.build((None, self.head_dim))
        self.built = True

    def get_build_config(self):
        return {"input_shape": None}

    def build_from_config(self, config):
        self.build()

    def pooled_features(self, spectrogram, training=None):
        """[B, F * D]: time mean of the frequency-concatenated final-layer tokens (the clip
        embedding of one chunk), after masking while training."""
        if self.erasers and training:
            x = spectrogram[..., None]
            for eraser in self.erasers:
                x = eraser(x, training=training)
            spectrogram = x[..., 0]
        tokens = self.backbone(spectrogram)[:, 1:]
        return ops.mean(time_step_features(tokens, self.backbone.num_freq_patches), axis=1)

    def classify(self, features, training=None):
        """Logits of [B, F * D] clip embeddings (time means of concatenated tokens)."""
        if self.pooling == "freq_mean":
            bb = self.backbone
            features = ops.mean(ops.reshape(features, (-1, bb.num_freq_patches, bb.embed_dim)), 1)
        if self.head_norm is not None:
            features = self.head_norm(features, training=training)
        return self.output_dense(self.output_dropout(features, training=training))

    def call(self, spectrogram, training=None):
        return self.classify(self.pooled_features(spectrogram, training=training), training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kw):
        """`keras.Model.export` of log-mel `[batch, num_mels, frames]` -> outputs (batch and
        frames free; at most `max_frames`), under `KERAS_BACKEND=tensorflow`, as
        `MatpacBackbone.export`. The preprocessor is not part of it; `matpac-export --head`
        writes a waveform-in SavedModel of clips of any length."""
        return export_spectrogram_model(
            self, self.backbone, filepath, format, verbose, input_signature, super().export, **kw
        )

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """`keras.Model.compile`, with keras-hub's classifier defaults for "auto": Adam(5e-5),
        sparse categorical cross-entropy (from logits unless `activation` is softmax) and, with
        that loss, sparse categorical accuracy (with a loss of one's own, "auto" metrics are
        none: integer-label accuracy would be wrong for one-hot or multi-label targets)."""
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy()] if loss == "auto" else []
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(5e-5)
        if loss == "auto":
            from_logits = keras.activations.get(self.activation) != keras.activations.softmax
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # With no preprocessor the inputs are log-mels already: `fit`, `evaluate` and `predict` are
    # keras.Model's, which take any Keras input (arrays, tf.data, keras.utils.PyDataset,
    # generators) on every backend; keras-hub's versions, which map the preprocessor over a
    # tf.data or grain pipeline they build, refuse a PyDataset.
    def fit(self, *args, **kwargs):
        if self.preprocessor is None:
            return keras.Model.fit(self, *args, **kwargs)
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        if self.preprocessor is None:
            return keras.Model.evaluate(self, *args, **kwargs)
        return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        if self.preprocessor is None:
            return keras.Model.predict(self, *args, **kwargs)
        return super().predict(*args, **kwargs)

    def compile_from_config(self, config):
        # keras.Model's version skips any model whose `compile` is overridden (with a warning):
        # a loaded classifier gets its saved optimizer, loss and metrics back.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def clip_extractor(
        self, crop_frames: int | None = None, batch_size: int = 16
    ) -> EmbeddingExtractor:
        """The embedder whose clip embeddings [F * D] `classify` scores (`clip_logits`).

        `crop_frames` (default: the model's `crop_frames`) None: the precise clip embedding of
        the backbone (log-mel padded to a multiple of the patch size, chunks of `max_frames`).
        Else as in training: the log-mel padded with zeros to a multiple of `crop_frames` and
        cut into crops of that length, whose pooled features are averaged (the crops have
        equal lengths, so this is the mean over all time steps). A clip shorter than
        `crop_frames` is then seen exactly as its validation batch during fine-tuning.
        """
        crop_frames = self.crop_frames if crop_frames is None else crop_frames
        if crop_frames is not None:
            check_chunk_frames(crop_frames, self.backbone, "crop_frames")
        return EmbeddingExtractor(
            self.backbone,
            mode="precise" if crop_frames is None else "fast",
            batch_size=batch_size,
            chunk_frames=crop_frames,
        )

    def clip_logits(
        self, waveforms: list[np.ndarray], crop_frames: int | None = None, batch_size: int = 16
    ) -> np.ndarray:
        """Outputs [N, classes] of clips of any length (16 kHz), dropout and masking off,
        scored through `clip_extractor(crop_frames)`."""
        pooled = bucketed_embeddings(self.clip_extractor(crop_frames, batch_size), waveforms)
        return ops.convert_to_numpy(self.classify(pooled, training=False))

    def probabilities(self, logits, activation: str | None = None) -> np.ndarray:
        """Probabilities [N, classes] of logits: `activation` "sigmoid" or "softmax" (the
        authors' choice for every head; "none" returns the logits), by default sigmoid for a
        `multi_label` model, else softmax."""
        activation = activation or ("sigmoid" if self.multi_label else "softmax")
        return logit_probabilities(logits, activation)

    @property
    def label_names(self) -> tuple[str, ...]:
        """The name of each output: `labels`, or "class <i>" when the model has none."""
        return self.labels or tuple(f"class {i}" for i in range(self.num_classes))

    def top_labels(self, probabilities, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per clip, the `k` most probable (label, probability) pairs, most probable first
        (labels "class <i>" when the model has none)."""
        return top_k_labels(probabilities, self.label_names, k)

    def head_labels(self, activation: str | None = None) -> HeadLabels:
        """The label names and activation (default as `probabilities`: sigmoid for a
        `multi_label` model, else softmax) with which the SavedModel's `classify` signature
        turns this model's logits into named probabilities (`matpac_keras.export`)."""
        activation = activation or ("sigmoid" if self.multi_label else "softmax")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
        return HeadLabels(self.label_names, activation)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "pooling": self.pooling,
            "head_norm": self.head_norm is not None,
            "activation": self.activation,
            "dropout": self.dropout,
            "erase_factor": self.erase_factor,
            "erase_scale": self.erase_scale,
            "num_erasures": self.num_erasures,
            "labels": None if self.labels is None else list(self.labels),
            "multi_label": self.multi_label,
            "crop_frames": self.crop_frames,
        }

    @classmethod
    def from_config(cls, config):
        return super().from_config(dict(config))  # keras-hub's replaces entries of its argument
