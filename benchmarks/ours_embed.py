"""Clip embeddings of audio files with matpac-keras, with the levers `matpac-embed` lacks today.

A benchmark driver for `benchmarks/embed_vs_authors.py`: it computes what `matpac-embed
--model M --output O.npz FILES` computes (precise clip means, `files` and `embeddings` in the
`.npz`) through the package's API, with options that the CLI does not (yet) have:

- `--runtime onnx|openvino`: the encoder run by ONNX Runtime or OpenVINO
  (`matpac_keras.encoder_runtime.cached_encoder`, exported once into `--encoder_cache`);
  `--precision bfloat16` for OpenVINO's bfloat16 (opt-in; not float32-exact).
- `--jit`: the Keras encoder compiled by XLA under TensorFlow (`jit_compile=True`; JAX always
  compiles).
- `--batch_clips N`: N decoded clips of equal length embedded together
  (`EmbeddingExtractor.embed_clips`), so their windows are encoded N at a time; without it each
  file longer than one chunk is streamed alone, as `matpac-embed` does today.

    KERAS_BACKEND=tensorflow python benchmarks/ours_embed.py --model preset \
        --output ours.npz --runtime openvino --batch_clips 8 clips/

`--milestones` prints wall-clock times (time.time()) at import, model loaded, first clip
embedded and done as one JSON line on stderr.
"""

import time

START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="audio files or folders")
    parser.add_argument("--model", required=True, help="preset directory or .keras file")
    parser.add_argument("--output", required=True, help="the .npz to write")
    parser.add_argument("--runtime", default="keras", choices=["keras", "onnx", "openvino"])
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--jit", action="store_true", help="XLA-compile the Keras encoder (TF)")
    parser.add_argument("--batch_clips", type=int, default=0, help="clips embedded together")
    parser.add_argument("--batch_size", type=int, default=16, help="windows encoded at once")
    parser.add_argument("--threads", type=int, default=None, help="runtime threads")
    parser.add_argument("--encoder_cache", default=None, help="folder of exported encoders")
    parser.add_argument("--milestones", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    marks = {"start": START}
    import numpy as np

    from matpac_keras.audio import (
        SAMPLE_RATE,
        audio_info,
        input_audio_files,
        load_audio,
        stream_audio,
    )
    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.frontend import num_frames
    from matpac_keras.saving import load_backbone

    marks["imported"] = time.time()
    paths = input_audio_files(args.inputs)
    backbone = load_backbone(args.model)
    if args.precision != "float32" and args.runtime != "openvino":
        sys.exit("--precision bfloat16 is implemented here for --runtime openvino only")
    extractor = EmbeddingExtractor(backbone, batch_size=args.batch_size)
    if args.runtime != "keras":
        from matpac_keras.encoder_runtime import cached_encoder

        options = {"threads": args.threads}
        if args.runtime == "openvino":
            options["precision"] = args.precision
        encoder = cached_encoder(backbone, args.runtime, cache_dir=args.encoder_cache, **options)
        extractor.features.predict_on_batch = encoder  # the encoder= argument, until it exists
    elif args.jit:
        extractor.features.jit_compile = True
    marks["loaded"] = time.time()
    embeddings = [None] * len(paths)
    if args.batch_clips:
        by_length: dict[int, list] = {}

        def flush(group):
            results = extractor.embed_clips([wave for _, wave in group])
            for (index, _), result in zip(group, results, strict=True):
                embeddings[index] = result.embedding
            marks.setdefault("first_embedding", time.time())
            group.clear()

        for index, path in enumerate(paths):
            wave = load_audio(path)
            group = by_length.setdefault(len(wave), [])
            group.append((index, wave))
            if len(group) == args.batch_clips:
                flush(group)
        for group in by_length.values():
            if group:
                flush(group)
    else:  # as matpac-embed today: clips of at most one chunk whole, longer ones streamed
        for index, path in enumerate(paths):
            rate, count, _ = audio_info(path)
            if num_frames(-(-count * SAMPLE_RATE // rate)) <= backbone.max_frames:
                embeddings[index] = extractor.embed_clips([load_audio(path)])[0].embedding
            else:
                embeddings[index] = extractor.embed_stream(stream_audio(path)).embedding
            marks.setdefault("first_embedding", time.time())
    np.savez(args.output, files=np.array(paths), embeddings=np.stack(embeddings))
    marks["done"] = time.time()
    if args.milestones:
        print(json.dumps({"milestones": marks}), file=sys.stderr)


if __name__ == "__main__":
    main()
