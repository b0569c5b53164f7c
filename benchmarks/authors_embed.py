"""Clip embeddings of audio files with the AUTHORS' inference code, as their README shows it.

Run with the reference environment's Python (torch, torchaudio, timm, einops, soundfile,
pandas), never matpac-keras's: it imports only their `inference_matpac` package from a snapshot
of github.com/aurianworld/matpac (`--ref`) and the Python 3.11 compatibility shim of
`../shared/reference_bench/shim` (their configs use dataclass instances as defaults, which
Python >= 3.11 rejects; the shim changes no code of theirs).

    /tmp/refvenv/bin/python benchmarks/authors_embed.py --ref /tmp/matpac_ref \
        --checkpoint weights.pt --output theirs.npz clips/

What it does, as a user of their README would: `get_matpac(checkpoint_path=...)` (precise mode,
time dimension pooled), files read with soundfile (mono: channel mean; 16 kHz required),
`batch_size` clips of equal length stacked and embedded under `torch.no_grad()`, then one `.npz`
with `files` (sorted paths) and `embeddings` [N, 3840]. `--milestones` prints one JSON line on
stderr with wall-clock times (time.time()) at import, model loaded, first batch embedded, done.

`--make-checkpoint WEIGHTS.npz` instead writes the `.npz` state dict as a PyTorch checkpoint
(`torch.save` of a dict of tensors, their published files' layout) to `--checkpoint`, and
`--check-weights` verifies that `get_matpac` loaded every tensor of the checkpoint (it loads
with `strict=False`, which would silently skip misnamed keys).
"""

import argparse
import json
import os
import sys
import time

START = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHIM = os.path.join(HERE, "..", "..", "shared", "reference_bench", "shim")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="audio files or folders (recursive)")
    parser.add_argument("--ref", required=True, help="snapshot of aurianworld/matpac")
    parser.add_argument("--checkpoint", required=True, help="their .pt state dict")
    parser.add_argument("--output", help="the .npz to write")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--inference-type", default="precise", choices=["precise", "fast"])
    parser.add_argument("--shim", default=DEFAULT_SHIM, help="reference_bench/shim folder")
    parser.add_argument("--make-checkpoint", metavar="WEIGHTS_NPZ")
    parser.add_argument("--check-weights", action="store_true")
    parser.add_argument("--milestones", action="store_true")
    return parser.parse_args(argv)


def audio_files(inputs):
    """The audio files among `inputs` (folders searched recursively), sorted within a folder."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = [
                os.path.join(root, name)
                for root, _, names in os.walk(item)
                for name in names
                if name.lower().endswith(AUDIO_SUFFIXES)
            ]
            paths.extend(sorted(found))
        elif os.path.isfile(item):
            paths.append(item)
        else:
            sys.exit(f"no such file or folder: {item}")
    if not paths:
        sys.exit("no audio files given")
    return paths


def import_their_code(ref: str, shim: str):
    """Their `matpac` package on sys.path (as `pip install -e inference_matpac` would put it)."""
    package = os.path.join(os.path.abspath(ref), "inference_matpac")
    if not os.path.isdir(os.path.join(package, "matpac")):
        sys.exit(f"--ref {ref}: no inference_matpac/matpac there (extract their repository)")
    if not os.path.isfile(os.path.join(shim, "refshim_compat.py")):
        sys.exit(f"--shim {shim}: no refshim_compat.py there (../shared/reference_bench/shim)")
    sys.path[:0] = [os.path.abspath(shim), package]
    import refshim_compat

    refshim_compat.install()
    from matpac.model import get_matpac

    return get_matpac


def make_checkpoint(weights: str, checkpoint: str) -> None:
    import numpy as np
    import torch

    with np.load(weights) as arrays:
        state = {key: torch.from_numpy(np.array(arrays[key])) for key in arrays.files}
    torch.save(state, checkpoint)


def main(argv=None):
    args = parse_args(argv)
    if args.make_checkpoint:
        make_checkpoint(args.make_checkpoint, args.checkpoint)
        return
    # get_matpac picks the AudioSet configuration (992 frames) for any path containing "as".
    if "as" in os.path.abspath(args.checkpoint):
        sys.exit(f"their get_matpac treats paths containing 'as' as AudioSet: {args.checkpoint}")
    if args.batch_size < 1:
        sys.exit("--batch-size must be positive")
    marks = {"start": START}
    import numpy as np
    import soundfile
    import torch

    get_matpac = import_their_code(args.ref, args.shim)
    marks["imported"] = time.time()
    model = get_matpac(checkpoint_path=args.checkpoint, inference_type=args.inference_type)
    marks["loaded"] = time.time()
    if args.check_weights:
        expected = torch.load(args.checkpoint)
        loaded = model.state_dict()
        bad = [k for k, v in expected.items() if k not in loaded or not torch.equal(loaded[k], v)]
        if bad:
            sys.exit(f"get_matpac did not load {len(bad)} tensors: {bad[:5]}")
        print(f"all {len(expected)} checkpoint tensors loaded", file=sys.stderr)
    if not args.output:
        return
    paths = audio_files(args.inputs)
    by_length, embeddings = {}, [None] * len(paths)

    def embed(indices):
        batch = torch.from_numpy(np.stack([by_length_waves.pop(i) for i in indices]))
        with torch.no_grad():
            emb, _ = model(batch)
        for row, index in enumerate(indices):
            embeddings[index] = emb[row].numpy()
        marks.setdefault("first_embedding", time.time())

    by_length_waves = {}
    for index, path in enumerate(paths):
        wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
        if rate != 16000:
            sys.exit(f"{path}: {rate} Hz; the authors' wrapper takes 16 kHz audio")
        by_length_waves[index] = wave.mean(axis=1)
        group = by_length.setdefault(len(wave), [])
        group.append(index)
        if len(group) == args.batch_size:
            embed(group)
            group.clear()
    for group in by_length.values():
        if group:
            embed(group)
    np.savez(args.output, files=np.array(paths), embeddings=np.stack(embeddings))
    marks["done"] = time.time()
    if args.milestones:
        print(json.dumps({"milestones": marks}), file=sys.stderr)


if __name__ == "__main__":
    main()
