"""Linear probe on real speech: FSDD digits, pretrained vs random init vs log-mel statistics.

    python -m benchmarks.fsdd_probe --model=runs/demo/backbone.keras \
        --fsdd_dir=../shared/data/fsdd/recordings --output=benchmarks/fsdd_probe.md

Builds `matpac_spoken_digit` from the 3,000 recordings (official split: repetitions 0-4 of
each speaker and digit, 300 clips, are the test set; 10% of the 2,700 others are held out for
validation in each run), then runs the `matpac-evaluate` protocol (runner.py: paper
and EVAR presets with their default runs and seeds, and the paper preset with a longer epoch
budget, --long_epochs) on three feature sources, in one process:
- the model's clip embeddings ("precise", SPEC section 6),
- the same architecture at random initialisation (seed --init_seed),
- the mean and std over time of the normalised log-mel (160 dims).
Writes a markdown report (machine, command, timings, table) and the CSV beside it.
"""

import dataclasses
import os
import platform
import shlex
import sys
import tempfile
import time

import keras
from absl import app, flags

from matpac_keras.evaluation import report, runner
from matpac_keras.evaluation.probe import PRESETS

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The pretrained .keras model (backbone or pretrainer).")
flags.DEFINE_string("fsdd_dir", None, "FSDD recordings/ folder (the builder's manual dir).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: a temporary folder).")
flags.DEFINE_string("work_dir", None, "Embedding caches and tables (default: temporary).")
flags.DEFINE_string("output", "benchmarks/fsdd_probe.md", "Markdown report; CSV beside it.")
flags.DEFINE_list("protocols", ["paper", "evar"], "Probe presets (evaluation/probe.py).")
flags.DEFINE_integer(
    "long_epochs", 1000, "Also run the paper preset with this epoch budget (0: do not)."
)
flags.DEFINE_integer("init_seed", 0, "Seed of the random initialisation.")
flags.DEFINE_string("model_note", "", "How the model was made, quoted in the report.")
flags.mark_flags_as_required(["model", "fsdd_dir"])


def machine() -> str:
    """CPU model and count, OS, Python, Keras and backend versions."""
    cpu = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    backend = keras.backend.backend()
    version = __import__(backend if backend != "torch" else "torch").__version__
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs (shared), {platform.platform()}; "
        f"Python {platform.python_version()}, Keras {keras.__version__}, "
        f"backend {backend} {version}"
    )


def cli_command(source: str, protocol: str, data_dir: str, output_dir: str) -> str:
    """The `matpac-evaluate` command that gives one row of the table (same data and cache)."""
    words = ["matpac-evaluate", "--task=matpac_spoken_digit", f"--features={source}"]
    if source != "logmel_stats":
        words.append(f"--model={FLAGS.model}")
    if source == "random_init":
        words.append(f"--init_seed={FLAGS.init_seed}")
    name, *overrides = protocol.split()
    words += [f"--protocol={name}"] + [f"--{o}" for o in overrides]
    words += [f"--data_dir={data_dir}", f"--manual_dir={FLAGS.fsdd_dir}"]
    words.append(f"--output_dir={output_dir}")
    return " ".join(shlex.quote(w) for w in words)


def main(argv):
    del argv
    data_dir = FLAGS.data_dir or tempfile.mkdtemp(prefix="fsdd_tfds_")
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="fsdd_probe_")
    presets = [(name, PRESETS[name]) for name in FLAGS.protocols]
    if FLAGS.long_epochs:
        long = dataclasses.replace(PRESETS["paper"], max_epochs=FLAGS.long_epochs)
        presets.append((f"paper max_epochs={FLAGS.long_epochs}", long))
    rows, timings, commands = [], [], []
    for source in ("model", "random_init", "logmel_stats"):
        for protocol, preset in presets:
            output_dir = os.path.join(work_dir, source)  # one embedding cache per source
            commands.append(cli_command(source, protocol, data_dir, output_dir))
            options = runner.Options(
                tasks=("spoken_digit",),
                output_dir=output_dir,
                model=FLAGS.model,
                source=source,
                init_seed=FLAGS.init_seed,
                data_dir=data_dir,
                manual_dirs=(FLAGS.fsdd_dir,),
                probe=preset,
                runs=runner.RUN_PRESETS[protocol.split()[0]],
                protocol=protocol,
            )
            start = time.perf_counter()
            rows += runner.evaluate(options)
            timings.append((f"{source}/{protocol}", time.perf_counter() - start))
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    command = f"KERAS_BACKEND={keras.backend.backend()} python -m benchmarks.fsdd_probe {args}"
    lines = [
        "# FSDD linear probe: pretrained vs random init vs log-mel statistics",
        "",
        "Free Spoken Digit Dataset, 3,000 real recordings (6 speakers x 10 digits x 50), 8 kHz "
        "resampled to 16 kHz; official split: 2,700 train (10% held out per run for "
        "validation), 300 test. Metric: test accuracy.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Model: `{FLAGS.model}`. {FLAGS.model_note}".rstrip(),
        "",
        f"Command (one run, all numbers below): `{command}`",
        "",
        "Wall time per feature source and protocol (the first protocol of each source "
        "includes building the features; the very first one also the dataset, if not built yet): "
        + ", ".join(f"{s} {t:.0f} s" for s, t in timings)
        + ".",
        "",
        report.markdown(rows),
        "The same rows one at a time with the command-line tool (each reuses the embedding "
        "cache in its `--output_dir`):",
        "",
        *(f"    {c}" for c in commands),
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(os.path.splitext(FLAGS.output)[0] + ".csv", "w", encoding="utf-8") as f:
        f.write(report.to_csv(rows))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
