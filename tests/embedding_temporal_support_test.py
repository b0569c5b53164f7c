"""Temporal support: `EmbeddingExtractor`'s windows (`temporal_support`, `hop`, `aggregate`)
against a NumPy reference of the windowing, and equal to precise mode at the model's chunk."""

import copy

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.convert import model_from_state_dict
from matpac_keras.embedding import EmbeddingExtractor, window_frames
from tests.conftest import FIXTURE_HEADS, relative_error

MAX_FRAMES = 128


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(5)
    return MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=MAX_FRAMES)  # built


@pytest.fixture(scope="module")
def fixture_backbone(encoder_only_state):
    return model_from_state_dict(encoder_only_state, **FIXTURE_HEADS)


def test_temporal_support_of_the_chunk_is_precise_mode(fixture_backbone, fixture_arrays):
    """TS = the model's chunk (1.28 s here) and hop = TS: today's precise embedding, exactly,
    in memory and streamed; and the authors' precise embedding (fixtures) within 1e-4."""
    expected = fixture_arrays("embed")
    waveform = expected["waveform"]  # 198 frames: windows of 128 and 80 (padded from 70)
    precise = EmbeddingExtractor(fixture_backbone, layers=True)
    windowed = EmbeddingExtractor(
        fixture_backbone, layers=True, temporal_support=1.28, hop=1.28, aggregate="mean"
    )
    assert (windowed.chunk_frames, windowed.hop_frames) == (precise.chunk_frames, 128)
    windowed.features = precise.features  # one compiled function: the same numbers
    ours, theirs = windowed.embed_waveforms(waveform), precise.embed_waveforms(waveform)
    for name in ("embedding", "layers", "frames", "layer_frames"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert relative_error(ours.embedding, expected["precise_pooled/emb"]) < 1e-4
    assert relative_error(ours.layers, expected["precise_pooled/layers"]) < 1e-4
    streamed = windowed.embed_stream(np.array_split(waveform[1], 5))
    np.testing.assert_array_equal(streamed.embedding, precise.embed_stream([waveform[1]]).embedding)
    np.testing.assert_allclose(streamed.embedding, theirs.embedding[1], atol=1e-5)


def reference_windows(frames: int, window: int, hop: int, fast: bool) -> list[tuple[int, int]]:
    """(start, frames) of each window, as the windowing is specified: the clip padded to a
    multiple of 16 frames; a window every `hop` frames; the last one the first to reach the
    padded end, holding the rest (precise) or full, the clip padded further (fast)."""
    end = -(-frames // 16) * 16
    out, start = [], 0
    while True:
        out.append((start, window if fast else min(window, end - start)))
        if start + window >= end:
            return out
        start += hop


def reference_embedding(backbone, logmel, windows, aggregate):
    """NumPy: each window of the zero-padded log-mel [mels, T] encoded alone by the backbone;
    its tokens [F, t, D] -> steps [t, F*D]; step mean over all windows (weights: their steps),
    maximum of the window means, or both concatenated."""
    end = max(start + length for start, length in windows)
    padded = np.pad(logmel, ((0, 0), (0, end - logmel.shape[1])))
    steps, means = [], []
    for start, length in windows:
        tokens = keras.ops.convert_to_numpy(backbone(padded[None, :, start : start + length]))
        grid = tokens[0, 1:].reshape(5, length // 16, -1).astype(np.float64)
        features = grid.transpose(1, 0, 2).reshape(length // 16, -1)
        steps.append(features)
        means.append(features.mean(axis=0))
    mean, maximum = np.concatenate(steps).mean(axis=0), np.max(means, axis=0)
    return {"mean": mean, "max": maximum, "mean+max": np.concatenate([mean, maximum])}[aggregate]


# 48_077 samples: 298 log-mel frames, padded to 304. (TS, hop) in seconds -> frames: 0.5 -> 48,
# 0.3 -> 32, 1.0 -> 96, 0.55 -> 64 (3.44 columns round to 3: 48), 1.28 -> 128.
CASES = [
    (0.5, None, "mean", "precise"),  # 48-frame windows, no overlap: 7 (the last 16)
    (0.5, 0.3, "max", "precise"),  # overlapping: starts 0, 32, ..., 256 (last 48)
    (1.0, 0.5, "mean+max", "precise"),  # 96 every 48: 6 windows, the last of 64 frames
    (0.55, 0.16, "mean", "fast"),  # 48 every 16: 17 windows, all full (padded to 304)
    (1.0, 0.64, "mean+max", "fast"),  # 96 every 64: 5 windows, the clip padded to 256 + 96
    (1.28, 0.5, "mean", "precise"),  # the model's chunk, overlapping
]


@pytest.mark.parametrize("seconds, hop, aggregate, mode", CASES)
def test_windows_and_aggregates_against_numpy(backbone, seconds, hop, aggregate, mode):
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, 48_077).astype("float32")
    extractor = EmbeddingExtractor(
        backbone, mode=mode, temporal_support=seconds, hop=hop, aggregate=aggregate, batch_size=4
    )
    window = 16 * int(seconds * 100 / 16 + 0.5)
    hop_frames = window if hop is None else 16 * int(hop * 100 / 16 + 0.5)
    assert (extractor.chunk_frames, extractor.hop_frames) == (window, hop_frames)
    logmel = extractor.logmel(waveform[None])
    assert logmel.shape[2] == 298
    expected_windows = reference_windows(298, window, hop_frames, mode == "fast")
    assert extractor.windows(298) == expected_windows
    expected = reference_embedding(backbone, logmel[0], expected_windows, aggregate)
    out = extractor.embed_waveforms(waveform[None])
    assert out.embedding.shape == (1, extractor.embedding_size) == (1, expected.shape[0])
    np.testing.assert_allclose(out.embedding[0], expected, rtol=1e-5, atol=1e-5)
    assert (out.frames is None) == (hop_frames < window)
    # Streamed in blocks (batches of 4 windows as the audio arrives): the same embedding.
    blocks = np.array_split(waveform, [3000, 9000, 9001, 30_000])
    streamed = extractor.embed_stream(blocks)
    np.testing.assert_allclose(streamed.embedding, out.embedding[0], atol=1e-5)


def test_stream_with_overlapping_windows_crosses_batches(backbone):
    """Long clips: several batches of overlapping windows, then the rest, as in memory; the
    samples held stay bounded (`batch_size` windows)."""
    extractor = EmbeddingExtractor(
        backbone, temporal_support=0.64, hop=0.32, aggregate="mean+max", layers=True, batch_size=3
    )
    rng = np.random.default_rng(1)
    # 400 samples: one frame; 20_720: 128 frames, exactly one batch (3 windows of 64 every 32),
    # which is encoded with the rest (no frame beyond it); 20_880: one frame more; 96_123.
    for length in (400, 20_720, 20_880, 96_123):
        waveform = rng.uniform(-0.5, 0.5, length).astype("float32")
        whole = extractor.embed_waveforms(waveform[None])
        sizes = []
        streaming = copy.copy(extractor)
        streaming.frontend = lambda x, sizes=sizes: (
            sizes.append(x.shape[1]) or extractor.frontend(x)
        )
        streamed = streaming.embed_stream(np.array_split(waveform, 7))
        np.testing.assert_allclose(streamed.embedding, whole.embedding[0], atol=1e-5)
        np.testing.assert_allclose(streamed.layers, whole.layers[0], atol=1e-5)
        # Samples held: a batch's 128 frames (160 * 127 + 400), or a rest shorter than 129.
        assert max(sizes) < 160 * 128 + 400, length


def test_seconds_round_to_whole_patch_columns():
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2)  # max_frames 608
    assert window_frames(backbone) == (608, 608)
    for seconds, frames in ((0.16, 16), (0.2, 16), (0.24, 32), (0.5, 48), (1, 96), (2, 208)):
        assert window_frames(backbone, seconds) == (frames, frames), seconds
    assert window_frames(backbone, 6.08, 0.5) == (608, 48)
    assert window_frames(backbone, None, 1.0) == (608, 96)
    extractor = EmbeddingExtractor(backbone, temporal_support=2, hop=1)
    assert (extractor.temporal_support, extractor.hop) == (2.08, 0.96)
    assert extractor.overlapping and extractor.embedding_size == 160


def test_out_of_range_values_are_refused(backbone):
    for bad in (0.1, 0.0, -1.0, 1.3, float("nan"), "1"):
        with pytest.raises(ValueError, match=r"temporal_support must be from 0.16 s .* 1.28 s"):
            EmbeddingExtractor(backbone, temporal_support=bad)
    with pytest.raises(ValueError, match=r"--hop must be from 0.16 s .* up to the temporal "):
        window_frames(backbone, 0.5, 0.64, prefix="--")
    with pytest.raises(ValueError, match="hop must be from 0.16 s"):
        EmbeddingExtractor(backbone, hop=0.08)
    with pytest.raises(ValueError, match="hop must be at most the window of 32 frames"):
        EmbeddingExtractor(backbone, chunk_frames=32, hop=0.48)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        EmbeddingExtractor(backbone, aggregate="median")
    with pytest.raises(ValueError, match="chunk_frames or temporal_support, not both"):
        EmbeddingExtractor(backbone, chunk_frames=32, temporal_support=0.32)
    overlapping = EmbeddingExtractor(backbone, temporal_support=0.64, hop=0.32)
    with pytest.raises(ValueError, match="frames need non-overlapping windows"):
        overlapping.embed_stream([np.zeros(16000, "float32")], frames=True)


def test_layers_and_official_order_with_short_windows(backbone):
    """Non-overlapping short windows keep frames (fast mode: also in the official order), and
    every layer is aggregated as the last one."""
    waveform = np.random.default_rng(2).uniform(-0.5, 0.5, (2, 20_000)).astype("float32")
    extractor = EmbeddingExtractor(
        backbone, mode="fast", layers=True, temporal_support=0.32, aggregate="max"
    )
    out = extractor.embed_waveforms(waveform)  # 123 frames -> 4 windows of 32
    assert out.frames.shape == (2, 8, 160) and out.layers.shape == (2, 2, 160)
    np.testing.assert_array_equal(out.layers[:, -1], out.embedding)
    means = out.layer_frames.reshape(2, 2, 4, 2, 160).mean(axis=3)
    np.testing.assert_allclose(out.layers, means.max(axis=2), atol=1e-6)
    official = copy.copy(extractor)
    official.frame_order = "official"
    frames = official.embed_waveforms(waveform).frames
    j = np.arange(8)
    np.testing.assert_array_equal(frames[:, j], out.frames[:, (j % 4) * 2 + j // 4])
