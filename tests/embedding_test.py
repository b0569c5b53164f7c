"""Clip embeddings against the official inference wrapper (fixtures' embed.npz)."""

import numpy as np
import pytest

from matpac_keras.convert import model_from_state_dict
from matpac_keras.embedding import EmbeddingExtractor
from tests.conftest import FIXTURE_HEADS, relative_error


@pytest.fixture(scope="module", params=["encoder_only", "train_full"])
def backbone(request, encoder_only_state, train_full_state):
    state = encoder_only_state if request.param == "encoder_only" else train_full_state
    model = model_from_state_dict(state, **FIXTURE_HEADS)
    return getattr(model, "backbone", model)


@pytest.mark.parametrize("mode", ["precise", "fast"])
def test_all_eight_arrays_match_official(backbone, fixture_arrays, mode):
    expected = fixture_arrays("embed")
    order = "official" if mode == "fast" else "temporal"
    out = EmbeddingExtractor(backbone, mode=mode, layers=True, frame_order=order).embed_waveforms(
        expected["waveform"]
    )
    assert relative_error(out.embedding, expected[f"{mode}_pooled/emb"]) < 1e-4
    assert relative_error(out.layers, expected[f"{mode}_pooled/layers"]) < 1e-4
    assert relative_error(out.frames, expected[f"{mode}_frames/emb"]) < 1e-4
    assert relative_error(out.layer_frames, expected[f"{mode}_frames/layers"]) < 1e-4


def test_fast_temporal_order_is_chunk_major(backbone, fixture_arrays):
    waveform = fixture_arrays("embed")["waveform"]
    official = EmbeddingExtractor(backbone, mode="fast", frame_order="official").embed_waveforms(
        waveform
    )
    temporal = EmbeddingExtractor(backbone, mode="fast").embed_waveforms(waveform)
    n_chunks, steps = 2, 8
    j = np.arange(n_chunks * steps)
    np.testing.assert_array_equal(
        official.frames[:, j], temporal.frames[:, (j % n_chunks) * steps + j // n_chunks]
    )
    np.testing.assert_allclose(official.embedding, temporal.embedding, atol=1e-6)


def test_precise_frames_are_chunks_concatenated(backbone, fixture_arrays):
    waveform = fixture_arrays("embed")["waveform"]
    extractor = EmbeddingExtractor(backbone)
    whole = extractor.embed_waveforms(waveform)
    logmel = extractor.logmel(waveform)  # 198 frames -> padded 208 -> chunks of 128 and 80
    padded = np.pad(logmel, ((0, 0), (0, 0), (0, 10)))
    first = extractor.embed_logmel(padded[:, :, :128]).frames
    second = extractor.embed_logmel(padded[:, :, 128:]).frames
    np.testing.assert_allclose(whole.frames, np.concatenate([first, second], 1), atol=1e-5)


def test_clips_of_different_lengths(backbone, fixture_arrays):
    waveform = fixture_arrays("embed")["waveform"]
    clips = [waveform[0], waveform[1, :20000], waveform[1], waveform[0, :5000]]
    extractor = EmbeddingExtractor(backbone, batch_size=1)
    together = extractor.embed_clips(clips)
    for clip, result in zip(clips, together, strict=True):
        alone = extractor.embed_waveforms(clip[None])
        np.testing.assert_allclose(result.embedding, alone.embedding[0], atol=1e-5)
        assert result.frames.shape == alone.frames.shape[1:]
    assert together[3].frames.shape[0] == 2  # 5000 samples -> 29 frames -> 32 padded -> 2 steps


def test_bad_arguments(backbone):
    with pytest.raises(ValueError, match="mode"):
        EmbeddingExtractor(backbone, mode="slow")
    with pytest.raises(ValueError, match="frame_order"):
        EmbeddingExtractor(backbone, frame_order="random")
    extractor = EmbeddingExtractor(backbone)
    with pytest.raises(ValueError, match="shorter than one frame"):
        extractor.embed_waveforms(np.zeros((1, 100), "float32"))
    with pytest.raises(ValueError, match="batch, samples"):
        extractor.embed_waveforms(np.zeros(16000, "float32"))
    for bad in (0, 24, backbone.max_frames + 16):
        with pytest.raises(ValueError, match=f"chunk_frames must be a multiple of 16 .*got {bad}"):
            EmbeddingExtractor(backbone, chunk_frames=bad)


def test_shorter_chunks_are_the_mean_of_their_crops(backbone, fixture_arrays):
    """`chunk_frames` (fine-tuning's crops): the fast scheme with chunks of that length is the
    mean of the crops' own embeddings, each computed as one full-length clip."""
    waveform = fixture_arrays("embed")["waveform"][:1]
    extractor = EmbeddingExtractor(backbone, mode="fast", chunk_frames=32)
    logmel = extractor.logmel(waveform)
    frames = logmel.shape[2]
    assert extractor.chunk_lengths(frames) == [32] * (-(-frames // 32))
    padded = np.pad(logmel, ((0, 0), (0, 0), (0, -frames % 32)))
    crops = [padded[:, :, i : i + 32] for i in range(0, padded.shape[2], 32)]
    whole = EmbeddingExtractor(backbone, mode="precise")
    expected = np.mean([whole.embed_logmel(crop).embedding for crop in crops], axis=0)
    got = extractor.embed_logmel(logmel).embedding
    assert relative_error(got, expected) < 1e-5


@pytest.mark.parametrize(
    "options", [{}, {"mode": "fast", "layers": True}, {"chunk_frames": 64, "hop": 0.48}]
)
def test_windows_of_all_clips_are_batched_together(backbone, fixture_arrays, options):
    """embed_clips encodes equal-length windows of different clips in one call (two 198-frame
    clips: their two 128-frame windows together, their two 80-frame rests together), with each
    clip's result equal to embedding it alone."""
    waveform = fixture_arrays("embed")["waveform"]
    clips = [waveform[0], waveform[1], waveform[1, :20000], waveform[0, :5000]]
    extractor = EmbeddingExtractor(backbone, batch_size=8, **options)
    calls = []
    encode = extractor._encode_batch
    extractor._encode_batch = lambda windows: calls.append(windows.shape) or encode(windows)
    together = extractor.embed_clips(clips)
    counts = {}  # window length -> windows of that length over all clips
    for clip in clips:
        for length in extractor.chunk_lengths(extractor.logmel(clip[None]).shape[2]):
            counts[length] = counts.get(length, 0) + 1
    expected = [(n, length) for length, count in counts.items() for n in _batches(count, 8)]
    assert sorted((shape[0], shape[-1]) for shape in calls) == sorted(expected)
    assert len(calls) < sum(counts.values())  # windows of different clips shared calls
    extractor._encode_batch = encode
    for clip, result in zip(clips, together, strict=True):
        alone = extractor.embed_waveforms(clip[None])
        np.testing.assert_allclose(result.embedding, alone.embedding[0], atol=1e-5)
        if alone.frames is None:
            assert result.frames is None
        else:
            np.testing.assert_allclose(result.frames, alone.frames[0], atol=1e-5)
        if options.get("layers"):
            np.testing.assert_allclose(result.layers, alone.layers[0], atol=1e-5)


def _batches(count: int, size: int) -> list[int]:
    """Sizes of the batches `count` windows make, `size` at most each."""
    return [min(size, count - start) for start in range(0, count, size)]
