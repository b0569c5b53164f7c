"""SavedModel export of clip embeddings (and of a classifier): TensorFlow backend only.

The SavedModel computes SPEC section 6's "precise" or "fast" clip embedding of 16 kHz waveforms
of any length inside the TensorFlow graph, as `EmbeddingExtractor` does in Python:

    serving_default: waveform float32 [batch, samples] -> embedding [batch, F*D]
                     (+ layers [batch, blocks, F*D] with `layers=True`)
    classify:        waveform -> probabilities [batch, K], top_labels [batch, k] (strings),
                     top_probabilities [batch, k], k = min(5, K)   (only with a head)

In the graph: checks of the input (rank 2, at least 400 samples, finite: a failed one stops the
call with its message, "waveform must be [batch, samples]", "waveform contains NaN or infinite
values"), log-mel, then the embedder's windows in graph form
(`EmbeddingExtractor.graph_embeddings`: zero padding for the mode, windows of `max_frames`
frames or of the `temporal_support` given, one every `hop`, all but the last encoded one after
the other with `tf.map_fn`, bounded memory for long clips, aggregated as `aggregate` says: the
mean over all time steps, padded steps included, by default). A probe head scores that same
embedding (its input width is 2 F*D with "mean+max"). The outputs are checked too
(`check_finite_output`): an embedding or probabilities holding NaN or Inf (finite but extreme
samples, e.g. 1e30, or non-finite weights) stop the call with "embedding holds NaN or infinite
values ..." rather than answer NaN.

The head is a probe (a Keras model on clip embeddings [B, F*D], with its `HeadLabels`) or a
`MatpacAudioClassifier` (converted from the authors' heads or fine-tuned), whose own backbone then
computes the embedding that its head scores, exactly as `MatpacAudioClassifier.clip_logits`
does (`clip_extractor`: the precise clip embedding, or with `crop_frames`, the classifier's own
or the one given, crops of that many frames as in fine-tuning), with the classifier's own labels
and activation unless `head_labels` are given.

Written with `keras.export.ExportArchive`, which tracks the variables the endpoints use and
names the first one `serving_default` for TF Serving. `.keras` files of any backend load here
(their weights are backend-independent), but this process must run Keras on TensorFlow
(`KERAS_BACKEND=tensorflow`; the `matpac-export` CLI sets it itself).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import MODES, EmbeddingExtractor, check_chunk_frames
from matpac_keras.frontend import N_FFT
from matpac_keras.head_labels import HeadLabels

TOP_K = 5


def check_tensorflow_backend() -> None:
    """Raises RuntimeError unless Keras runs on TensorFlow (SavedModels need TF graphs)."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"SavedModel export needs Keras on TensorFlow, but KERAS_BACKEND is "
            f"{keras.backend.backend()!r}: run matpac-export (which sets it) or set "
            "KERAS_BACKEND=tensorflow before importing keras"
        )


def _run_time_rank(tensor):
    """The rank of `tensor`, computed when the graph runs.

    A SavedModel signature does not enforce its input's rank, and Grappler folds `tf.rank` (or
    the size of `tf.shape`) to the signature's declared rank; the size of a boolean mask of the
    shape depends on its values, so it cannot be folded.
    """
    shape = tf.raw_ops.Shape(input=tensor)
    return tf.size(tf.boolean_mask(shape, shape >= 0))


def check_waveform(waveform):
    """`waveform` checked at run time, in this order: rank 2, at least `N_FFT` samples, all
    finite. A failed check stops the call with an InvalidArgumentError carrying its message
    ("waveform must be [batch, samples]", "waveform contains NaN or infinite values"), where the
    graph would otherwise fail in a slice or return NaN embeddings."""
    rank = _run_time_rank(waveform)
    rank_check = tf.debugging.Assert(
        tf.equal(rank, 2), ["waveform must be [batch, samples]; got rank", rank], name="rank"
    )
    with tf.control_dependencies([rank_check]):
        waveform = tf.identity(waveform)
    length = tf.raw_ops.Shape(input=waveform)[-1]
    length_check = tf.debugging.Assert(
        length >= N_FFT,
        [f"waveform must have at least {N_FFT} samples (one STFT frame); got", length],
        name="length",
    )
    with tf.control_dependencies([length_check]):
        waveform = tf.identity(waveform)
    return tf.debugging.assert_all_finite(waveform, "waveform contains NaN or infinite values")


def check_finite_output(tensor, name: str):
    """`tensor` (an output named `name`), checked at run time to hold no NaN or Inf: a clip of
    extreme samples (finite, e.g. 1e30, whose power overflows float32) or a model with
    non-finite weights stops the call with an InvalidArgumentError ("embedding holds NaN or
    infinite values ..."), as `matpac-embed` and `matpac-tag` stop, instead of answering NaN."""
    return tf.debugging.assert_all_finite(
        tensor,
        f"{name} holds NaN or infinite values (extreme samples, e.g. 1e30, or non-finite "
        "model weights)",
    )


def clip_embeddings(waveform, extractor: EmbeddingExtractor):
    """Graph-mode clip embeddings of waveforms [B, N] per layer, [B, L, F*D] (L = 1 unless the
    extractor's `layers`): the waveform checked, its log-mel, then the embedder's own chunking
    (`EmbeddingExtractor.graph_embeddings`)."""
    return extractor.graph_embeddings(extractor.frontend(check_waveform(waveform)))


def export_saved_model(
    backbone: MatpacBackbone,
    output_dir: str | os.PathLike,
    mode: str = "precise",
    layers: bool = False,
    head: keras.Model | None = None,
    head_labels: HeadLabels | None = None,
    crop_frames: int | None = None,
    temporal_support: float | None = None,
    hop: float | None = None,
    aggregate: str = "mean",
) -> list[str]:
    """Writes a SavedModel of `backbone`'s clip embeddings (and a `classify` signature with
    `head`, a probe or a MatpacAudioClassifier, and its `head_labels`); returns the signature names.
    `crop_frames` (MatpacAudioClassifier only): score crops of that many frames.
    `temporal_support`, `hop` (seconds) and `aggregate`: the embedder's windows
    (`EmbeddingExtractor`; default: chunks of the model's `max_frames`, their mean)."""
    check_tensorflow_backend()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    extractor = EmbeddingExtractor(
        backbone,
        mode=mode,
        layers=layers,
        temporal_support=temporal_support,
        hop=hop,
        aggregate=aggregate,
    )
    if isinstance(head, MatpacAudioClassifier) and head_labels is None:
        head_labels = head.head_labels()
    if (head is None) != (head_labels is None):
        raise ValueError("give a head together with its labels, or neither")
    if head is not None:
        check_head(head, head_labels, backbone, crop_frames, extractor.embedding_size)
    elif crop_frames is not None:
        raise ValueError("crop_frames needs a MatpacAudioClassifier head")
    spec = tf.TensorSpec([None, None], tf.float32, name="waveform")
    # No `archive.track(...)`: the archive tracks the variables its endpoints use, and tracking
    # the models would trace their default signature, which needs a static input rank.
    archive = keras.export.ExportArchive()

    def embed(waveform):
        pooled = check_finite_output(clip_embeddings(waveform, extractor), "embedding")
        outputs = {"embedding": pooled[:, -1]}
        if layers:
            outputs["layers"] = pooled
        return outputs

    archive.add_endpoint("serving_default", embed, input_signature=[spec])
    if head is not None:
        archive.add_endpoint(
            "classify",
            _classify_fn(head, head_labels, extractor, crop_frames),
            input_signature=[spec],
        )
    archive.write_out(os.fspath(output_dir), verbose=False)
    return ["serving_default"] + (["classify"] if head is not None else [])


def _classify_fn(head, head_labels, extractor: EmbeddingExtractor, crop_frames):
    """The `classify` endpoint: a probe scores `extractor`'s embedding, a classifier its own."""
    if isinstance(head, MatpacAudioClassifier):
        classifier = head
        extractor = classifier.clip_extractor(crop_frames)

        def head(embedding):
            return classifier.classify(embedding, training=False)

    names = tf.constant(head_labels.labels)
    top_k = min(TOP_K, len(head_labels.labels))

    def classify(waveform):
        embedding = clip_embeddings(waveform, extractor)[:, -1]
        probabilities = _probabilities(head(embedding), head_labels.activation)
        probabilities = check_finite_output(probabilities, "probabilities")
        top = tf.math.top_k(probabilities, k=top_k)
        return {
            "probabilities": probabilities,
            "top_labels": tf.gather(names, top.indices),
            "top_probabilities": top.values,
        }

    return classify


def _probabilities(outputs, activation: str):
    outputs = tf.cast(outputs, "float32")
    if activation == "softmax":
        return tf.nn.softmax(outputs, axis=-1)
    if activation == "sigmoid":
        return tf.sigmoid(outputs)
    return outputs


def check_head(
    head: keras.Model,
    head_labels: HeadLabels,
    backbone: MatpacBackbone,
    crop_frames: int | None = None,
    embedding_size: int | None = None,
) -> None:
    """Raises ValueError unless `head` scores `backbone`'s embeddings (a MatpacAudioClassifier: its
    own) with one output per label, and `crop_frames` suits a MatpacAudioClassifier's backbone.
    `embedding_size`: a probe's input width (default F*D; 2 F*D for a "mean+max" embedding)."""
    width = embedding_size or backbone.num_freq_patches * backbone.embed_dim
    if isinstance(head, MatpacAudioClassifier):
        backbone, classifier = head.backbone, head
        width = backbone.num_freq_patches * backbone.embed_dim  # its own embedding

        def head(embedding):
            return classifier.classify(embedding, training=False)

        if crop_frames is not None:
            check_chunk_frames(crop_frames, backbone, "crop_frames")
    elif crop_frames is not None:
        raise ValueError(
            f"crop_frames needs a MatpacAudioClassifier head, not a {type(head).__name__}"
        )
    try:
        outputs = head(np.zeros((1, width), "float32"))
    except Exception as error:
        raise ValueError(
            f"the head cannot take this backbone's embeddings [batch, {width}]: {error}"
        ) from error
    if tuple(outputs.shape) != (1, len(head_labels.labels)):
        raise ValueError(
            f"the head maps embeddings [1, {width}] to {tuple(outputs.shape)}, but there are "
            f"{len(head_labels.labels)} labels: expected (1, {len(head_labels.labels)})"
        )
