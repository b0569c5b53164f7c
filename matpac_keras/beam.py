"""Embedding many audio files with Apache Beam: RunInference over a MATPAC model, written as
sharded embeddings (`matpac_keras.embedding_shards`, the layout of `matpac-embed --output DIR/`).

    python -m matpac_keras.beam --model matpac.keras --output emb/ --shard_size 1000 \\
        --input_list files.txt -- --runner=DirectRunner --direct_num_workers=2

The launcher resolves the inputs (files, folders, `--input_list`; `audio.input_audio_files`),
loads the model once to write the manifest (`EmbeddingShards.open`: a rerun with other inputs or
options is refused), then runs, for the shards not written yet:

    Create((index, path)) -> Decode -> RunInference(MatpacModelHandler)
        -> key by shard (index // shard_size) -> GroupByKey -> WriteShard -> write_index

- `Decode` reads a file's header (`audio.audio_info`); a clip of at most `batch_size` windows
  is decoded whole (`audio.load_audio`), a longer one is left to the model handler, which
  streams it (`EmbeddingExtractor.embed_stream`), as `file_embeddings.FileEmbedder` does. A file
  that cannot be read fails the pipeline, or with `skip_errors` is recorded in its shard's
  `skipped`/`errors` with the reason.
- `MatpacModelHandler` loads the backbone (`saving.load_backbone`) into an
  `EmbeddingExtractor` once per worker process and embeds batches of `batch_size` decoded
  clips with `embed_clips` (RunInference's `BatchElements`).
- Each shard is written atomically by one worker, so a killed job started again computes only
  the shards missing; `index.csv` is written last, once every shard is there.

Every path (audio, model, output) must be a file-system path each worker can read (and for
the output, write): any folder on the DirectRunner; on a cluster, a shared mount (NFS, a
Cloud Storage FUSE mount). URLs such as `gs://` are not read.

Apache Beam is an optional dependency: `pip install "matpac-keras[beam]"`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

try:
    import apache_beam as beam
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f'matpac_keras.beam needs Apache Beam ({error}): pip install "matpac-keras[beam]"'
    ) from error

import numpy as np

from matpac_keras.audio import SAMPLE_RATE, AudioError, audio_info, load_audio, stream_audio
from matpac_keras.embedding_shards import EmbeddingShards

DEFAULT_SHARD_SIZE = 1000
SKIPPED = "skipped"  # the Decode stage's tagged output of unreadable files


class DecodedClip(NamedTuple):
    """One input on its way to the model: a whole 16 kHz waveform, or None for a file of more
    than `batch_size` windows, which the model handler streams from `path`."""

    index: int
    path: str
    waveform: np.ndarray | None


class Decode(beam.DoFn):
    """(index, path) -> DecodedClip; an unreadable file raises its AudioError or, with
    `skip_errors`, goes to the `skipped` output as (index, path, why).

    Args:
        whole_frames: int. Clips of more log-mel frames are streamed by the model handler
            instead of decoded here (`file_embeddings.most_whole_frames`).
        skip_errors: bool. Record unreadable files instead of failing the pipeline.
    """

    def __init__(self, whole_frames: int, skip_errors: bool):
        self.whole_frames = whole_frames
        self.skip_errors = skip_errors

    def process(self, element: tuple[int, str]):
        from matpac_keras.frontend import num_frames

        index, path = element
        try:
            rate, count, _ = audio_info(path)
            samples = max(-(-count * SAMPLE_RATE // rate), 400)  # ceil, as FileEmbedder
            if num_frames(samples) > self.whole_frames:
                yield DecodedClip(index, path, None)
                return
            yield DecodedClip(index, path, load_audio(path))
        except AudioError as error:
            if not self.skip_errors:
                raise
            beam.metrics.Metrics.counter("matpac_keras", "skipped_files").inc()
            yield beam.pvalue.TaggedOutput(SKIPPED, (index, path, str(error)))


class MatpacModelHandler(ModelHandler):
    """Beam RunInference model handler: DecodedClip batches -> PredictionResult per clip.

    `load_model` loads the backbone of `model` (`saving.load_backbone`) into an
    `EmbeddingExtractor(backbone, **extractor_kwargs)`; `run_inference` embeds the whole clips
    of a batch together (`embed_clips`) and streams the long ones (`embed_stream`). Each
    result's `example` is (index, path) and its `inference` the clip's `ClipEmbeddings` (frames
    dropped unless `frames`), or, for a long file that turned out unreadable while streamed,
    the error message (a skipped input; raised instead unless `skip_errors`).

    Args:
        model: str. A preset directory or a `.keras` file (backbone, pretrainer, classifier).
        extractor_kwargs: dict. Arguments of `EmbeddingExtractor` (mode, layers, frame_order,
            batch_size, temporal_support, hop, aggregate). Defaults to {}.
        frames: bool. Keep per-time-step frames. Defaults to False.
        skip_errors: bool. Record a long file failing mid-stream instead of raising.
            Defaults to False.
        min_batch_size, max_batch_size: int or None. Clips per RunInference batch
            (`BatchElements`). Default to the extractor's `batch_size` (16), so that batches
            are full but at the end of a bundle.
        **kwargs: passed to Beam's `ModelHandler` (large_model, model_copies, env_vars...).

    Example:
    >>> handler = MatpacModelHandler("matpac.keras", {"mode": "fast", "batch_size": 8})
    >>> handler.batch_elements_kwargs()
    {'min_batch_size': 8, 'max_batch_size': 8}
    """

    def __init__(
        self,
        model: str,
        extractor_kwargs: dict | None = None,
        frames: bool = False,
        skip_errors: bool = False,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        extractor_kwargs = dict(extractor_kwargs or {})
        batch_size = extractor_kwargs.get("batch_size", 16)
        self.model = os.fspath(model)
        self.extractor_kwargs = extractor_kwargs
        self.frames = frames
        self.skip_errors = skip_errors
        self.min_batch_size = batch_size if min_batch_size is None else min_batch_size
        self.max_batch_size = batch_size if max_batch_size is None else max_batch_size

    def load_model(self):
        from matpac_keras.embedding import EmbeddingExtractor
        from matpac_keras.saving import load_backbone

        return EmbeddingExtractor(load_backbone(self.model), **self.extractor_kwargs)

    def run_inference(
        self,
        batch: Sequence[DecodedClip],
        model,
        inference_args: dict | None = None,
    ) -> Iterable[PredictionResult]:
        whole = [clip for clip in batch if clip.waveform is not None]
        results = dict(
            zip(
                [clip.index for clip in whole],
                model.embed_clips([clip.waveform for clip in whole]),
                strict=True,
            )
        )
        for clip in batch:
            if clip.waveform is not None:
                continue
            try:
                results[clip.index] = model.embed_stream(
                    stream_audio(clip.path), frames=self.frames
                )
            except AudioError as error:
                if not self.skip_errors:
                    raise
                beam.metrics.Metrics.counter("matpac_keras", "skipped_files").inc()
                results[clip.index] = str(error)
        return [
            PredictionResult((clip.index, clip.path), self._kept(results[clip.index]))
            for clip in batch
        ]

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": self.min_batch_size, "max_batch_size": self.max_batch_size}

    def get_num_bytes(self, batch: Sequence[DecodedClip]) -> int:
        return sum(0 if clip.waveform is None else clip.waveform.nbytes for clip in batch)

    def get_metrics_namespace(self) -> str:
        return "matpac_keras"

    def _kept(self, result):
        """`result` without frames unless asked for (whole clips come with them)."""
        if isinstance(result, str) or self.frames:
            return result
        return type(result)(result.embedding, None, result.layers, None)


def _by_shard(result: PredictionResult, shard_size: int):
    """A RunInference result -> (shard, ("clip" | "skipped", (index, path, value)))."""
    index, path = result.example
    kind = SKIPPED if isinstance(result.inference, str) else "clip"
    return index // shard_size, (kind, (index, path, result.inference))


def _skipped_by_shard(item: tuple[int, str, str], shard_size: int):
    """A file Decode could not read -> (shard, ("skipped", (index, path, why)))."""
    return item[0] // shard_size, (SKIPPED, item)


class WriteShard(beam.DoFn):
    """(shard, [(kind, (index, path, value))]) -> the shard's file, written atomically
    (`EmbeddingShards.write`); yields the shard number."""

    def __init__(self, folder: str, manifest: dict):
        self.folder = folder
        self.manifest = manifest

    def process(self, element):
        k, items = element
        entries = [item for kind, item in items if kind != SKIPPED]
        skipped = [item for kind, item in items if kind == SKIPPED]
        EmbeddingShards(self.folder, self.manifest).write(k, entries, skipped)
        beam.metrics.Metrics.counter("matpac_keras", "shards_written").inc()
        yield k


def _write_index(_, folder: str, manifest: dict) -> str:
    return str(EmbeddingShards(folder, manifest).write_index())


def embedding_pipeline(
    pipeline: beam.Pipeline,
    shards: EmbeddingShards,
    paths: Sequence[str],
    handler: MatpacModelHandler,
    whole_frames: int,
    skip_errors: bool,
):
    """Adds the stages that write the pending shards of `shards`, then the index, to
    `pipeline` (`whole_frames`: see `Decode`); returns the PCollection of the index's path
    (one element)."""
    size = shards.manifest["shard_size"]
    indexed = [(i, str(paths[i])) for k in shards.pending() for i in shards.ranges[k]]
    decoded = (
        pipeline
        | "Inputs" >> beam.Create(indexed)
        | "Decode"
        >> beam.ParDo(Decode(whole_frames, skip_errors)).with_outputs(SKIPPED, main="clips")
    )
    embedded = (
        decoded.clips
        | "Embed" >> RunInference(handler)
        | "KeyEmbedded" >> beam.Map(_by_shard, shard_size=size)
    )
    unreadable = decoded[SKIPPED] | "KeySkipped" >> beam.Map(_skipped_by_shard, shard_size=size)
    folder, manifest = str(shards.folder), shards.manifest
    return (
        (embedded, unreadable)
        | "Merge" >> beam.Flatten()
        | "ByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.ParDo(WriteShard(folder, manifest))
        | "AllShards" >> beam.combiners.Count.Globally()
        | "WriteIndex" >> beam.Map(_write_index, folder=folder, manifest=manifest)
    )


def embed_with_beam(
    model: str | os.PathLike,
    paths: Sequence[str],
    output_dir: str | os.PathLike,
    shard_size: int = DEFAULT_SHARD_SIZE,
    pipeline_options: PipelineOptions | Sequence[str] | None = None,
    mode: str = "precise",
    frames: bool = False,
    layers: bool = False,
    frame_order: str = "temporal",
    batch_size: int = 16,
    temporal_support: float | None = None,
    hop: float | None = None,
    aggregate: str = "mean",
    skip_errors: bool = False,
    overwrite: bool = False,
    **handler_kwargs: Any,
) -> EmbeddingShards:
    """Embeds audio files with a Beam pipeline into the sharded folder `output_dir`.

    The same shards as `matpac-embed --output DIR/ --shard_size N` (shard k holds inputs
    [k N, (k + 1) N)); shards already in `output_dir` (a previous, interrupted run of the same
    job) are not computed again. Blocks until the pipeline has finished.

    Args:
        model: str. A preset directory or a `.keras` file, readable by every worker.
        paths: list of str. The audio files, in order (`audio.input_audio_files` resolves
            folders and lists).
        output_dir: str. The sharded output folder: new, empty, or this job's.
        shard_size: int. Inputs per shard. Defaults to 1000.
        pipeline_options: PipelineOptions, a list of Beam flags (`["--runner=DirectRunner"]`)
            or None (Beam's defaults: the DirectRunner).
        mode, layers, frame_order, batch_size, temporal_support, hop, aggregate: as for
            `EmbeddingExtractor`.
        frames: bool. Store per-time-step frames too (non-overlapping windows only).
            Defaults to False.
        skip_errors: bool. Record unreadable files in their shard instead of failing.
            Defaults to False.
        overwrite: bool. Replace another job's shards in `output_dir`. Defaults to False.
        **handler_kwargs: passed to `MatpacModelHandler` (min_batch_size, max_batch_size,
            large_model, model_copies...).

    Returns:
        The EmbeddingShards of `output_dir` (`read_shards(output_dir)` reads them).

    Raises:
        InputError / OutputError: a bad argument or model, or an `output_dir` holding another
            job; an unreadable audio file's AudioError (without `skip_errors`) as the pipeline
            reports it.

    Example:
    >>> embed_with_beam("matpac.keras", ["a.wav", "b.flac"], "emb/", shard_size=1,
    ...                 pipeline_options=["--runner=DirectRunner"])
    """
    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.errors import InputError
    from matpac_keras.file_embeddings import job_options, most_whole_frames
    from matpac_keras.saving import load_backbone

    paths = [os.fspath(path) for path in paths]
    if not paths:
        raise InputError("paths: no audio files given")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InputError(f"shard_size must be a positive integer; got {shard_size!r}")
    pipeline = _pipeline(pipeline_options)  # a bad --runner: refused before any work
    model = os.fspath(model)
    extractor_kwargs = dict(
        mode=mode,
        layers=layers,
        frame_order=frame_order,
        batch_size=batch_size,
        temporal_support=temporal_support,
        hop=hop,
        aggregate=aggregate,
    )
    backbone = load_backbone(model)
    try:
        extractor = EmbeddingExtractor(backbone, **extractor_kwargs)
    except ValueError as error:
        raise InputError(str(error)) from error
    if frames and extractor.overlapping:
        raise InputError("frames need non-overlapping windows: hop = temporal_support")
    shards = EmbeddingShards.open(
        output_dir,
        paths,
        shard_size=shard_size,
        options=job_options(model, extractor, frames),
        overwrite=overwrite,
    )
    handler = MatpacModelHandler(
        model, extractor_kwargs, frames=frames, skip_errors=skip_errors, **handler_kwargs
    )
    with pipeline:
        embedding_pipeline(
            pipeline, shards, paths, handler, most_whole_frames(extractor), skip_errors
        )
    return shards


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m matpac_keras.beam",
        description=(
            "Embeds audio files with Apache Beam's RunInference into a sharded folder (the "
            "layout of matpac-embed --output DIR/). Beam's own options (--runner, "
            "--direct_num_workers, --project, --region, --flink_master, --spark_master_url...) "
            "go after '--' (or anywhere, if not one of the options below)."
        ),
        epilog=(
            "example: python -m matpac_keras.beam --model matpac.keras --output emb/ "
            "--input_list files.txt -- --runner=DirectRunner --direct_num_workers=2"
        ),
    )
    parser.add_argument("paths", nargs="*", help="audio files or folders (recursively)")
    parser.add_argument("--model", required=True, help="a preset directory or a .keras file")
    parser.add_argument("--output", required=True, help="the sharded output folder")
    parser.add_argument("--shard_size", type=int, default=DEFAULT_SHARD_SIZE, help="per shard")
    parser.add_argument("--input_list", help="a text file of audio paths, one per line")
    parser.add_argument("--mode", choices=["precise", "fast"], default="precise")
    parser.add_argument("--frames", action="store_true", help="also store per-step frames")
    parser.add_argument("--layers", action="store_true", help="also store every layer's")
    parser.add_argument("--official_frame_order", action="store_true")
    parser.add_argument("--batch_size", type=int, default=16, help="clips/chunks at once")
    parser.add_argument("--temporal_support", type=float, help="window in seconds")
    parser.add_argument("--hop", type=float, help="seconds between windows")
    parser.add_argument("--aggregate", choices=["mean", "max", "mean+max"], default="mean")
    parser.add_argument("--skip_errors", action="store_true", help="record unreadable files")
    parser.add_argument("--overwrite", action="store_true", help="replace another job's shards")
    return parser


def _pipeline(pipeline_options) -> beam.Pipeline:
    """A Beam pipeline of `pipeline_options` (PipelineOptions, a list of Beam flags or None);
    InputError naming the runner Beam does not know (its ValueError lists those it does)."""
    from apache_beam.options.pipeline_options import StandardOptions

    from matpac_keras.errors import InputError

    if pipeline_options is None or not isinstance(pipeline_options, PipelineOptions):
        pipeline_options = PipelineOptions(list(pipeline_options or []))
    try:
        return beam.Pipeline(options=pipeline_options)
    except ValueError as error:
        runner = pipeline_options.view_as(StandardOptions).runner
        raise InputError(f"--runner={runner}: {error}") from None


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: `python -m matpac_keras.beam --model M --output DIR paths... --
    <Beam pipeline options>`. A user error is printed as one line, with exit status 1."""
    from matpac_keras.cli.entry import error_line, is_user_error

    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args = []
    if "--" in argv:
        split = argv.index("--")
        argv, beam_args = argv[:split], argv[split + 1 :]
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if not args.paths and args.input_list is None:
        parser.error("give audio files or folders, or --input_list")
    try:
        from matpac_keras.audio import input_audio_files

        paths = input_audio_files(args.paths, args.input_list)
        shards = embed_with_beam(
            args.model,
            paths,
            args.output,
            shard_size=args.shard_size,
            pipeline_options=unknown + beam_args,
            mode=args.mode,
            frames=args.frames,
            layers=args.layers,
            frame_order="official" if args.official_frame_order else "temporal",
            batch_size=args.batch_size,
            temporal_support=args.temporal_support,
            hop=args.hop,
            aggregate=args.aggregate,
            skip_errors=args.skip_errors,
            overwrite=args.overwrite,
        )
    except Exception as error:
        if not is_user_error(error):
            raise
        print(error_line(error), file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"wrote {shards.folder}: {len(paths)} inputs in {shards.count} shards")


if __name__ == "__main__":
    # Run the imported module's `main`, not this `__main__` copy's: Beam pickles the DoFns and
    # elements by their module, which workers import as `matpac_keras.beam`.
    from matpac_keras.beam import main as _main

    _main()
