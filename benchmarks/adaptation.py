"""Further pre-training (`matpac-train --config.init_from`) against training from scratch.

    nice -n 15 python -m benchmarks.adaptation --steps=300 --output=benchmarks/adaptation.md

Two corpora, the demo's: the synthetic sounds (`configs/demo.py`) and FSDD's 2,700 train
recordings (`configs/demo.py:fsdd`, with `--config.model.max_frames=128` so that its encoder
and the synthetic one share one architecture and each can start the other's run). Four runs of
`matpac-train`, each `--steps` optimizer steps (`train.epochs` from the corpus size and batch,
warm-up a tenth of the run, tau_t ramp a fifth), as a user runs them:
  scratch on each corpus (random init), then on each corpus the other's encoder adapted
  (`--config.init_from=<the other run>/backbone.keras`).
Each run's own probe (`config.evaluate.linear_probe`: the synthetic probe's held-out clips, or
FSDD's 300 test recordings) scores the trained encoder, the same architecture at random init
and, for the adapted runs, the encoder it started from (un-adapted). One seed (config.seed 0).
Writes the figures as JSON and a markdown report (command, machine, table, wall times). A run
already finished in --workdir (its benchmark_run.json) is reused.
"""

import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 300, "Optimizer steps of every run.", lower_bound=20)
flags.DEFINE_string("workdir", "runs/adaptation", "Where the four runs' workdirs go.")
flags.DEFINE_string("output", "benchmarks/adaptation.md", "Markdown report; JSON beside it.")

ROOT = pathlib.Path(__file__).resolve().parents[1]
# name -> (config, overrides, clips per epoch, batch)
CORPORA = {
    "synthetic": ("configs/demo.py", (), 2000, 32),
    "fsdd": ("configs/demo.py:fsdd", ("--config.model.max_frames=128",), 2700, 64),
}
OTHER = {"synthetic": "fsdd", "fsdd": "synthetic"}


def _train(name: str, corpus: str, init_from: str | None) -> dict:
    """One `matpac-train` run of --steps steps on `corpus`; its probe.json, wall time, stdout."""
    config, overrides, clips, batch = CORPORA[corpus]
    epochs = (FLAGS.steps + 0.5) * batch / clips  # floor(epochs * clips / batch) = steps
    workdir = pathlib.Path(FLAGS.workdir) / name
    command = [
        "matpac-train",
        f"--config={config}",
        f"--workdir={workdir}",
        *overrides,
        f"--config.data.num_examples={clips}",
        f"--config.train.epochs={epochs:.8g}",
        f"--config.train.warmup_epochs={epochs / 10:.6g}",
        f"--config.train.teacher_temperature_epochs={epochs / 5:.6g}",
        "--config.train.verbose=0",
        "--config.train.tensorboard=False",
        *([f"--config.init_from={init_from}"] if init_from else []),
    ]
    record = workdir / "benchmark_run.json"
    if record.is_file():  # finished by an earlier call with the same --workdir: reused
        return json.loads(record.read_text())
    print("$", shlex.join(command), flush=True)
    started = time.monotonic()
    module = [sys.executable, "-m", "matpac_keras.cli.train", *command[1:]]
    done = subprocess.run(
        module,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    print(done.stdout, flush=True)
    run = dict(
        command=shlex.join(command),
        seconds=round(time.monotonic() - started, 1),
        stdout=done.stdout.strip().splitlines(),
        probe=json.loads((workdir / "probe.json").read_text()),
        backbone=str(workdir / "backbone.keras"),
    )
    record.write_text(json.dumps(run, indent=1) + "\n")
    return run


def _accuracy(probe: dict, key: str) -> float:
    return round(100 * probe[key]["accuracy"], 1)


def _table(runs: dict) -> tuple[list[dict], str]:
    rows, lines = [], []
    lines.append(
        "| target corpus (its probe) | start: the other corpus's encoder, un-adapted | "
        "adapted (init_from + steps) | from scratch (same steps) | random init |"
    )
    lines.append("|---|---|---|---|---|")
    for corpus in CORPORA:
        adapted, scratch = runs[f"{OTHER[corpus]}_to_{corpus}"], runs[f"scratch_{corpus}"]
        row = dict(
            target=corpus,
            description=scratch["probe"]["description"],
            start=_accuracy(adapted["probe"], "init_from"),
            adapted=_accuracy(adapted["probe"], "pretrained"),
            scratch=_accuracy(scratch["probe"], "pretrained"),
            random_init=_accuracy(scratch["probe"], "random_init"),
            chance=round(100 * scratch["probe"]["chance"], 1),
        )
        rows.append(row)
        lines.append(
            f"| {corpus} ({row['description']}) | {row['start']} % ({OTHER[corpus]} encoder) | "
            f"**{row['adapted']} %** | {row['scratch']} % | {row['random_init']} % |"
        )
    return rows, "\n".join(lines)


def _machine() -> str:
    """CPU model and count, OS, Python and the versions the runs used (TensorFlow backend)."""
    with open("/proc/cpuinfo", encoding="utf-8") as file:
        cpus = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("keras", "tensorflow"))
    return (
        f"{cpus[0] if cpus else platform.processor()}, {os.cpu_count()} logical CPUs (shared "
        f"with other work), {platform.platform()}; Python {platform.python_version()}, "
        f"{versions}, KERAS_BACKEND=tensorflow"
    )


def main(argv):
    del argv
    runs = {}
    for corpus in CORPORA:  # the starting encoders: scratch runs, which are also baselines
        runs[f"scratch_{corpus}"] = _train(f"scratch_{corpus}", corpus, None)
    for corpus in CORPORA:
        start = runs[f"scratch_{OTHER[corpus]}"]["backbone"]
        runs[f"{OTHER[corpus]}_to_{corpus}"] = _train(f"{OTHER[corpus]}_to_{corpus}", corpus, start)
    rows, table = _table(runs)
    output = pathlib.Path(FLAGS.output)
    command = shlex.join(["python", "-m", "benchmarks.adaptation", *sys.argv[1:]])
    result = dict(command=command, machine=_machine(), steps=FLAGS.steps, rows=rows, runs=runs)
    output.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    walls = ", ".join(f"{name} {run['seconds']:.0f} s" for name, run in runs.items())
    output.write_text(
        "# Adapting a pretrained encoder to another corpus (`--config.init_from`)\n\n"
        f"Command: `{command}` (under `nice -n 15`)\n\nMachine: {result['machine']}\n\n"
        f"Every run: {FLAGS.steps} optimizer steps of the demo recipe on the target corpus; "
        "linear-probe accuracy on the target's probe (the run's probe.json), one seed.\n\n"
        f"{table}\n\nWall times (training and probes): {walls}.\n\n"
        "Commands of the runs:\n\n" + "".join(f"- `{run['command']}`\n" for run in runs.values())
    )
    print(table)


if __name__ == "__main__":
    app.run(main)
