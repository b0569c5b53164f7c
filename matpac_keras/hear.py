"""The HEAR benchmark API (hearbenchmark.com/hear-api.html) for MATPAC models.

    model = load_model("matpac.keras")
    scene = get_scene_embeddings(audio, model)                      # [n_sounds, F*D]
    embeddings, timestamps = get_timestamp_embeddings(audio, model)  # [n, T, F*D], [n, T] ms

`audio` is [n_sounds, n_samples] float32 at 16 kHz (all sounds of a batch have one length), a
NumPy array or a tensor of any backend; the outputs are float32 tensors of the current Keras
backend. HEAR takes TensorFlow or PyTorch models: under those backends the model is a
`tf.Module` or a `torch.nn.Module`, as its validator checks.

Embeddings are SPEC section 6's "precise" ones: the scene embedding is the mean over all time
steps (the zero-padded last one included); the timestamp embeddings are the per-time-step
features, one per 16 log-mel frames (one patch column). The scene embedding may take another
temporal support (`EmbeddingExtractor`'s windows: `temporal_support` and `hop` in seconds,
`aggregate` "mean", "max" or "mean+max"), given to `load_model` or `HearModel`; HEAR's runner
calls `load_model(path)` alone, so wrap it to pass them:

    load = functools.partial(hear.load_model, temporal_support=2.0, hop=1.0)

The timestamp embeddings stay those of the model's own chunks.

Log-mel frame i (n_fft 400, hop 160, no centring) is centred at sample 160 i + 200, so time
step j (frames 16 j ... 16 j + 15) is centred at sample 2560 j + 1400:

    timestamp_j = 160 j + 87.5 ms

HEAR requires timestamps within the sound: a last step whose centre lies past the end (it then
holds at most 72.5 ms of audio that no earlier step covers) is left out of the timestamp
embeddings, except the first step of a sound shorter than 87.5 ms.
"""

import os

import keras
import numpy as np

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.frontend import HOP_LENGTH, N_FFT, SAMPLE_RATE


def _framework_module() -> type:
    """tf.Module or torch.nn.Module under those backends (what HEAR accepts), else object."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.Module
    if keras.backend.backend() == "torch":
        import torch

        return torch.nn.Module
    return object


class HearModel(_framework_module()):
    """A backbone with the attributes HEAR reads; scene embeddings come from `extractor` (with
    the temporal support given, if any), timestamp embeddings from `timestamp_extractor`."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        backbone: MatpacBackbone,
        batch_size: int = 16,
        temporal_support: float | None = None,
        hop: float | None = None,
        aggregate: str = "mean",
    ):
        super().__init__()
        self.backbone = backbone
        self.timestamp_extractor = EmbeddingExtractor(backbone, batch_size=batch_size)
        self.extractor = self.timestamp_extractor  # the scene embedding's
        if (temporal_support, hop, aggregate) != (None, None, "mean"):
            self.extractor = EmbeddingExtractor(
                backbone,
                batch_size=batch_size,
                temporal_support=temporal_support,
                hop=hop,
                aggregate=aggregate,
            )
        self.scene_embedding_size = self.extractor.embedding_size
        self.timestamp_embedding_size = backbone.num_freq_patches * backbone.embed_dim


def load_model(
    model_file_path: str = "",
    temporal_support: float | None = None,
    hop: float | None = None,
    aggregate: str = "mean",
) -> HearModel:
    """The HEAR model of a MATPAC preset directory or `.keras` file (backbone, pretrainer or
    classifier); its scene embedding with windows of `temporal_support` seconds every `hop`
    seconds, aggregated by `aggregate` (`EmbeddingExtractor`; default: the precise embedding).

    No weights come with the package, so a path is required (convert the published
    checkpoints with matpac-convert).
    """
    from matpac_keras.saving import load_backbone

    if not model_file_path:
        raise ValueError(
            "model_file_path is required: no weights are bundled; convert an official "
            "checkpoint with matpac-convert and pass the preset directory or .keras file"
        )
    backbone = load_backbone(os.fspath(model_file_path))
    return HearModel(backbone, temporal_support=temporal_support, hop=hop, aggregate=aggregate)


def timestamps_ms(num_steps: int, patch_size: int = 16) -> np.ndarray:
    """Centres, in milliseconds, of the first `num_steps` time steps of `patch_size` frames."""
    hop_ms = 1000.0 * HOP_LENGTH / SAMPLE_RATE
    first = 0.5 * (1000.0 * N_FFT / SAMPLE_RATE + (patch_size - 1) * hop_ms)
    return (first + patch_size * hop_ms * np.arange(num_steps)).astype("float32")


def _as_audio(audio) -> np.ndarray:
    audio = keras.ops.convert_to_numpy(audio).astype("float32", copy=False)
    if audio.ndim != 2:
        raise ValueError(f"audio must be [n_sounds, n_samples]; got shape {audio.shape}")
    if audio.shape[1] < N_FFT:
        raise ValueError(
            f"sounds of {audio.shape[1]} samples are too short: at least {N_FFT} are needed"
        )
    return audio


def get_scene_embeddings(audio, model: HearModel):
    """Clip embeddings [n_sounds, scene_embedding_size] of 16 kHz audio [n_sounds, n_samples]."""
    embeddings = model.extractor.embed_waveforms(_as_audio(audio)).embedding
    return keras.ops.convert_to_tensor(embeddings)


def get_timestamp_embeddings(audio, model: HearModel):
    """(embeddings [n_sounds, n_timestamps, size], timestamps [n_sounds, n_timestamps] in ms)."""
    audio = _as_audio(audio)
    frames = model.timestamp_extractor.embed_waveforms(audio).frames
    timestamps = timestamps_ms(frames.shape[1], model.backbone.patch_size)
    duration_ms = 1000.0 * audio.shape[1] / SAMPLE_RATE
    kept = max(1, int(np.sum(timestamps <= duration_ms)))
    timestamps = np.broadcast_to(timestamps[:kept], (len(audio), kept))
    return keras.ops.convert_to_tensor(frames[:, :kept]), keras.ops.convert_to_tensor(timestamps)
