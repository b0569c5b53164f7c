"""Probe accuracy against training compute: K masked views x mask shape (issue 22, item 3).

    nice -n 15 python -m benchmarks.pretrain_cost --seeds=0,1 --corpora=fsdd,demo \
        --steps=fsdd=262,demo=250 --budgets=0.333

Each run is `matpac-train` as a user runs it (`configs/demo.py:fsdd` on FSDD's train
recordings, `configs/demo.py` on the synthetic demo corpus), shortened to a step count, with
`config.model.num_masked_views` K in {1, 4, 8} and `config.model.mask_shape` "random" or
"inverse_block"; the run's `probe.json` gives the linear-probe accuracy (pretrained and random
init). The paper's recipe (K = 1, random) runs `--steps` steps; K = 1 inverse_block the same;
a K > 1 run gets the steps that spend `budget` times the baseline's training FLOPs
(`matpac_keras.flops.training_step_flops`, per crop, times the batch), for each of `--budgets`.
The schedules (warm-up, tau_t ramp) keep the demo's fractions of the run. Wall times are
measured here: `train_s` from the process start to the exported encoder (start-up, data
counting and tracing included), `total_s` with the probe.

Results go to `--output` (.json), one entry per run, written after each run; a restarted
script skips the runs already there. `--report` prints the table and writes the plot.
"""

import argparse
import functools
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
import types

from matpac_keras.config_file import load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs/demo.py"
CORPORA = {"fsdd": "fsdd", "demo": ""}  # corpus -> configs/demo.py variant
# Clips per epoch: FSDD's train recordings that hold one 32-frame crop (matpac-train logs
# "2700 clips ...: 2097 used"), the synthetic corpus's 2,000 clips.
EPOCH_CLIPS = {"fsdd": 2097, "demo": 2000}
VIEWS = (1, 4, 8)
SHAPES = ("random", "inverse_block")


def corpus_config(corpus: str):
    return load_config(DEMO, CORPORA[corpus] or None)


@functools.cache
def step_flops(corpus: str, views: int) -> float:
    """Training FLOPs of one step (the whole batch) of this corpus's config with K views."""
    from matpac_keras.flops import training_step_flops
    from matpac_keras.training.experiment import build_backbone

    config = corpus_config(corpus)
    model = types.SimpleNamespace(**config.model.to_dict())
    model.num_masked_views = views  # the count does not depend on the mask shape
    model.backbone = build_backbone(config.model)
    per_crop = training_step_flops(model, config.data.crop_frames)
    return per_crop * config.train.global_batch_size


def run_plan(corpora, seeds, baseline_steps: dict, budgets) -> list:
    """The runs, in order: per corpus, for each seed the baseline and the K > 1 runs at the
    first budget; then K = 1 inverse_block and the other budgets."""
    plan = []
    for corpus in corpora:
        base = step_flops(corpus, 1)
        for seed in seeds:
            for views in VIEWS:
                for shape in SHAPES:
                    for budget in (1.0,) if views == 1 else budgets:
                        flops = step_flops(corpus, views)
                        steps = baseline_steps[corpus]
                        if views > 1:
                            steps = math.floor(budget * steps * base / flops)
                        plan.append(
                            dict(
                                corpus=corpus,
                                seed=seed,
                                views=views,
                                mask_shape=shape,
                                budget=budget,
                                steps=steps,
                                baseline_steps=baseline_steps[corpus],
                                gflops_per_step=flops / 1e9,
                                gflops=steps * flops / 1e9,
                            )
                        )
    first = budgets[0]
    later = [
        r
        for r in plan
        if (r["views"] == 1 and r["mask_shape"] != "random")
        or (r["views"] > 1 and r["budget"] != first)
    ]
    return [r for r in plan if r not in later] + later


def run_key(run: dict) -> str:
    return "{corpus}/seed{seed}/K{views}/{mask_shape}/steps{steps}".format(**run)


def launch(run: dict, workdir: pathlib.Path) -> dict:
    """One `matpac-train` run; returns its probe accuracies and wall times."""
    config = corpus_config(run["corpus"])
    clips, batch = EPOCH_CLIPS[run["corpus"]], config.train.global_batch_size
    epochs = (run["steps"] + 0.5) * batch / clips  # floor(epochs * clips / batch) = steps
    scale = epochs / config.train.epochs  # warm-up and tau_t ramp: the demo's share of the run
    variant = CORPORA[run["corpus"]]
    command = [
        str(pathlib.Path(sys.executable).with_name("matpac-train")),
        f"--config={DEMO}" + (f":{variant}" if variant else ""),
        f"--workdir={workdir}",
        f"--config.seed={run['seed']}",
        f"--config.model.num_masked_views={run['views']}",
        f"--config.model.mask_shape={run['mask_shape']}",
        f"--config.data.num_examples={clips}",
        f"--config.train.epochs={epochs!r}",
        f"--config.train.warmup_epochs={config.train.warmup_epochs * scale!r}",
        f"--config.train.teacher_temperature_epochs="
        f"{config.train.teacher_temperature_epochs * scale!r}",
        f"--config.train.log_every={1}",
        f"--config.train.checkpoint_every={100_000}",
        "--config.train.verbose=0",
    ]
    load = os.getloadavg()[0]
    start = time.time()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    total = time.time() - start
    train = (workdir / "backbone.keras").stat().st_mtime - start
    probe = json.loads((workdir / "probe.json").read_text())
    last = (workdir / "metrics.jsonl").read_text().strip().splitlines()[-1]
    steps_done = json.loads(last)["step"]
    if steps_done != run["steps"]:
        raise RuntimeError(f"{run_key(run)}: ran {steps_done} steps")
    return dict(
        accuracy=probe["pretrained"]["accuracy"],
        random_init_accuracy=probe["random_init"]["accuracy"],
        final_loss=json.loads(last)["loss"],
        train_s=round(train, 1),
        total_s=round(total, 1),
        load_average=round(load, 2),
        command=" ".join(command[1:]),
    )


def summarise(results: dict) -> list:
    """Rows of mean +- sd over seeds per (corpus, K, shape, budget)."""
    groups = {}
    for run in results.values():
        key = (run["corpus"], run["views"], run["mask_shape"], run["budget"])
        groups.setdefault(key, []).append(run)
    rows = []
    for (corpus, views, shape, budget), runs in sorted(groups.items()):
        accuracies = [r["accuracy"] for r in runs]
        rows.append(
            dict(
                corpus=corpus,
                views=views,
                mask_shape=shape,
                budget=budget,
                steps=runs[0]["steps"],
                gflops=runs[0]["gflops"],
                train_s=statistics.mean(r["train_s"] for r in runs),
                mean=statistics.mean(accuracies),
                sd=statistics.stdev(accuracies) if len(runs) > 1 else float("nan"),
                seeds=len(runs),
                random_init=statistics.mean(r["random_init_accuracy"] for r in runs),
            )
        )
    return rows


def report(results: dict, plot_path: pathlib.Path) -> str:
    rows = summarise(results)
    lines = [
        "| corpus | K | mask | FLOP budget | steps | training GFLOPs | train wall s "
        "| probe accuracy % (mean +- sd) | seeds | random init % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['views']} | {r['mask_shape']} | {r['budget']:.3g} "
            f"| {r['steps']} | {r['gflops']:,.0f} | {r['train_s']:.0f} "
            f"| {100 * r['mean']:.1f} +- {100 * r['sd']:.1f} | {r['seeds']} "
            f"| {100 * r['random_init']:.1f} |"
        )
    _plot(rows, plot_path)
    return "\n".join(lines)


def _plot(rows: list, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = sorted({r["corpus"] for r in rows})
    figure, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4.2), squeeze=False)
    markers = {"random": "o", "inverse_block": "s"}
    colours = {1: "black", 4: "tab:blue", 8: "tab:orange"}
    for axis, corpus in zip(axes[0], corpora, strict=True):
        for r in (r for r in rows if r["corpus"] == corpus):
            axis.errorbar(
                r["gflops"],
                100 * r["mean"],
                yerr=100 * r["sd"],
                marker=markers[r["mask_shape"]],
                color=colours[r["views"]],
                capsize=3,
                label=f"K={r['views']}, {r['mask_shape']}",
            )
        base = [r for r in rows if r["corpus"] == corpus and r["views"] == 1]
        axis.axhline(100 * base[0]["random_init"], color="grey", ls=":", label="random init")
        axis.set_xscale("log")
        axis.set_xlabel("training GFLOPs (analytic)")
        axis.set_ylabel("linear-probe accuracy %")
        axis.set_title(corpus)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axis.legend(unique.values(), unique.keys(), fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--corpora", default="fsdd,demo")
    parser.add_argument(
        "--steps", default="fsdd=262,demo=250", help="the baseline's steps per corpus"
    )
    parser.add_argument("--budgets", default="0.333", help="FLOP shares of the baseline, K > 1")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/pretrain_cost.json"))
    parser.add_argument("--workdir", default="/tmp/pretrain_cost")
    parser.add_argument("--report", action="store_true", help="print the table and plot only")
    args = parser.parse_args()
    output = pathlib.Path(args.output)
    results = json.loads(output.read_text()) if output.exists() else {}
    if not args.report:
        steps = {k: int(v) for k, v in (item.split("=") for item in args.steps.split(","))}
        plan = run_plan(
            args.corpora.split(","),
            [int(s) for s in args.seeds.split(",")],
            steps,
            [float(b) for b in args.budgets.split(",")],
        )
        for run in plan:
            key = run_key(run)
            if key in results:
                continue
            print(f"running {key} ({run['gflops']:,.0f} GFLOPs)", flush=True)
            workdir = pathlib.Path(args.workdir) / key
            if workdir.exists():  # an interrupted run: start it again
                shutil.rmtree(workdir)
            results[key] = {**run, **launch(run, workdir)}
            output.write_text(json.dumps(results, indent=1) + "\n")
            print(f"  accuracy {results[key]['accuracy']:.3f}, {results[key]['total_s']} s")
    print(report(results, output.with_suffix(".png")))


if __name__ == "__main__":
    main()
