"""Pretraining throughput of ViT-B MATPAC: ours per backend beside the authors' step (#13 item 3).

Each measurement runs in its own process: ours builds a paper-size `MatpacPretrainer`
(`MatpacBackbone.from_variant("base")`, predictor 512 x 8 x 16, heads 2048/256/2048; MATPAC, or
MATPAC++ with `--mcl`: 5 prediction heads) compiled with the paper's AdamW, and times
`train_on_batch` on random normalised log-mel [B, 80, 608] (the whole step: student, predictor,
heads, teachers, EMA, centre, clipping, AdamW; the returned logs are a host sync per step, as
fairseq's logging is); theirs is `../shared/reference_bench/bench_ref.py` (their fairseq model
and step, see its docstring) run by the reference environment's Python. Variants run in an
order rotated every round, so that outside load hits each alike.

Per variant: samples/s, median step time, peak memory (CPU: peak RSS of the process; GPU: the
device's peak allocation), and MFU = analytic FLOPs per sample (91.84 GFLOP MATPAC, 93.09
MATPAC++: `bench_ref.py`'s formula, forward + backward, teachers forward) x samples/s over the
peak FLOP/s (`--peak-tflops`; by default, on a CPU, the float32 matmul rate measured here with
NumPy, on a known GPU its dense bf16 peak).

    python benchmarks/train_throughput.py --ref /tmp/matpac_ref \
        --ref-python /tmp/refvenv/bin/python --rounds 3 \
        --output benchmarks/train_throughput.json                            # CPU: batch 4, fp32
    python benchmarks/train_throughput.py --ref REF --ref-python PY --variants theirs,jax \
        --batch-size 64 128 256 --dtype bf16 --warmup 10 --steps 50           # one GPU
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH_REF = os.path.join(ROOT, "..", "shared", "reference_bench", "bench_ref.py")
FLOPS_PER_SAMPLE = {"matpac": 91.84e9, "matpac++": 93.09e9}  # bench_ref.py, ViT-B, 608 frames
GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}  # dense bf16
# name -> (backend, jit_compile, allocator): jit_compile None keeps Keras's "auto" (TF: no XLA
# on CPU; JAX: XLA); allocator "returned" applies `allocator.return_freed_memory()` first, as
# matpac-train does, "glibc" keeps glibc's defaults (to measure that lever).
VARIANTS = {
    "theirs": (None, None, None),
    "tf": ("tensorflow", None, "returned"),
    "tf-xla": ("tensorflow", True, "returned"),
    "jax": ("jax", None, "returned"),
    "torch": ("torch", None, "returned"),
    "tf-glibc": ("tensorflow", None, "glibc"),
    "tf-xla-glibc": ("tensorflow", True, "glibc"),
    "jax-glibc": ("jax", None, "glibc"),
}
PAPER = dict(
    backbone=dict(embed_dim=768, depth=12, num_heads=12, max_frames=608),
    heads=dict(
        predictor_dim=512,
        predictor_depth=8,
        predictor_heads=16,
        head_hidden_dim=2048,
        head_bottleneck_dim=256,
        num_classes=2048,
    ),
)
TINY = dict(  # bench_ref.py's --tiny
    backbone=dict(embed_dim=192, depth=2, num_heads=3, max_frames=96),
    heads=dict(
        predictor_dim=128,
        predictor_depth=1,
        predictor_heads=4,
        head_hidden_dim=256,
        head_bottleneck_dim=256,
        num_classes=256,
    ),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", help="snapshot of github.com/aurianworld/matpac (for theirs)")
    parser.add_argument("--ref-python", help="the reference environment's python")
    parser.add_argument("--bench-ref", default=BENCH_REF)
    parser.add_argument("--variants", default="theirs,tf,jax", help=f"from {sorted(VARIANTS)}")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--mcl", action="store_true", help="MATPAC++ (5 prediction heads)")
    parser.add_argument("--tiny", action="store_true", help="bench_ref's tiny config (smoke test)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--output", default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a variant name: run it here
    return parser.parse_args(argv)


def peak_memory_mib(backend: str) -> dict:
    """Peak RSS of this process, and the accelerator's peak allocation if there is one."""
    import resource

    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                out["device_peak_mib"] = device.memory_stats()["peak_bytes_in_use"] / 2**20
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                out["device_peak_mib"] = (
                    tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
                )
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                out["device_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception as error:  # a figure we cannot read is left out, not fatal
        out["device_peak_error"] = str(error)[:200]
    return out


def current_rss_mib() -> float | None:
    """This process's resident memory now (Linux), in MiB."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def worker(args) -> dict:
    """Times our train step in this process (KERAS_BACKEND set by the parent)."""
    backend, jit, allocator = VARIANTS[args.worker]
    if allocator == "returned":  # before the backend loads, as matpac-train does
        from matpac_keras.allocator import return_freed_memory

        if not return_freed_memory():
            raise RuntimeError("return_freed_memory() failed (not glibc?)")
    t_start = time.perf_counter()
    import keras
    import numpy as np

    from matpac_keras.backbone import MatpacBackbone
    from matpac_keras.pretrainer import MatpacPretrainer

    import_s = time.perf_counter() - t_start
    rss_imported = current_rss_mib()
    sizes = TINY if args.tiny else PAPER
    dtype = "mixed_bfloat16" if args.dtype == "bf16" else None
    batch_size = args.batch_size[0]
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    backbone = MatpacBackbone(**sizes["backbone"], dtype=dtype)
    model = MatpacPretrainer(
        backbone,
        num_prediction_heads=5 if args.mcl else 1,
        mcl_temperature=(0.1, 0.99997),
        seed=0,
        dtype=dtype,
        compile=False,
        **sizes["heads"],
    )
    model.compile(**({} if jit is None else {"jit_compile": jit}))
    build_s = time.perf_counter() - t0
    rss_built = current_rss_mib()
    frames = sizes["backbone"]["max_frames"]
    batch = np.random.default_rng(0).normal(size=(batch_size, 80, frames)).astype("float32")
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        logs = model.train_on_batch(batch, return_dict=True)
    warmup_s = time.perf_counter() - t0
    times, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        logs = model.train_on_batch(batch, return_dict=True)
        times.append(time.perf_counter() - t0)
        losses.append(float(logs["loss"]))
    elapsed = sum(times)
    return {
        "variant": args.worker,
        "backend": backend,
        "jit_compile": bool(model.jit_compile),
        "allocator": allocator,
        "batch_size": batch_size,
        "dtype": args.dtype,
        "config": ("tiny" if args.tiny else "vitb") + ("-matpac++" if args.mcl else "-matpac"),
        "build_s": round(build_s, 2),
        "import_s": round(import_s, 2),
        "rss_after_import_mib": rss_imported,
        "rss_after_build_mib": rss_built,
        "warmup_steps": args.warmup,
        "warmup_s": round(warmup_s, 2),
        "steps": args.steps,
        "step_s": [round(t, 4) for t in times],
        "step_s_median": statistics.median(times),
        "samples_per_s": batch_size * args.steps / elapsed,
        "loss_last": losses[-1],
        "finite": bool(np.isfinite(losses).all()),
        **peak_memory_mib(backend),
        "keras": keras.__version__,
    }


def run_ours(args, name: str, batch_size: int) -> dict:
    backend = VARIANTS[name][0]
    command = (
        [
            sys.executable,
            os.path.abspath(__file__),
            f"--worker={name}",
            f"--batch-size={batch_size}",
            f"--dtype={args.dtype}",
            f"--warmup={args.warmup}",
            f"--steps={args.steps}",
        ]
        + (["--mcl"] if args.mcl else [])
        + (["--tiny"] if args.tiny else [])
    )
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return _run_json(command, env, args.timeout)


def run_theirs(args, batch_size: int) -> dict:
    if not (args.ref and args.ref_python):
        sys.exit("the 'theirs' variant needs --ref and --ref-python")
    command = [
        args.ref_python,
        args.bench_ref,
        "--ref",
        args.ref,
        "--batch-size",
        str(batch_size),
        "--dtype",
        args.dtype,
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
    ]
    command += (["--mcl"] if args.mcl else []) + (["--tiny"] if args.tiny else [])
    rec = _run_json(command, dict(os.environ), args.timeout)
    rec.update(variant="theirs", step_s_median=rec["step_ms_median"] / 1e3)
    if rec.get("peak_rss_gib") is not None:
        rec["peak_rss_mib"] = rec["peak_rss_gib"] * 1024
    if rec.get("peak_mem_gib") is not None:
        rec["device_peak_mib"] = rec["peak_mem_gib"] * 1024
    return rec


def _run_json(command, env, timeout) -> dict:
    load = os.getloadavg()
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(command)} printed no JSON:\n{done.stdout[-2000:]}")
    rec = json.loads(lines[-1])
    rec.update(process_wall_s=round(wall, 2), loadavg_at_start=[round(x, 2) for x in load])
    return rec


def measured_matmul_tflops(size: int = 2048, repeats: int = 5) -> float:
    """The best float32 matmul rate of NumPy here (all cores), in TFLOP/s."""
    import numpy as np

    a = np.random.default_rng(0).normal(size=(size, size)).astype("float32")
    best = float("inf")
    a @ a
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e12


def gpu_name() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else None


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    gpu = gpu_name()
    peak, peak_source = args.peak_tflops, "--peak-tflops"
    if peak is None and gpu:
        peak = next((v for k, v in GPU_PEAK_TFLOPS.items() if k in gpu), None)
        peak_source = f"dense bf16 peak of {gpu}" if peak else None
    if peak is None and not gpu:
        peak = measured_matmul_tflops()
        peak_source = "float32 matmul measured with NumPy (2048^2, best of 5)"
    flops = FLOPS_PER_SAMPLE["matpac++" if args.mcl else "matpac"]
    runs = []
    for batch_size in args.batch_size:
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                rec = (
                    run_theirs(args, batch_size)
                    if name == "theirs"
                    else run_ours(args, name, batch_size)
                )
                rec["round"] = r
                if not args.tiny:
                    rec["mfu"] = flops * rec["samples_per_s"] / (peak * 1e12) if peak else None
                runs.append(rec)
                if args.output:  # what is measured so far survives an interrupted run
                    _write_json(args.output + ".partial", {"args": vars(args), "runs": runs})
                print(
                    f"batch {batch_size} round {r} {name:7s} {rec['samples_per_s']:7.3f} "
                    f"samples/s, step {rec['step_s_median']:.3f} s, peak RSS "
                    f"{rec.get('peak_rss_mib', 0):.0f} MiB (load {rec['loadavg_at_start'][0]})",
                    flush=True,
                )
    summary = {}
    for batch_size in args.batch_size:
        rows = {}
        for name in names:
            mine = [x for x in runs if x["variant"] == name and x["batch_size"] == batch_size]
            rows[name] = {
                "samples_per_s_median": statistics.median(x["samples_per_s"] for x in mine),
                "samples_per_s_runs": [round(x["samples_per_s"], 4) for x in mine],
                "step_s_median": statistics.median(x["step_s_median"] for x in mine),
                "peak_rss_mib_max": max(x.get("peak_rss_mib") or 0 for x in mine),
                "device_peak_mib_max": max((x.get("device_peak_mib") or 0) for x in mine) or None,
            }
            if not args.tiny and peak:
                rows[name]["mfu_median"] = (
                    flops * rows[name]["samples_per_s_median"] / (peak * 1e12)
                )
        if "theirs" in rows:
            for row in rows.values():
                row["ratio_vs_theirs"] = (
                    row["samples_per_s_median"] / rows["theirs"]["samples_per_s_median"]
                )
        summary[str(batch_size)] = rows
        print(f"\nbatch {batch_size}, {args.dtype}, medians of {args.rounds} round(s):")
        for name, row in rows.items():
            print(
                f"  {name:7s} {row['samples_per_s_median']:7.3f} samples/s  step "
                f"{row['step_s_median']:.3f} s  peak RSS {row['peak_rss_mib_max']:.0f} MiB"
                + (f"  MFU {100 * row['mfu_median']:.1f}%" if row.get("mfu_median") else "")
                + (f"  x{row['ratio_vs_theirs']:.2f} theirs" if "ratio_vs_theirs" in row else "")
            )
    result = {
        "benchmark": "train_throughput",
        "argv": sys.argv,
        "args": vars(args),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "gpu": gpu,
        },
        "flops_per_sample": flops,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "runs": runs,
        "summary": summary,
    }
    if args.output:
        _write_json(args.output, result)
        os.remove(args.output + ".partial")
        print(f"wrote {args.output}")


def _write_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
