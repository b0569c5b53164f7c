"""Learning-curve parity: `matpac-train` beside the authors' own training code (issue 22 item 1).

For each corpus and seed, pretraining runs of the same small MATPAC with the same recipe in
optimizer steps (`RECIPE`), one per side: "authors", `benchmarks/authors_pretrain.py` in the
authors' environment (their model, criterion, data path and a plain loop doing what fairseq's
trainer does; see its docstring; one torch thread: with two on these two shared cores, OpenMP's
spinning made their step 7x slower); "ours", `matpac-train` on the folder as a user runs it (its
CLI, in a subprocess, TensorFlow backend unless KERAS_BACKEND says otherwise; its default
`model.teacher_init="independent"` initialises the teachers as the official code does); and
"ours_copy", the same with `--config.model.teacher_init=copy` (the teachers start as copies of
the students, as SPEC section 3 suggests, and as our default was until this comparison showed
the difference). Then every final encoder
(and the same architecture at random init, one per seed) is scored by the same linear probe
(`matpac_keras.training.probe`: precise clip embeddings, logistic regression) on each labelled
task: FSDD's digits (train recordings -> the 300 test recordings), the synthetic demo classes
(400 -> 400 held-out clips) and, when the corpus is there, General MIDI instrument families
(`benchmarks/corpora/gm_notes.py`). The authors' encoders are read with our converter.

    python benchmarks/pretrain_vs_authors.py --ref /work/authors/ref \
        --authors-python /work/authors/venv/bin/python --work /work/authors/pva \
        --corpora fsdd,gm_notes --gm-notes /work/data/gm_notes --seeds 0 1 2

Finished runs are kept in `--work` and skipped when the command is run again. Writes
`--output`.json (recipe, every run's metric rows, every probe score, the comparisons) and
`--output`.png (the loss curves and collapse monitors, mean +- sd over seeds). A monitor (its
mean over the last quarter of the run) "differs" when Welch's t-test over seeds gives p < 0.05:
a flag to explain, uncorrected. The probe accuracies of a side, all corpora and tasks together,
are one family of tests: one "differs" when Welch's p passes Holm's step-down at 0.05 over the
family. The last line printed is `probe accuracy (mean +- sd over N seeds): authors A +- a, ours
B +- b; verdict: agree|differ` for the first corpus' first probe; the verdict is "differ" if
any of ours' probe comparisons differs.
"""

import os

USER_ENVIRONMENT = dict(os.environ)  # what the training subprocesses get
# One BLAS thread: the probe's L-BFGS ran 3.5x slower with two on these two shared cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.corpora.gm_notes, the notes' probe source
SHARED = ROOT.parent / "shared"
FSDD = SHARED / "data" / "fsdd" / "recordings"
AUTHORS_SCRIPT = ROOT / "benchmarks" / "authors_pretrain.py"
# The recipe both sides run, in optimizer steps. The model is configs/demo.py:fsdd's, with the
# classification head's bottleneck at 256 (the authors' Cls_Head has no argument for it).
RECIPE = {
    "steps": 500,
    "warmup_steps": 40,
    "tau_steps": 80,
    "batch_size": 64,
    "crop_frames": 32,
    "lr": 5e-4,
    "final_lr": 0.0,
    "weight_decay": 0.05,
    "encoder_ema": [0.996, 1.0],
    "head_ema": [0.996, 1.0],
    "embed_dim": 128,
    "depth": 4,
    "num_heads": 4,
    "predictor_dim": 128,
    "predictor_depth": 1,
    "predictor_heads": 4,
    "head_hidden_dim": 512,
    "head_bottleneck_dim": 256,
    "num_classes": 256,
    "log_every": 25,
}
MONITORS = ("loss_pred", "loss_cls", "teacher_entropy", "center_norm")
SIDES = ("authors", "ours", "ours_copy")
COLORS = {"authors": "tab:orange", "ours": "tab:blue", "ours_copy": "tab:green"}


def corpora(args) -> dict:
    """name -> (training audio folder, excluded file-name patterns)."""
    table = {"fsdd": (str(FSDD), "*_[0-4].wav")}
    if args.gm_notes:
        table["gm_notes"] = (str(pathlib.Path(args.gm_notes) / "train"), "")
    return table


def probes(args) -> dict:
    """name -> `config.evaluate.probe_source` and the `config.data.source` it reads."""
    table = {
        "fsdd_digits": ("fsdd_digits", str(FSDD)),
        "synthetic": ("synthetic", None),
    }
    if args.gm_notes:
        table["gm_families"] = ("benchmarks.corpora.gm_notes:probe_data", args.gm_notes)
    return table


def our_command(recipe: dict, audio: str, exclude: str, seed: int, workdir, teacher_init):
    """`matpac-train` with the recipe: epochs of `batch_size` clips, so that the schedules given
    in epochs are the recipe's step counts (data.num_examples only sets that conversion)."""
    r = recipe
    overrides = {
        "seed": seed,
        "data.source": audio,
        "data.exclude": exclude,
        "data.crop_frames": r["crop_frames"],
        "data.num_examples": r["batch_size"],
        "model.max_frames": r["crop_frames"],
        "model.embed_dim": r["embed_dim"],
        "model.depth": r["depth"],
        "model.num_heads": r["num_heads"],
        "model.predictor_dim": r["predictor_dim"],
        "model.predictor_depth": r["predictor_depth"],
        "model.predictor_heads": r["predictor_heads"],
        "model.head_hidden_dim": r["head_hidden_dim"],
        "model.head_bottleneck_dim": r["head_bottleneck_dim"],
        "model.num_classes": r["num_classes"],
        "model.encoder_ema": "({}, {})".format(*r["encoder_ema"]),
        "model.head_ema": "({}, {})".format(*r["head_ema"]),
        "train.global_batch_size": r["batch_size"],
        "train.epochs": r["steps"],
        "train.warmup_epochs": r["warmup_steps"],
        "train.teacher_temperature_epochs": r["tau_steps"],
        "train.log_every": r["log_every"],
        "train.checkpoint_every": r["steps"] // 2,
        "train.tensorboard": False,
        "optim.lr": r["lr"],
        "optim.final_lr": r["final_lr"],
        "optim.weight_decay": r["weight_decay"],
        "evaluate.linear_probe": False,
    }
    if teacher_init is not None:
        overrides["model.teacher_init"] = teacher_init
    command = [
        str(pathlib.Path(sys.executable).with_name("matpac-train")),
        "--config=configs/demo.py:fsdd",
        f"--workdir={workdir}",
    ]
    return command + [f"--config.{k}={v}" for k, v in overrides.items()]


def authors_command(args, recipe: dict, audio: str, exclude: str, seed: int, output, cache):
    r = recipe
    command = [
        args.authors_python,
        str(AUTHORS_SCRIPT),
        "--ref",
        args.ref,
        "--audio",
        audio,
        "--exclude",
        exclude,
        "--cache",
        str(cache),
        "--output",
        str(output),
        "--seed",
        str(seed),
        "--steps",
        str(r["steps"]),
        "--warmup-steps",
        str(r["warmup_steps"]),
        "--tau-steps",
        str(r["tau_steps"]),
        "--batch-size",
        str(r["batch_size"]),
        "--crop-frames",
        str(r["crop_frames"]),
        "--lr",
        str(r["lr"]),
        "--weight-decay",
        str(r["weight_decay"]),
        "--encoder-ema",
        *map(str, r["encoder_ema"]),
        "--head-ema",
        *map(str, r["head_ema"]),
        "--embed-dim",
        str(r["embed_dim"]),
        "--depth",
        str(r["depth"]),
        "--num-heads",
        str(r["num_heads"]),
        "--predictor-dim",
        str(r["predictor_dim"]),
        "--predictor-depth",
        str(r["predictor_depth"]),
        "--predictor-heads",
        str(r["predictor_heads"]),
        "--head-hidden-dim",
        str(r["head_hidden_dim"]),
        "--num-classes",
        str(r["num_classes"]),
        "--log-every",
        str(r["log_every"]),
        "--threads",
        str(args.authors_threads),
    ]
    if r["head_bottleneck_dim"] != 256:
        raise ValueError("the authors' Cls_Head has a fixed bottleneck of 256")
    return command


def read_rows(path: pathlib.Path) -> list:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:  # both sides: the teacher's entropy from its perplexity
        row.setdefault("teacher_entropy", math.log(row["teacher_perplexity"]))
    return rows


def train(args, recipe, corpus, audio, exclude, side, seed) -> dict:
    """Runs one side's training (skipped when already done); returns rows, time, encoder."""
    folder = pathlib.Path(args.work) / corpus / side / f"seed{seed}"
    done = folder / ("encoder.pt" if side == "authors" else "backbone.keras")
    seconds_file = folder / "wall_seconds.txt"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        if side != "authors":
            teacher_init = "copy" if side == "ours_copy" else None  # None: the default
            command = our_command(recipe, audio, exclude, seed, folder, teacher_init)
        else:
            cache = pathlib.Path(args.work) / "authors_logmel" / corpus
            command = authors_command(args, recipe, audio, exclude, seed, folder, cache)
        print(f"[{corpus} {side} seed {seed}] training", flush=True)
        started = time.perf_counter()
        with open(folder / "log.txt", "w") as log:
            subprocess.run(
                command,
                cwd=ROOT,
                env=USER_ENVIRONMENT,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )
        seconds_file.write_text(f"{time.perf_counter() - started:.1f}\n")
    return {
        "rows": read_rows(folder / "metrics.jsonl"),
        "wall_seconds": float(seconds_file.read_text()) if seconds_file.exists() else None,
        "encoder": str(done),
        "folder": str(folder),
    }


def cached_scores(path: pathlib.Path, score) -> dict:
    """`score()`, kept in `path` (JSON) so that a rerun does not probe again."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(score()) + "\n")
    return json.loads(path.read_text())


def load_encoder(path: str):
    from matpac_keras.saving import load_backbone

    if path.endswith(".pt"):
        from matpac_keras.convert import model_from_state_dict
        from matpac_keras.torch_checkpoint import find_state_dict, load_torch_checkpoint

        state = find_state_dict(load_torch_checkpoint(path))
        return model_from_state_dict(state, num_heads=RECIPE["num_heads"])
    return load_backbone(path)


def random_encoder(seed: int):
    import keras

    from matpac_keras.backbone import MatpacBackbone

    keras.utils.set_random_seed(seed)
    backbone = MatpacBackbone.from_variant(
        "tiny",
        embed_dim=RECIPE["embed_dim"],
        depth=RECIPE["depth"],
        num_heads=RECIPE["num_heads"],
        max_frames=RECIPE["crop_frames"],
        dtype="float32",
    )
    backbone.build(None)
    return backbone


class Prober:
    """Probe data loaded once per task; `score(encoder)` -> {task: accuracy}."""

    def __init__(self, table: dict):
        from ml_collections import config_dict

        from matpac_keras.training.probe import load_probe_data

        self.data = {}
        for name, (probe_source, data_source) in table.items():
            config = config_dict.ConfigDict(
                {
                    "seed": 0,
                    "data": {"source": data_source, "synthetic": {"seconds": 2.5}},
                    "evaluate": {"probe_source": probe_source, "clips_per_class": 40},
                }
            )
            self.data[name] = load_probe_data(config)

    def score(self, encoder) -> dict:
        from matpac_keras.evaluation.logistic_regression import probe_accuracy
        from matpac_keras.training.probe import embed

        scores = {}
        for name, data in self.data.items():
            result = probe_accuracy(
                embed(encoder, data.train_waveforms),
                data.train_labels,
                embed(encoder, data.test_waveforms),
                data.test_labels,
                seed=0,
            )
            scores[name] = result.accuracy
        return scores


def mean_sd(values: list) -> tuple:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def welch(a: list, b: list) -> dict:
    """Welch's t-test of two samples: mean difference and p-value ("differ" when p < 0.05)."""
    from scipy import stats

    difference = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return {"difference": difference, "p": None, "verdict": "too few seeds"}
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        p = 1.0 if difference == 0 else 0.0
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return {"difference": difference, "p": p, "verdict": "differ" if p < 0.05 else "agree"}


def compare(corpus: str, side: str, what: str, runs: dict, value) -> dict:
    """`value(run)` of the authors' runs against `side`'s: means, sds and Welch's test."""
    authors = [value(run) for run in runs["authors"].values()]
    ours = [value(run) for run in runs[side].values()]
    return {
        "corpus": corpus,
        "side": side,
        "what": what,
        **welch(authors, ours),
        "authors": mean_sd(authors),
        "ours": mean_sd(ours),
    }


def holm(family: list, alpha: float = 0.05) -> None:
    """Holm's step-down over a family of comparisons: sets each one's "verdict"."""
    ranked = sorted((c for c in family if c["p"] is not None), key=lambda c: c["p"])
    rejecting = True
    for rank, comparison in enumerate(ranked):
        rejecting = rejecting and comparison["p"] <= alpha / (len(ranked) - rank)
        comparison["verdict"] = "differ" if rejecting else "agree"
        comparison["holm_threshold"] = alpha / (len(ranked) - rank)


def tail_mean(rows: list, key: str, share: float = 0.25) -> float:
    """The mean of a monitor over the last `share` of the run's rows."""
    kept = rows[-max(1, round(len(rows) * share)) :]
    return statistics.fmean(row[key] for row in kept)


def schedule_differences(runs: dict) -> dict:
    """Per corpus and side, the largest difference from the authors' logged learning rate and
    teacher temperature, row by row (the steps logged must be the same)."""
    differences = {}
    for corpus, sides in runs.items():
        differences[corpus] = {}
        for side, side_runs in sides.items():
            if side == "authors":
                continue
            worst = {"lr": 0.0, "teacher_temp": 0.0}
            for seed, run in side_runs.items():
                theirs = sides["authors"][seed]["rows"]
                if [r["step"] for r in run["rows"]] != [r["step"] for r in theirs]:
                    raise ValueError(f"{corpus} {side} seed {seed}: other steps logged")
                for key in worst:
                    worst[key] = max(
                        worst[key],
                        *(abs(a[key] - b[key]) for a, b in zip(theirs, run["rows"], strict=True)),
                    )
            differences[corpus][side] = worst
    return differences


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(results["runs"])
    figure, axes = plt.subplots(
        len(names), len(MONITORS), figsize=(4 * len(MONITORS), 3.2 * len(names)), squeeze=False
    )
    for row, corpus in enumerate(names):
        for column, key in enumerate(MONITORS):
            axis = axes[row][column]
            for side in results["runs"][corpus]:
                color = COLORS[side]
                runs = list(results["runs"][corpus][side].values())
                if not runs:
                    continue
                steps = np.array([r["step"] for r in runs[0]["rows"]])
                values = np.array([[r[key] for r in run["rows"]] for run in runs])
                mean, sd = values.mean(0), values.std(0, ddof=1) if len(runs) > 1 else 0 * steps
                label = f"{side} ({len(runs)} seeds)"
                axis.plot(steps, mean, color=color, label=label)
                axis.fill_between(steps, mean - sd, mean + sd, color=color, alpha=0.25)
            axis.set_title(f"{corpus}: {key}")
            axis.set_xlabel("step")
            if row == 0 and column == 0:
                axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="snapshot of github.com/aurianworld/matpac")
    parser.add_argument(
        "--authors-python",
        required=True,
        help="Python of the authors' environment (torch, torchaudio, timm)",
    )
    parser.add_argument(
        "--authors-threads",
        type=int,
        default=1,
        help="torch threads of the authors' runs (default: %(default)s)",
    )
    parser.add_argument("--work", required=True, help="folder for the runs (kept, resumable)")
    parser.add_argument("--corpora", default="fsdd", help="comma-separated: fsdd, gm_notes")
    parser.add_argument(
        "--gm-notes",
        default=None,
        help="the General MIDI notes corpus (benchmarks/corpora/gm_notes.py)",
    )
    parser.add_argument(
        "--sides",
        default=",".join(SIDES),
        help="comma-separated, 'authors' first (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--steps",
        type=int,
        default=RECIPE["steps"],
        help="optimizer steps (warm-up and tau ramp scale with it)",
    )
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "pretrain_vs_authors"))
    args = parser.parse_args(argv)

    recipe = dict(RECIPE)
    if args.steps != RECIPE["steps"]:
        scale = args.steps / RECIPE["steps"]
        recipe["steps"] = args.steps
        recipe["warmup_steps"] = max(1, round(RECIPE["warmup_steps"] * scale))
        recipe["tau_steps"] = max(1, round(RECIPE["tau_steps"] * scale))
        recipe["log_every"] = max(1, min(RECIPE["log_every"], args.steps // 8))
        while args.steps % (2 * recipe["log_every"]):
            recipe["log_every"] -= 1
    table = corpora(args)
    wanted = [c.strip() for c in args.corpora.split(",") if c.strip()]
    sides = [c.strip() for c in args.sides.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in table] + [s for s in sides if s not in SIDES]
    if unknown or sides[:1] != ["authors"]:
        parser.error(f"unknown {unknown} (gm_notes needs --gm-notes), or 'authors' not first")

    results = {
        "recipe": recipe,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "runs": {},
    }
    work = pathlib.Path(args.work)
    prober = Prober(probes(args))
    results["random_init"] = {
        str(s): cached_scores(
            work / "random_init" / f"seed{s}.json", lambda s=s: prober.score(random_encoder(s))
        )
        for s in args.seeds
    }
    for corpus in wanted:
        audio, exclude = table[corpus]
        results["runs"][corpus] = {side: {} for side in sides}
        for seed in args.seeds:
            for side in sides:
                run = train(args, recipe, corpus, audio, exclude, side, seed)
                run["probe"] = cached_scores(
                    pathlib.Path(run["folder"]) / "probe.json",
                    lambda run=run: prober.score(load_encoder(run["encoder"])),
                )
                print(f"[{corpus} {side} seed {seed}] probe {run['probe']}", flush=True)
                results["runs"][corpus][side][str(seed)] = run

    comparisons, lines = [], []
    for corpus in wanted:
        runs = results["runs"][corpus]
        for side in sides[1:]:
            for task in prober.data:
                random = [scores[task] for scores in results["random_init"].values()]
                comparisons.append(
                    compare(
                        corpus,
                        side,
                        f"probe {task}",
                        runs,
                        lambda run, task=task: run["probe"][task],
                    )
                    | {"random_init": mean_sd(random)}
                )
            for key in MONITORS:
                comparisons.append(
                    compare(
                        corpus,
                        side,
                        f"last quarter {key}",
                        runs,
                        lambda run, key=key: tail_mean(run["rows"], key),
                    )
                )
    for side in sides[1:]:
        holm([c for c in comparisons if c["side"] == side and c["what"].startswith("probe")])
    results["comparisons"] = comparisons
    results["schedules"] = schedule_differences(results["runs"])
    for corpus, sides_ in results["schedules"].items():
        for side, worst in sides_.items():
            print(
                f"{corpus} {side}: logged schedules vs the authors', max |difference|: "
                + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
            )
    for c in comparisons:
        (a, sa), (b, sb) = c["authors"], c["ours"]
        random = ""
        if "random_init" in c:
            random = " | random init {:.4f} +- {:.4f}".format(*c["random_init"])
        p = "n/a" if c["p"] is None else f"{c['p']:.3f}"
        lines.append(
            f"{c['corpus']:8s} {c['side']:16s} {c['what']:28s} authors {a:.4f} +- "
            f"{sa:.4f} | {c['side']} {b:.4f} +- {sb:.4f}{random} | p {p}: "
            f"{c['verdict']}"
        )
    print("\n".join(lines))
    pathlib.Path(args.output + ".json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.output + ".png")
    ours = [c for c in comparisons if c["side"] == "ours" and c["what"].startswith("probe")]
    if not ours:
        return
    verdict = "differ" if any(c["verdict"] == "differ" for c in ours) else "agree"
    (a, sa), (b, sb) = ours[0]["authors"], ours[0]["ours"]
    print(f"{ours[0]['corpus']} corpus, {ours[0]['what']} (verdict over every probe and corpus):")
    print(
        f"probe accuracy (mean +- sd over {len(args.seeds)} seeds): authors {100 * a:.1f} +- "
        f"{100 * sa:.1f}, ours {100 * b:.1f} +- {100 * sb:.1f}; verdict: {verdict}"
    )


if __name__ == "__main__":
    main()
