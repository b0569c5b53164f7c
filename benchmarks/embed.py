"""Embedding throughput on CPU: clips/s of ViT-Base (random weights), 10 s clips, batch 8, float32.

Runs our EmbeddingExtractor under each Keras backend and a plain-PyTorch implementation of the
official inference path (benchmarks/torch_reference.py) side by side, each in its own process,
on the same random official-layout weights and the same audio; checks that all outputs agree
and prints medians over --runs timed batches (after one warm-up batch) and ratios.

    python benchmarks/embed.py --runs 5 --output benchmarks/embed_results.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

SAMPLE_RATE = 16000


def official_state(seed: int = 0, dim: int = 768, depth: int = 12, max_frames: int = 608) -> dict:
    """Random ViT-Base weights in the official encoder-only layout (real position table)."""
    from matpac_keras.layers import sincos_2d

    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.02):
        return rng.normal(0, scale, shape).astype("float32")

    positions = sincos_2d(dim, 5, max_frames // 16).reshape(-1, dim)
    state = {
        "patch_embed.proj.weight": normal(dim, 1, 16, 16),
        "patch_embed.proj.bias": normal(dim),
        "cls_token": normal(1, 1, dim),
        "pos_embed": np.concatenate([np.zeros((1, dim)), positions])[None].astype("float32"),
        "student_encoder.norm.weight": 1 + normal(dim),
        "student_encoder.norm.bias": normal(dim),
    }
    shapes = {
        "norm1.weight": (dim,),
        "norm1.bias": (dim,),
        "attn.qkv.weight": (3 * dim, dim),
        "attn.qkv.bias": (3 * dim,),
        "attn.proj.weight": (dim, dim),
        "attn.proj.bias": (dim,),
        "norm2.weight": (dim,),
        "norm2.bias": (dim,),
        "mlp.fc1.weight": (4 * dim, dim),
        "mlp.fc1.bias": (4 * dim,),
        "mlp.fc2.weight": (dim, 4 * dim),
        "mlp.fc2.bias": (dim,),
    }
    for i in range(depth):
        for name, shape in shapes.items():
            value = normal(*shape) + (
                1 if name.endswith("norm1.weight") or name.endswith("norm2.weight") else 0
            )
            state[f"student_encoder.blocks.{i}.{name}"] = value
    return state


def worker(args) -> dict:
    """Times one implementation in this process; returns per-run seconds and the embeddings."""
    import torch

    torch.set_num_threads(args.threads)
    state = official_state()
    audio = np.random.default_rng(1).uniform(
        -0.5, 0.5, (args.batch, int(args.seconds * SAMPLE_RATE))
    )
    audio = audio.astype("float32")
    if args.impl == "torch-reference":
        from benchmarks.torch_reference import TorchMatpacEncoder

        model = TorchMatpacEncoder(state, num_heads=12)
        waveform = torch.from_numpy(audio)

        def embed():
            return model.embed(waveform, args.mode, 608).numpy()
    else:
        from matpac_keras.convert import model_from_state_dict
        from matpac_keras.embedding import EmbeddingExtractor

        extractor = EmbeddingExtractor(
            model_from_state_dict(state), mode=args.mode, batch_size=args.batch
        )

        def embed():
            return extractor.embed_waveforms(audio).embedding

    started = time.perf_counter()
    output = embed()
    warmup = time.perf_counter() - started
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        embed()
        times.append(time.perf_counter() - started)
    np.save(args.embedding_out, output)
    return {"impl": args.impl, "mode": args.mode, "warmup_s": warmup, "times_s": times}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impls", default="torch-reference,tensorflow,jax,torch")
    parser.add_argument("--modes", default="precise,fast")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="Write all figures as JSON here.")
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--embedding_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.impl:
        print(json.dumps(worker(args)))
        return
    results, outputs = [], {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for mode in args.modes.split(","):
        for impl in args.impls.split(","):
            out_path = f"/tmp/matpac_bench_{impl}_{mode}.npy"
            backend = "torch" if impl == "torch-reference" else impl
            env = {
                **os.environ,
                "KERAS_BACKEND": backend,
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONPATH": root,
                "OMP_NUM_THREADS": str(args.threads),
            }
            command = [
                sys.executable,
                __file__,
                f"--impl={impl}",
                f"--mode={mode}",
                f"--runs={args.runs}",
                f"--batch={args.batch}",
                f"--seconds={args.seconds}",
                f"--threads={args.threads}",
                f"--embedding_out={out_path}",
            ]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["clips_per_s"] = args.batch / statistics.median(result["times_s"])
            results.append(result)
            outputs[(impl, mode)] = np.load(out_path)
            print(
                f"{mode:8s} {impl:16s} median {statistics.median(result['times_s']):7.2f} s/batch "
                f"= {result['clips_per_s']:5.2f} clips/s (warm-up {result['warmup_s']:.1f} s)",
                flush=True,
            )
        reference_name = args.impls.split(",")[0]
        reference = outputs[(reference_name, mode)]
        for impl in args.impls.split(",")[1:]:
            diff = np.abs(outputs[(impl, mode)] - reference).max() / np.abs(reference).max()
            print(f"{mode:8s} {impl:16s} max relative difference to {reference_name}: {diff:.1e}")
            next(r for r in results if r["impl"] == impl and r["mode"] == mode)["max_rel_diff"] = (
                float(diff)
            )
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
