"""`matpac-embed`: clip embeddings of audio files with a MATPAC model, into one `.npz` or a
folder of shards.

    matpac-embed --model matpac.keras --output emb.npz a.wav b.flac c.mp3
    matpac-embed --model matpac_plus --output emb.npz path/to/folder --input_list more.txt
    matpac-embed --model matpac.keras --output emb.npz --temporal_support=2 --hop=1 a.wav
    matpac-embed --model matpac_plus --output embeddings/ --input_list audioset.txt

Inputs are audio files, folders (their audio files, recursively, sorted) and with --input_list a
text file of paths (one per line, relative to the list's folder; blank and `#` lines skipped).
Files are decoded with soundfile (wav, flac, ogg, mp3), mixed to mono and resampled to 16 kHz,
by --decode_threads threads ahead of the encoder; --batch_size files are encoded at a time,
all their windows together. Memory is bounded by the batch, not by the number of files.

An --output ending in `.npz` (appended if missing) holds `files` [N], `embeddings` [N, F*D]
(with --frames: [N, T, F*D], zero-padded to the longest clip, and `num_frames` [N]), `layers`
[N, L, ...] with --layers, and with --skip_errors the `skipped` files and their `errors`.

An --output ending in `/` (or an existing folder) is sharded, for any number of files
(`matpac_keras.embedding_shards`): `manifest.json` (inputs and options), one
`shard-KKKKK-of-NNNNN.npz` per --shard_size inputs (`files`, `input_index`, `embeddings`; with
--frames `frames` [T, F*D], every clip's steps unpadded, one after the other, and
`frame_offsets`; `layers`, `layer_frames`; `skipped`, `skipped_index`, `errors`), and last
`index.csv` (file, shard, row, error). Each shard is written atomically when done: a run killed
at any moment and started again with the same command skips the finished shards and ends with
the same folder as an uninterrupted run, byte for byte (another command on that folder, or the
same command after the model file changed, is refused, naming what differs, unless
--overwrite). Headers are checked shard by shard: without --skip_errors a
bad file stops the run at its shard, the shards before it kept.

--runtime=onnx or openvino runs the encoder in ONNX Runtime or OpenVINO (CPU) instead of
Keras: the model is exported once (under KERAS_BACKEND=tensorflow) into the cache folder
($MATPAC_ENCODER_CACHE, else ~/.cache/matpac_keras/encoders), keyed by the model file's
content; later runs find it there and import neither TensorFlow nor Keras (the log-mel in
NumPy, equal to Keras's within 1e-5).
--precision=bfloat16 (with openvino) computes in bfloat16: faster on CPUs with bf16
instructions, at about 1e-2 relative error (benchmarks/embed.md).

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

The output is checked before any work (an existing `.npz` is refused without --overwrite; its
folder must be writable) and written atomically: a run stopped at any moment leaves the old
file, or none, never a truncated one (a run killed while writing leaves its hidden temporary,
`.tmp-<name>.<pid>-<random>.npz`, beside it). For a `.npz`, every file's header is read first,
so a missing, unreadable or truncated file stops the run (or, with --skip_errors, is listed)
before the embedding starts. A file whose embedding holds NaN or Inf (samples of 1e30 in a float
file, or a model with non-finite weights) stops the run naming it, or with --skip_errors is
listed: nothing non-finite is written. Files longer than --batch_size windows are decoded and
encoded block by block (`EmbeddingExtractor.embed_stream`): memory does not grow with their
length, except with --frames, whose output does.
"""

import csv
import os
import sys

import numpy as np
from absl import app, flags

from matpac_keras.cli.entry import run_app
from matpac_keras.cli.runtime_flags import check_runtime_flags, define_runtime_flags
from matpac_keras.cli.window_flags import check_window_flags, define_window_flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", None, "A MATPAC model: a preset directory or a .keras file (backbone or pretrainer)."
)
flags.DEFINE_string(
    "output",
    None,
    "The .npz file to write ('.npz' is appended if missing), or a folder for shards: a path "
    "ending in '/' or an existing folder.",
)
flags.DEFINE_bool("overwrite", False, "Replace an existing output file (or another job's shards).")
flags.DEFINE_integer(
    "shard_size", 1000, "Inputs per shard of a sharded --output folder.", lower_bound=1
)
define_runtime_flags(__name__)
flags.DEFINE_integer(
    "decode_threads", 2, "Threads decoding files ahead of the encoder.", lower_bound=1
)
flags.DEFINE_enum("mode", "precise", ["precise", "fast"], "Chunking mode (SPEC section 6).")
flags.DEFINE_bool("frames", False, "Write per-time-step embeddings instead of clip means.")
flags.DEFINE_bool("layers", False, "Also write every layer's embeddings.")
flags.DEFINE_bool(
    "official_frame_order", False, "With --mode=fast --frames: the official interleaved order."
)
flags.DEFINE_integer("batch_size", 16, "Clips (and chunks) encoded at once.", lower_bound=1)
flags.DEFINE_bool(
    "skip_errors",
    False,
    "Leave out unreadable files and those of non-finite embeddings (listed in the output).",
)
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


def _sharded(output: str) -> bool:
    return output.endswith(("/", os.sep)) or os.path.isdir(output)


def main(argv):
    from matpac_keras.audio import input_audio_files

    if len(argv) < 2 and FLAGS.input_list is None:
        raise app.UsageError("give audio files or folders after the flags, or --input_list")
    paths = input_audio_files(argv[1:], FLAGS.input_list)
    from matpac_keras.outputs import check_output

    sharded = _sharded(FLAGS.output)
    if sharded:
        check_output(FLAGS.output, overwrite=True, folder=True, flag="--output")
    else:
        output = check_output(FLAGS.output, FLAGS.overwrite, suffix=".npz", flag="--output")
    from matpac_keras.file_embeddings import FileEmbedder
    from matpac_keras.model_path import check_model_path

    check_runtime_flags()
    check_model_path(FLAGS.model)
    extractor = _extractor()
    embedder = FileEmbedder(extractor, FLAGS.skip_errors, FLAGS.frames, FLAGS.decode_threads)
    if sharded:
        _embed_sharded(embedder, paths)
    else:
        _embed_npz(embedder, paths, output)


def _extractor():
    """The flags' extractor. With --runtime=onnx|openvino: the encoder cached under the model
    file's content key, run by `NumpyEmbeddingExtractor` (no Keras imported), exported from the
    model first if the cache has none; else the backbone in Keras (`EmbeddingExtractor`)."""
    options = {
        "mode": FLAGS.mode,
        "layers": FLAGS.layers,
        "frame_order": "official" if FLAGS.official_frame_order else "temporal",
        "batch_size": FLAGS.batch_size,
        "temporal_support": FLAGS.temporal_support,
        "hop": FLAGS.hop,
        "aggregate": FLAGS.aggregate,
    }
    if FLAGS.runtime == "keras":
        from matpac_keras.embedding import EmbeddingExtractor
        from matpac_keras.saving import load_backbone

        backbone = load_backbone(FLAGS.model)
        _check_windows(backbone)
        return EmbeddingExtractor(backbone, **options)
    from matpac_keras.cli.runtime_flags import runtime_encoder
    from matpac_keras.numpy_embedding import NumpyEmbeddingExtractor

    def load_backbone():
        from matpac_keras.saving import load_backbone

        backbone = load_backbone(FLAGS.model)
        _check_windows(backbone)  # before the export
        return backbone

    encoder, _ = runtime_encoder(FLAGS.model, FLAGS.layers, load_backbone)
    _check_windows(encoder.spec)
    return NumpyEmbeddingExtractor(encoder.spec, encoder=encoder, **options)


def _check_windows(backbone) -> None:
    """The window flags, for `backbone` (or its `EncoderSpec`); app.UsageError naming them."""
    window, hop = check_window_flags(backbone, FLAGS.temporal_support, FLAGS.hop)
    if FLAGS.frames and hop < window:
        raise app.UsageError("--frames needs non-overlapping windows: --hop = --temporal_support")


def _embed_sharded(embedder, paths: list[str]) -> None:
    """Embeds the pending shards of the --output folder, then writes its index."""
    from tqdm import tqdm

    from matpac_keras.embedding_shards import EmbeddingShards
    from matpac_keras.file_embeddings import job_options

    options = job_options(FLAGS.model, embedder.extractor, FLAGS.frames)
    shards = EmbeddingShards.open(
        FLAGS.output, paths, FLAGS.shard_size, options, FLAGS.overwrite, flag="--output"
    )
    pending = shards.pending()
    done = len(paths) - sum(len(shards.ranges[k]) for k in pending)
    if done:
        print(f"resuming: {shards.count - len(pending)} of {shards.count} shards already done")
    with tqdm(total=len(paths), initial=done, desc="embedding", unit="file") as bar:
        for k in pending:
            inputs = shards.ranges[k]
            entries = list(
                embedder.embed(paths[inputs.start : inputs.stop], inputs, progress=bar.update)
            )
            skipped = [(i, *embedder.skipped.pop(i)) for i in inputs if i in embedder.skipped]
            shards.write(k, entries, skipped)
    index = shards.write_index()
    with open(index, newline="") as rows:
        skipped = sum(1 for row in csv.DictReader(rows) if row["error"])
    print(
        f"wrote {shards.folder}/: {shards.count} shards of up to {FLAGS.shard_size} files, "
        f"{len(paths) - skipped} clips, embeddings of {embedder.extractor.embedding_size}; "
        f"index {index.name}" + (f", {skipped} skipped" if skipped else "")
    )


def _embed_npz(embedder, paths: list[str], output) -> None:
    """Embeds every file into the one .npz --output."""
    from tqdm import tqdm

    from matpac_keras.errors import InputError
    from matpac_keras.file_embeddings import skipped_arrays
    from matpac_keras.outputs import atomic_output, with_suffix

    with tqdm(total=len(paths), desc="embedding", unit="file") as bar:
        clips = list(embedder.embed(paths, progress=bar.update))
    skipped = embedder.skipped
    if not clips:
        raise InputError(f"no readable audio among the {len(paths)} files given")
    out = {"files": np.array([path for _, path, _ in clips])}
    results = [result for *_, result in clips]
    if FLAGS.frames:
        out["embeddings"] = _stack_padded([r.frames for r in results], 0)
        out["num_frames"] = np.array([len(r.frames) for r in results])
        if FLAGS.layers:
            out["layers"] = _stack_padded([r.layer_frames for r in results], 1)
    else:
        out["embeddings"] = np.stack([r.embedding for r in results])
        if FLAGS.layers:
            out["layers"] = np.stack([r.layers for r in results])
    extractor = embedder.extractor
    if FLAGS.temporal_support is not None:
        out.update(temporal_support=extractor.temporal_support, hop=extractor.hop)
    if FLAGS.skip_errors:
        out.update(skipped_arrays(skipped))
    with atomic_output(output, overwrite=FLAGS.overwrite) as temporary:
        np.savez(temporary, **out)
    print(
        f"wrote {with_suffix(FLAGS.output, '.npz')}: {len(clips)} clips, "
        f"embeddings {out['embeddings'].shape}" + (f", {len(skipped)} skipped" if skipped else "")
    )


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
