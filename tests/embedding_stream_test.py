"""`EmbeddingExtractor.embed_stream` (block by block, bounded memory) against whole clips."""

import copy

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.frontend import HOP_LENGTH, N_FFT, num_frames

MAX_FRAMES = 64  # chunks of 64 frames (4 patch columns)
# 400 samples: 1 frame; 10_641: 65 frames, a full chunk and a short one; 112_000: 698 frames,
# three groups of 3 full chunks, one more full chunk and a short one of 58 frames (precise:
# padded to 64 as well; fast: to 64). Few lengths: each new shape compiles (JAX).
LENGTHS = (400, 10_641, 112_000)


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(3)
    model = MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=MAX_FRAMES)
    model.build(None)
    return model


@pytest.fixture(scope="module")
def with_layers(backbone):
    """All layers, 3 chunks per batch; tests copy it with another mode (sharing its compiled
    functions: each new shape compiles, which under JAX takes most of the time)."""
    return EmbeddingExtractor(backbone, layers=True, batch_size=3)


def _blocks(waveform: np.ndarray, rng) -> list[np.ndarray]:
    """The clip cut at random places, into blocks of uneven sizes (some empty)."""
    return np.split(waveform, np.sort(rng.integers(0, len(waveform), 6)))


@pytest.mark.parametrize(
    "mode, frame_order", [("precise", "temporal"), ("fast", "temporal"), ("fast", "official")]
)
def test_stream_equals_whole_clip(with_layers, mode, frame_order):
    rng = np.random.default_rng(0)
    extractor = copy.copy(with_layers)
    extractor.mode, extractor.frame_order = mode, frame_order
    for length in LENGTHS:
        waveform = rng.uniform(-0.5, 0.5, length).astype("float32")
        whole = extractor.embed_waveforms(waveform[None])
        streamed = extractor.embed_stream(_blocks(waveform, rng), frames=True)
        for name in ("embedding", "frames", "layers", "layer_frames"):
            expected, got = getattr(whole, name)[0], getattr(streamed, name)
            assert got.shape == expected.shape, (name, length)
            np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{name} {length}")
        pooled = extractor.embed_stream(iter(_blocks(waveform, rng)))  # no frames kept
        assert pooled.frames is None and pooled.layer_frames is None
        np.testing.assert_allclose(pooled.embedding, whole.embedding[0], atol=1e-5)
        np.testing.assert_allclose(pooled.layers, whole.layers[0], atol=1e-5)


def test_stream_steps_and_padding(with_layers):
    extractor = with_layers  # precise
    waveform = np.random.default_rng(1).uniform(-0.5, 0.5, 48_077).astype("float32")
    streamed = extractor.embed_stream(np.split(waveform, [1000, 20_000]), frames=True)
    # 298 frames -> 304 padded -> chunks of 64, 64, 64, 64, 48 -> 19 steps of 16 frames.
    assert extractor.chunk_lengths(num_frames(48_077)) == [64, 64, 64, 64, 48]
    assert streamed.frames.shape == (19, 5 * 32) and streamed.layer_frames.shape == (2, 19, 160)
    whole = extractor.embed_waveforms(waveform[None])
    np.testing.assert_allclose(streamed.embedding, whole.embedding[0], atol=1e-5)
    # The mean is over all steps, padded ones included, as the whole-clip path's.
    np.testing.assert_allclose(streamed.embedding, streamed.frames.mean(0), atol=1e-5)


def test_stream_holds_one_group_of_samples_at_a_time(with_layers):
    extractor = copy.copy(with_layers)
    sizes = []
    frontend = extractor.frontend
    extractor.frontend = lambda x: sizes.append(x.shape[1]) or frontend(x)
    waveform = np.random.default_rng(2).uniform(-0.5, 0.5, 16000 * 20).astype("float32")
    extractor.embed_stream(np.split(waveform, 40))
    group = HOP_LENGTH * (3 * MAX_FRAMES - 1) + N_FFT  # the samples of 3 chunks' frames
    # 1998 frames: 10 groups of 3 chunks, then the rest (78 frames) in one call.
    assert max(sizes) == group and len(sizes) == 1 + num_frames(len(waveform)) // (3 * 64)


def test_stream_refuses_a_clip_shorter_than_one_frame(with_layers):
    extractor = with_layers
    with pytest.raises(ValueError, match="399 samples is shorter than one frame"):
        extractor.embed_stream([np.zeros(200, "float32"), np.zeros(199, "float32")])
    with pytest.raises(ValueError, match="1-D"):
        extractor.embed_stream([np.zeros((2, 400), "float32")])
