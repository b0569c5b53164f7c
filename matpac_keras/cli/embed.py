"""`matpac-embed`: clip embeddings of audio files with a MATPAC model, into one `.npz`.

    matpac-embed --model matpac.keras --output emb.npz a.wav b.flac c.mp3
    matpac-embed --model matpac_plus --output emb.npz path/to/folder --input_list more.txt
    matpac-embed --model matpac.keras --output emb.npz --temporal_support=2 --hop=1 a.wav

Inputs are audio files, folders (their audio files, recursively, sorted) and with --input_list a
text file of paths (one per line, relative to the list's folder; blank and `#` lines skipped).
Files are decoded with soundfile (wav, flac, ogg, mp3), mixed to mono and resampled to 16 kHz.
The `.npz` holds `files` [N], `embeddings` [N, F*D] (with --frames: [N, T, F*D], zero-padded to
the longest clip, and `num_frames` [N]), `layers` [N, L, ...] with --layers, and with
--skip_errors the `skipped` files and their `errors`.

Temporal support: by default a clip is cut into chunks of the model's `max_frames` (6.08 s for
the paper's model) and its embedding is the mean over all their time steps (precise mode).
--temporal_support=S cuts it into windows of S seconds instead, one every --hop seconds
(default S: no overlap), each encoded on its own and averaged over its time steps; --aggregate
makes the clip's embedding of them: mean (over all windows' time steps: with hop = S, the
precise embedding with S-long chunks), max (of the window means) or mean+max (both,
concatenated: twice the width). S and the hop are rounded to the nearest whole number of patch
columns (16 log-mel frames = 0.16 s; 0.5 s -> 0.48 s): the encoder sees whole columns only. S
ranges from 0.16 s to the model's max_frames, the hop from 0.16 s to S; the last window holds
the rest of the clip (zero-padded to a whole column, as precise mode's last chunk). With
--temporal_support the `.npz` also holds the `temporal_support` and `hop` used, in seconds.
--frames needs non-overlapping windows (hop = S).

The output is checked before any work (an existing one is refused without --overwrite; its
folder must be writable) and written atomically: a run stopped at any moment leaves the old
file, or none, never a truncated one (a run killed while writing leaves its hidden temporary,
`.tmp-<name>.<pid>-<random>.npz`, beside it). Every file's header is read first, so a missing,
unreadable or truncated file stops the run (or, with --skip_errors, is listed) before the
embedding starts. Files longer than one chunk of the model are decoded and encoded block by
block (`EmbeddingExtractor.embed_stream`): memory does not grow with their length, except
with --frames, whose output does.
"""

import sys

import numpy as np
from absl import app, flags

from matpac_keras.cli.entry import run_app
from matpac_keras.cli.window_flags import check_window_flags, define_window_flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", None, "A MATPAC model: a preset directory or a .keras file (backbone or pretrainer)."
)
flags.DEFINE_string("output", None, "The .npz file to write ('.npz' is appended if missing).")
flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")
flags.DEFINE_enum("mode", "precise", ["precise", "fast"], "Chunking mode (SPEC section 6).")
flags.DEFINE_bool("frames", False, "Write per-time-step embeddings instead of clip means.")
flags.DEFINE_bool("layers", False, "Also write every layer's embeddings.")
flags.DEFINE_bool(
    "official_frame_order", False, "With --mode=fast --frames: the official interleaved order."
)
flags.DEFINE_integer("batch_size", 16, "Clips (and chunks) encoded at once.", lower_bound=1)
flags.DEFINE_bool("skip_errors", False, "Leave out unreadable files (listed in the output).")
define_window_flags(__name__)
flags.DEFINE_string(
    "input_list", None, "A text file of audio paths, one per line (relative to its folder)."
)
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


def main(argv):
    from matpac_keras.audio import input_audio_files

    if len(argv) < 2 and FLAGS.input_list is None:
        raise app.UsageError("give audio files or folders after the flags, or --input_list")
    paths = input_audio_files(argv[1:], FLAGS.input_list)
    from tqdm import tqdm

    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.errors import InputError
    from matpac_keras.file_embeddings import embed_files, skipped_arrays
    from matpac_keras.outputs import atomic_output, check_output, with_suffix
    from matpac_keras.saving import load_backbone

    output = check_output(FLAGS.output, FLAGS.overwrite, suffix=".npz", flag="--output")
    backbone = load_backbone(FLAGS.model)
    window, hop = check_window_flags(backbone, FLAGS.temporal_support, FLAGS.hop)
    if FLAGS.frames and hop < window:
        raise app.UsageError("--frames needs non-overlapping windows: --hop = --temporal_support")
    extractor = EmbeddingExtractor(
        backbone,
        mode=FLAGS.mode,
        layers=FLAGS.layers,
        frame_order="official" if FLAGS.official_frame_order else "temporal",
        batch_size=FLAGS.batch_size,
        temporal_support=FLAGS.temporal_support,
        hop=FLAGS.hop,
        aggregate=FLAGS.aggregate,
    )
    with tqdm(total=len(paths), desc="embedding", unit="file") as bar:
        results, skipped = embed_files(
            extractor, paths, FLAGS.skip_errors, FLAGS.frames, progress=bar.update
        )
    if not results:
        raise InputError(f"no readable audio among the {len(paths)} files given")
    kept = sorted(results)
    clips = [results[i] for i in kept]
    out = {"files": np.array([paths[i] for i in kept])}
    if FLAGS.frames:
        out["embeddings"] = _stack_padded([r.frames for r in clips], 0)
        out["num_frames"] = np.array([len(r.frames) for r in clips])
        if FLAGS.layers:
            out["layers"] = _stack_padded([r.layer_frames for r in clips], 1)
    else:
        out["embeddings"] = np.stack([r.embedding for r in clips])
        if FLAGS.layers:
            out["layers"] = np.stack([r.layers for r in clips])
    if FLAGS.temporal_support is not None:
        out.update(temporal_support=extractor.temporal_support, hop=extractor.hop)
    if FLAGS.skip_errors:
        out.update(skipped_arrays(skipped))
    with atomic_output(output, overwrite=FLAGS.overwrite) as temporary:
        np.savez(temporary, **out)
    print(
        f"wrote {with_suffix(FLAGS.output, '.npz')}: {len(kept)} clips, "
        f"embeddings {out['embeddings'].shape}" + (f", {len(skipped)} skipped" if skipped else "")
    )


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
