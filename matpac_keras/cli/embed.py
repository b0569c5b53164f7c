"""`matpac-embed`: clip embeddings of audio files with a MATPAC model, into one `.npz`.

    matpac-embed --model matpac.keras --output emb.npz a.wav b.flac c.mp3

Files are decoded with soundfile (wav, flac, ogg, mp3), mixed to mono and resampled to 16 kHz.
The `.npz` holds `files` [N], `embeddings` [N, F*D] (with --frames: [N, T, F*D], zero-padded to
the longest clip, and `num_frames` [N]), `layers` [N, L, ...] with --layers, and with
--skip_errors the `skipped` files and their `errors`.
"""

import os
import sys

import numpy as np
from absl import app, flags, logging

from matpac_keras.cli.entry import run_app

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A .keras MATPAC model (backbone or pretrainer).")
flags.DEFINE_string("output", None, "The .npz file to write.")
flags.DEFINE_enum("mode", "precise", ["precise", "fast"], "Chunking mode (SPEC section 6).")
flags.DEFINE_bool("frames", False, "Write per-time-step embeddings instead of clip means.")
flags.DEFINE_bool("layers", False, "Also write every layer's embeddings.")
flags.DEFINE_bool(
    "official_frame_order", False, "With --mode=fast --frames: the official interleaved order."
)
flags.DEFINE_integer("batch_size", 16, "Clips (and chunks) encoded at once.")
flags.DEFINE_bool("skip_errors", False, "Leave out unreadable files (listed in the output).")
flags.mark_flags_as_required(["model", "output"])


def _stack_padded(arrays: list[np.ndarray], time_axis: int) -> np.ndarray:
    """Stacks arrays that differ along `time_axis`, zero-padding them to the longest."""
    longest = max(a.shape[time_axis] for a in arrays)
    padded = []
    for a in arrays:
        widths = [(0, 0)] * a.ndim
        widths[time_axis] = (0, longest - a.shape[time_axis])
        padded.append(np.pad(a, widths))
    return np.stack(padded)


def load_clips(paths: list[str], skip_errors: bool):
    """Decoded 16 kHz clips, the files they came from, and (file, reason) for skipped ones."""
    from tqdm import tqdm

    from matpac_keras.audio import AudioError, load_audio

    clips, kept, skipped = [], [], []
    for path in tqdm(paths, desc="reading audio", unit="file", disable=len(paths) < 2):
        try:
            clips.append(load_audio(path))
            kept.append(path)
        except AudioError as error:
            if not skip_errors:
                raise
            logging.warning("skipping %s", error)
            skipped.append((path, str(error)))
    return clips, kept, skipped


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give at least one audio file after the flags")
    from tqdm import tqdm

    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.saving import load_backbone

    clips, kept, skipped = load_clips(paths, FLAGS.skip_errors)
    if not clips:
        raise app.UsageError("no readable audio among the files given")
    extractor = EmbeddingExtractor(
        load_backbone(FLAGS.model),
        mode=FLAGS.mode,
        layers=FLAGS.layers,
        frame_order="official" if FLAGS.official_frame_order else "temporal",
        batch_size=FLAGS.batch_size,
    )
    with tqdm(total=len(clips), desc="embedding", unit="clip") as bar:
        results = extractor.embed_clips(clips, progress=bar.update)
    out = {"files": np.array(kept)}
    if FLAGS.frames:
        out["embeddings"] = _stack_padded([r.frames for r in results], 0)
        out["num_frames"] = np.array([len(r.frames) for r in results])
        if FLAGS.layers:
            out["layers"] = _stack_padded([r.layer_frames for r in results], 1)
    else:
        out["embeddings"] = np.stack([r.embedding for r in results])
        if FLAGS.layers:
            out["layers"] = np.stack([r.layers for r in results])
    if FLAGS.skip_errors:
        out["skipped"] = np.array([p for p, _ in skipped], dtype=str)
        out["errors"] = np.array([e for _, e in skipped], dtype=str)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    np.savez(FLAGS.output, **out)
    print(
        f"wrote {FLAGS.output}: {len(kept)} clips, embeddings {out['embeddings'].shape}"
        + (f", {len(skipped)} skipped" if skipped else "")
    )


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
