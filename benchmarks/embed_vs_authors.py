"""Whole-process embedding time: `matpac-embed` against the authors' inference code (#13 item 2).

Times, as a user would (wall clock from launching the process to its exit), the embedding of the
same audio files with the same weights by

- ours: the `matpac-embed` CLI of this checkout (`.venv/bin/matpac-embed --model PRESET
  --output out.npz FOLDER`), under TensorFlow and under JAX, and optionally
  `benchmarks/ours_embed.py` (the package's API with levers the CLI lacks: ONNX Runtime or
  OpenVINO execution of the encoder, XLA, clips batched together);
- theirs: `benchmarks/authors_embed.py` run by the reference environment's Python: their
  `inference_matpac` package from a snapshot of github.com/aurianworld/matpac (`get_matpac`,
  precise mode, batch 8), files read with soundfile.

Setup (untimed): `--files` ten-second 16 kHz wav files (16-bit PCM; seeded noise, tones and
chirps) in a temporary folder; random ViT-B weights in the authors' encoder-only checkpoint
layout (`benchmarks/embed.py: official_state`), written as a `.pt` by their environment's
torch and converted with `matpac-convert` to a preset (both sides read the same `.pt`); every
variant run once on one file to warm the disk cache (and export the ONNX/OpenVINO encoders).

Then `--rounds` rounds; each runs every variant once on all files and once on one file (the
start-up to the first embedding), in an order rotated every round so that outside load hits
every variant alike. Outputs are compared with theirs per file (max |ours - theirs|, and that
over max |theirs|). Prints medians and ratios, and writes everything (machine, versions, load
averages, per-run wall/CPU time and peak RSS) to `--output`.

    python benchmarks/embed_vs_authors.py --ref /tmp/matpac_ref \
        --ref-python /tmp/refvenv/bin/python --rounds 3 --output benchmarks/embed_vs_authors.json
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The checkout's .venv, else (a git worktree without one) the environment running this script.
VENV_BIN = (
    os.path.join(ROOT, ".venv", "bin")
    if os.path.isdir(os.path.join(ROOT, ".venv"))
    else os.path.dirname(sys.executable)
)
SAMPLE_RATE = 16000

# name -> (kind, KERAS_BACKEND, extra arguments[, extra environment]). "cli": matpac-embed;
# "driver": benchmarks/ours_embed.py; "theirs": benchmarks/authors_embed.py.
VARIANTS = {
    "theirs": ("theirs", None, []),
    "cli-tf": ("cli", "tensorflow", []),
    "cli-jax": ("cli", "jax", []),
    "cli-jax-cache": ("cli", "jax", [], {"JAX_COMPILATION_CACHE_DIR": "{workdir}/jax_cache"}),
    "drv-tf": ("driver", "tensorflow", []),
    "drv-tf-b8": ("driver", "tensorflow", ["--batch_clips=8"]),
    "drv-tf-xla-b8": ("driver", "tensorflow", ["--batch_clips=8", "--jit"]),
    "drv-jax-b8": ("driver", "jax", ["--batch_clips=8"]),
    "drv-onnx-b8": ("driver", "tensorflow", ["--batch_clips=8", "--runtime=onnx"]),
    "drv-openvino-b8": ("driver", "tensorflow", ["--batch_clips=8", "--runtime=openvino"]),
    "drv-openvino": ("driver", "tensorflow", ["--runtime=openvino"]),
    "drv-openvino-bf16-b8": (
        "driver",
        "tensorflow",
        ["--batch_clips=8", "--runtime=openvino", "--precision=bfloat16"],
    ),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", required=True, help="snapshot of github.com/aurianworld/matpac")
    parser.add_argument("--ref-python", required=True, help="the reference environment's python")
    parser.add_argument(
        "--shim", default=os.path.join(ROOT, "..", "shared", "reference_bench", "shim")
    )
    parser.add_argument(
        "--variants",
        default="theirs,cli-tf,cli-jax",
        help=f"comma-separated, from {sorted(VARIANTS)}",
    )
    parser.add_argument(
        "--cli-variant",
        action="append",
        default=[],
        metavar="NAME=BACKEND[:FLAGS]",
        help="another matpac-embed variant, e.g. 'cli-tf-onnx=tensorflow:--runtime=onnx' "
        "(FLAGS space-separated)",
    )
    parser.add_argument(
        "--ours-pythonpath",
        default=None,
        help="run our variants with PYTHONPATH=this (e.g. a `git archive` snapshot of a commit, "
        "with encoder_runtime.py for the driver variants) instead of the checkout's package",
    )
    parser.add_argument(
        "--ours-label",
        default=None,
        help="what --ours-pythonpath holds (e.g. 'git archive of 70deb3d'), recorded as is",
    )
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-startup",
        dest="startup",
        action="store_false",
        help="skip the one-file (start-up) runs",
    )
    parser.add_argument(
        "--rates",
        action="store_true",
        help="before and after the rounds, measure NumPy's float32 matmul rate and the "
        "encoder's GFLOP/s (benchmarks/encoder_rate.py); print each variant's whole-process "
        "GFLOP/s (the encoder's FLOPs of the files / wall time)",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per process")
    parser.add_argument("--workdir", default=None, help="keep files here (default: a temp dir)")
    parser.add_argument("--output", default=None, help="results JSON")
    return parser.parse_args(argv)


def write_clips(folder: str, count: int, seconds: float) -> list[str]:
    """`count` deterministic 16-bit 16 kHz wav files: coloured noise plus tones and a chirp."""
    import soundfile

    os.makedirs(folder, exist_ok=True)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    paths = []
    for i in range(count):
        rng = np.random.default_rng(1000 + i)
        noise = np.cumsum(rng.normal(0, 1, n)) if i % 3 == 0 else rng.normal(0, 1, n)
        noise = noise / (np.abs(noise).max() + 1e-9)
        tones = sum(
            rng.uniform(0.05, 0.3)
            * np.sin(2 * np.pi * rng.uniform(80, 6000) * t + rng.uniform(0, 6))
            for _ in range(1 + i % 4)
        )
        chirp = 0.2 * np.sin(2 * np.pi * (200 + 300 * (i % 7)) * t * (1 + t / seconds))
        wave = rng.uniform(0.05, 0.3) * noise + tones + (chirp if i % 2 else 0)
        wave = 0.9 * wave / np.abs(wave).max()
        path = os.path.join(folder, f"clip_{i:03d}.wav")
        soundfile.write(path, wave.astype("float32"), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def make_workdir(given: str | None) -> str:
    """A working folder whose path has no "as": the authors' get_matpac switches to its AudioSet
    configuration for any checkpoint path containing those letters."""
    if given:
        if "as" in os.path.abspath(given):
            sys.exit(f"--workdir {given}: the path must not contain 'as' (see make_workdir)")
        os.makedirs(given, exist_ok=True)
        return os.path.abspath(given)
    for _ in range(100):
        path = tempfile.mkdtemp(prefix="matpac_e2e_")
        if "as" not in path:
            return path
        os.rmdir(path)
    sys.exit("could not make a temporary folder without 'as' in its path")


def run_process(command, env, timeout) -> dict:
    """Runs `command`; returns wall seconds (launch to exit), CPU seconds, peak RSS (MiB), the
    load average at launch and the milestones the process printed (if any)."""
    load = os.getloadavg()
    started = time.time()
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {process.returncode}:\n{stderr[-3000:]}"
        )
    milestones = None
    for line in stderr.splitlines():
        if line.startswith('{"milestones"'):
            marks = json.loads(line)["milestones"]
            milestones = {k: round(v - started, 3) for k, v in marks.items()}
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "loadavg_at_start": [round(x, 2) for x in load],
        "milestones": milestones,
    }


def variant_command(name, spec, args, paths, preset, checkpoint, output, cache) -> tuple:
    kind, backend, extra = spec[:3]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
    workdir = os.path.dirname(preset)
    env.update(
        {k: v.format(workdir=workdir) for k, v in (spec[3] if len(spec) > 3 else {}).items()}
    )
    env.pop("PYTHONPATH", None)
    if kind == "theirs":
        command = [
            args.ref_python,
            os.path.join(HERE, "authors_embed.py"),
            "--ref",
            args.ref,
            "--shim",
            args.shim,
            "--checkpoint",
            checkpoint,
            "--batch-size",
            "8",
            "--output",
            output,
            "--milestones",
            *paths,
        ]
        return command, env
    env["KERAS_BACKEND"] = backend
    if args.ours_pythonpath:
        env["PYTHONPATH"] = os.path.abspath(args.ours_pythonpath)
    if kind == "cli":
        command = [
            os.path.join(VENV_BIN, "matpac-embed"),
            f"--model={preset}",
            f"--output={output}",
            "--overwrite",
            *extra,
            *paths,
        ]
    else:
        env.setdefault("PYTHONPATH", ROOT)
        command = [
            os.path.join(VENV_BIN, "python"),
            os.path.join(HERE, "ours_embed.py"),
            f"--model={preset}",
            f"--output={output}",
            f"--encoder_cache={cache}",
            "--milestones",
            *extra,
            *paths,
        ]
    return command, env


def compare(output: str, reference: str) -> dict:
    """Per-file differences of two `.npz` outputs (matched by file name)."""
    with np.load(output) as ours, np.load(reference) as theirs:
        ours_rows = dict(zip(map(os.path.basename, ours["files"]), ours["embeddings"], strict=True))
        ref_rows = dict(
            zip(map(os.path.basename, theirs["files"]), theirs["embeddings"], strict=True)
        )
    if sorted(ours_rows) != sorted(ref_rows):
        raise RuntimeError(f"{output} and {reference} hold different files")
    a = np.stack([ours_rows[k] for k in sorted(ref_rows)]).astype(np.float64)
    b = np.stack([ref_rows[k] for k in sorted(ref_rows)]).astype(np.float64)
    if a.shape != b.shape:
        raise RuntimeError(f"embeddings {a.shape} vs {b.shape}")
    diff = np.abs(a - b)
    return {
        "shape": list(a.shape),
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float(diff.max() / np.abs(b).max()),
        "max_abs_reference": float(np.abs(b).max()),
        "worst_per_clip_rel": float((diff.max(axis=1) / np.abs(b).max(axis=1)).max()),
    }


def versions(args) -> dict:
    def pip_versions(python, names):
        done = subprocess.run(
            [python, "-m", "pip", "list", "--format=json"],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            listed = {p["name"].lower(): p["version"] for p in json.loads(done.stdout)}
        except json.JSONDecodeError:
            return {}
        return {n: listed.get(n) for n in names}

    ours = pip_versions(
        os.path.join(VENV_BIN, "python"),
        [
            "keras",
            "keras-hub",
            "tensorflow",
            "jax",
            "jaxlib",
            "numpy",
            "onnxruntime",
            "openvino",
            "tf2onnx",
            "soundfile",
            "soxr",
        ],
    )
    theirs = pip_versions(
        args.ref_python, ["torch", "torchaudio", "timm", "einops", "numpy", "soundfile"]
    )
    ref_commit = None
    if os.path.isdir(os.path.join(args.ref, ".git")):
        ref_commit = subprocess.run(
            ["git", "-C", args.ref, "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", ROOT, "status", "--short", "matpac_keras"], capture_output=True, text=True
    ).stdout.split("\n")
    return {
        "ours_python": platform.python_version(),
        "ours": ours,
        "theirs_python": subprocess.run(
            [args.ref_python, "-c", "import platform;print(platform.python_version())"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "theirs": theirs,
        "ref_commit": ref_commit,
        "matpac_keras_commit": git.stdout.strip(),
        "ours_code": args.ours_label
        or (f"PYTHONPATH={args.ours_pythonpath}" if args.ours_pythonpath else "this checkout"),
        "matpac_keras_uncommitted": [line for line in dirty if line],
    }


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    return {
        "cpu": fields.get("Model name", "").strip(),
        "cpus": os.cpu_count(),
        "flags_bf16": "avx512_bf16" in fields.get("Flags", ""),
        "kernel": platform.release(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def main(argv=None):
    args = parse_args(argv)
    variants = {name: VARIANTS[name] for name in args.variants.split(",") if name}
    unknown = [n for n in args.variants.split(",") if n and n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    for entry in args.cli_variant:
        name, _, rest = entry.partition("=")
        backend, _, flags = rest.partition(":")
        variants[name] = ("cli", backend, flags.split())
    if "theirs" not in variants:
        sys.exit("the variants must include 'theirs' (the reference of the comparison)")
    workdir = make_workdir(args.workdir)
    print(f"working in {workdir}", flush=True)
    clips = os.path.join(workdir, "clips")
    paths = write_clips(clips, args.files, args.seconds)
    one = os.path.join(workdir, "one")
    os.makedirs(one, exist_ok=True)
    shutil.copy(paths[0], one)
    sys.path.insert(0, ROOT)
    from benchmarks.embed import official_state

    weights = os.path.join(workdir, "weights.npz")
    np.savez(weights, **official_state(seed=0))
    checkpoint = os.path.join(workdir, "vitb_random.pt")
    author = [
        args.ref_python,
        os.path.join(HERE, "authors_embed.py"),
        "--ref",
        args.ref,
        "--shim",
        args.shim,
        "--checkpoint",
        checkpoint,
    ]
    subprocess.run([*author, "--make-checkpoint", weights], check=True)
    subprocess.run([*author, "--check-weights"], check=True)
    preset = os.path.join(workdir, "preset")
    subprocess.run(
        [
            os.path.join(VENV_BIN, "matpac-convert"),
            f"--checkpoint={checkpoint}",
            f"--output={preset}",
            "--overwrite",
        ],
        check=True,
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            **(
                {"PYTHONPATH": os.path.abspath(args.ours_pythonpath)}
                if args.ours_pythonpath
                else {}
            ),
        },
    )
    cache = os.path.join(workdir, "encoders")
    outputs = os.path.join(workdir, "out")
    os.makedirs(outputs, exist_ok=True)
    runs = []

    def run(name, inputs, tag, count):
        output = os.path.join(outputs, f"{name}-{tag}.npz")
        command, env = variant_command(
            name, variants[name], args, inputs, preset, checkpoint, output, cache
        )
        record = run_process(command, env, args.timeout)
        record.update(variant=name, files=count, tag=tag)
        return record, output

    print("warm-up (one file each: disk cache, encoder exports)", flush=True)
    warmup = {}
    for name in variants:
        record, _ = run(name, [one], "warmup", 1)
        warmup[name] = record
        print(f"  {name:22s} {record['wall_s']:7.2f} s", flush=True)
    rates = []  # the encoder's GFLOP/s and the matmul rate, before the rounds and after

    def measure_rates():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
        env["PYTHONPATH"] = os.path.abspath(args.ours_pythonpath) if args.ours_pythonpath else ROOT
        done = subprocess.run(
            [os.path.join(VENV_BIN, "python"), os.path.join(HERE, "encoder_rate.py"),
             f"--model={preset}"],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        rates.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"rates: {rates[-1]}", flush=True)

    if args.rates:
        measure_rates()
    names = list(variants)
    comparisons = {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r % 2:
            order = order[::-1]
        for name in order:
            record, output = run(name, [clips], f"all-{r}", args.files)
            record["round"] = r
            runs.append(record)
            print(
                f"round {r} {name:22s} {args.files} files {record['wall_s']:7.2f} s "
                f"(cpu {record['cpu_s']:.0f} s, rss {record['peak_rss_mib']:.0f} MiB, "
                f"load {record['loadavg_at_start'][0]:.2f})",
                flush=True,
            )
            if r == 0:
                comparisons[name] = output
        if args.startup:
            for name in order:
                record, _ = run(name, [one], f"one-{r}", 1)
                record["round"] = r
                runs.append(record)
                print(f"round {r} {name:22s} 1 file  {record['wall_s']:7.2f} s", flush=True)
    if args.rates:
        measure_rates()
    reference = comparisons["theirs"]
    agreement = {n: compare(o, reference) for n, o in comparisons.items() if n != "theirs"}
    summary = {}
    for name in names:
        walls = [x["wall_s"] for x in runs if x["variant"] == name and x["tag"].startswith("all")]
        ones = [x["wall_s"] for x in runs if x["variant"] == name and x["tag"].startswith("one")]
        summary[name] = {
            "all_files_median_s": statistics.median(walls),
            "all_files_runs_s": walls,
            "one_file_median_s": statistics.median(ones) if ones else None,
            "one_file_runs_s": ones,
        }
    base = summary["theirs"]
    clip_gflop = rates[0]["clip_10s_gflop"] if rates else None
    for name, s in summary.items():
        if clip_gflop and args.seconds == 10.0:  # the encoder's FLOPs / whole-process time
            s["whole_process_gflops"] = clip_gflop * args.files / s["all_files_median_s"]
        s["speedup_vs_theirs_all"] = base["all_files_median_s"] / s["all_files_median_s"]
        if s["one_file_median_s"]:
            s["speedup_vs_theirs_one"] = base["one_file_median_s"] / s["one_file_median_s"]
        if name in agreement:
            s["agreement"] = agreement[name]
            s["within_tolerance"] = agreement[name]["max_abs_diff"] <= args.tolerance
    print(
        f"\nmedians over {args.rounds} alternating rounds ({args.files} x {args.seconds:g} s "
        "clips; ratio = theirs / ours, > 1: ours faster)"
    )
    for name, s in summary.items():
        extra = ""
        if name in agreement:
            a = agreement[name]
            extra = f"  max|diff| {a['max_abs_diff']:.1e} (rel {a['max_rel_diff']:.1e})"
        one = s["one_file_median_s"]
        print(
            f"  {name:22s} {s['all_files_median_s']:7.2f} s  x{s['speedup_vs_theirs_all']:.2f}"
            + (f"   1 file {one:6.2f} s x{s['speedup_vs_theirs_one']:.2f}" if one else "")
            + extra
            + (f"  {s['whole_process_gflops']:.0f} GFLOP/s" if "whole_process_gflops" in s else "")
        )
    for measured in rates:
        print(f"  rates: {measured}")
    result = {
        "benchmark": "embed_vs_authors",
        "argv": sys.argv,
        "args": vars(args),
        "machine": machine(),
        "versions": versions(args),
        "variants": {
            n: {"kind": v[0], "backend": v[1], "extra": v[2], "env": v[3] if len(v) > 3 else {}}
            for n, v in variants.items()
        },
        "tolerance": args.tolerance,
        "warmup": warmup,
        "rates": rates,
        "runs": runs,
        "summary": summary,
    }
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.output}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
