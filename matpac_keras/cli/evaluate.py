r"""`matpac-evaluate`: linear-probe evaluation of a MATPAC model on downstream tasks.

    matpac-evaluate --task=matpac_esc50,gtzan --model=matpac.keras [--output_dir=eval/] \
        --data_dir=~/tensorflow_datasets [--manual_dir=/data/ESC-50-master,/data/gtzan]

For each task: clip embeddings of every split (computed once, cached in --cache_dir keyed by the
model file's hash, task, mode and input length), then the probe protocol (evaluation/probe.py,
protocol.py): `--protocol=paper` (default: batch 128, Adam 1e-4, at most 200 epochs, best
validation loss, 5 runs with seeds 0-4, raw embeddings) or `--protocol=evar` (standardised
embeddings, lr 3e-5, batch 200, best validation metric, patience 20, 3 runs with seeds 42-44);
each probe flag (--learning_rate, --batch_size, ...) overrides its preset value. The numeric
flags are checked against their ranges (`EVALUATION` in matpac_keras/config_ranges.py) before any
work; NaN and infinities are refused.
Prints a table of mean +- 95% CI per task and writes results.md / results.csv (refused if they
exist, unless --overwrite; written atomically). The outputs are checked and the model is loaded
before any TFDS dataset is built.

`--features=random_init` embeds with the model's architecture at random initialisation
(`--init_seed`), `--features=logmel_stats` with the log-mel mean and std (no model).
TFDS datasets are prepared on first use from --manual_dir (TensorFlow and TFDS required).
`--save_classifiers=DIR` also writes, per task, `DIR/<task>/`: a classifier preset (the model's
encoder + the probe of the first run, with the task's labels) that `matpac-tag` and
`matpac-export` take.

Temporal support (TS) sweep: `--temporal_support=0.5,1,2,4,6.08` (seconds; `--hop` one value
for all or one per TS, default each TS itself; `--aggregate` mean, max or mean+max) embeds every
split once per TS (windows of TS seconds, rounded to whole 0.16 s patch columns, so 0.5 is
0.48 s; one every hop; each encoded alone and averaged over its time steps; the windows
aggregated; cached per TS, hop and aggregate), runs the probe protocol on each, and writes into
--output_dir, instead of results.md / results.csv, `temporal_support.csv` (one row per task and
TS: task, temporal_support_s, hop_s, metric, mean, ci95, gflop_per_clip_second,
ms_per_clip_second, peak_memory_mb, then aggregate, window_frames, hop_frames, runs, scores,
split, split_gflop_per_clip_second, features, protocol) and `temporal_support.png` (score with
its CI against TS per task, cost on second axes); both are refused if they exist (unless
--overwrite) and written atomically. It prints the cheapest TS (by GFLOP per clip second) whose
score is within the 95% CI of the best. The TS and hop in the table are those used (rounded).
  gflop_per_clip_second  analytic FLOPs of the encoder (patch embedding + blocks, matrix
      products only) on one window, over the hop: the cost per second of a long clip.
  split_gflop_per_clip_second  the same count over the windows that the measured split's clips
      are cut into, over their seconds (a clip shorter than the window costs less).
  ms_per_clip_second  wall time of the embedding calls alone (log-mel to clip embedding; not
      reading the dataset) on the measured split (the test split, or the first fold), warm
      (the split embedded once before, untimed), in ms per second of audio.
  peak_memory_mb  the largest growth of resident memory (RSS) during one batch's embedding
      call on that split, in MiB: before each call the freed heap is released (malloc_trim)
      and the kernel's peak-RSS mark reset (/proc/self/clear_refs); after it, VmHWM minus the
      RSS before. Linux only (blank elsewhere).

Task groups: `--task=matpac` is MATPAC's 7 tasks (openmic, nsynth, gtzan, magnatagatune,
fsd50k, esc50, urbansound8k), `--task=matpac_plusplus` MATPAC++'s 11 (those 7, then mtg_genre,
mtg_instrument, mtg_mood, mtg_top50). The results table shows the published MATPAC++ score
beside each task that has one.

Manual downloads (--manual_dir: one per task in the expanded order, or NAME=PATH entries, e.g.
`--task=matpac_plusplus --manual_dir=esc50=/data/ESC-50-master,mtg_jamendo=/data/mtg,...`; a task
without one must be prepared in --data_dir already; the details are each builder's
MANUAL_DOWNLOAD_INSTRUCTIONS and matpac_datasets/<builder>/README.md):
  esc50            ESC-50-master/ (github.com/karolpiczak/ESC-50, master.zip)
  urbansound8k     UrbanSound8K/ (UrbanSound8K.tar.gz)
  gtzan            genres/ (genres.tar.gz or the Kaggle copy)
  nsynth           nsynth-{train,valid,test}/ (the three .jsonwav.tar.gz)
  openmic          openmic-2018/ (zenodo.org/record/1432913)
  magnatagatune*   annotations_final.csv + mp3/ (mirg.city.ac.uk, mp3.zip.001-003)
  fsd50k           FSD50K.{dev_audio,eval_audio,ground_truth}/ (zenodo.org/record/4060432)
  mtg_*            a clone of github.com/MTG/mtg-jamendo-dataset + its raw_30s audio/ (the
                   same folder for all four tasks)
  spoken_digit     recordings/ (github.com/Jakobovski/free-spoken-digit-dataset)
"""

import dataclasses
import sys

from absl import app, flags

from matpac_keras.cli.entry import run_app
from matpac_keras.cli.window_flags import define_window_flags
from matpac_keras.config_ranges import EVALUATION
from matpac_keras.evaluation.features import INPUT_LENGTHS, SOURCES
from matpac_keras.evaluation.probe import INITS, PRESETS, SELECT_BY
from matpac_keras.evaluation.statistics import METHODS
from matpac_keras.evaluation.tasks import TASK_GROUPS, TASKS, expand

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "task",
    None,
    f"Comma-separated task names ({', '.join(TASKS)}), their TFDS names (matpac_esc50, ...) "
    f"or groups ({', '.join(TASK_GROUPS)}: see above).",
)
flags.DEFINE_string(
    "model",
    None,
    "A .keras MATPAC backbone, pretrainer or fine-tuned classifier, or a preset directory (its "
    "encoder is used); "
    "needed unless --features=logmel_stats.",
)
flags.DEFINE_enum(
    "features",
    "model",
    SOURCES,
    "Features: the model's, its architecture's at random init, or log-mel mean and std.",
)
flags.DEFINE_integer("init_seed", 0, "Seed of the random initialisation (--features=random_init).")
flags.DEFINE_string(
    "output_dir",
    None,
    "Where results.md and results.csv are written (default: <model without .keras>_eval/ "
    "beside the model; logmel_stats_eval/ without a model).",
)
flags.DEFINE_bool("overwrite", False, "Replace results.md and results.csv in --output_dir.")
flags.DEFINE_string(
    "save_classifiers",
    None,
    "Folder to write, per task, <task>/: a classifier preset (the model + the first run's "
    "probe, with the task's labels) for matpac-tag and matpac-export.",
)
flags.DEFINE_string("data_dir", None, "TFDS data_dir (TFDS's default when unset).")
flags.DEFINE_list(
    "manual_dir",
    None,
    "Downloaded files to prepare datasets not in --data_dir yet (see the list above): one "
    "path per task (order of --task, groups expanded), or NAME=PATH entries, NAME a task or "
    "builder (mtg_jamendo=DIR serves the four MTG tasks).",
)
flags.DEFINE_string("cache_dir", None, "Embedding cache (default: <output_dir>/embeddings).")
flags.DEFINE_enum("mode", "precise", ["precise", "fast"], "Embedding mode (SPEC section 6).")
flags.DEFINE_enum(
    "input_length",
    "full",
    INPUT_LENGTHS,
    "full: whole clips (MATPAC); evar: crop or zero-pad clips to EVAR's unit_sec.",
)
flags.DEFINE_integer("embed_batch_size", 16, "Chunks encoded at once.")
flags.DEFINE_enum(
    "protocol",
    "paper",
    sorted(PRESETS),
    "Probe and run preset; the probe and run flags override it.",
)
flags.DEFINE_float("learning_rate", None, "Adam learning rate (paper 1e-4, evar 3e-5).")
flags.DEFINE_integer("batch_size", None, "Probe batch size (paper 128, evar 200).")
flags.DEFINE_integer("max_epochs", None, "Epochs at most (paper and evar 200).")
flags.DEFINE_integer(
    "patience",
    None,
    "Early-stopping patience in epochs (paper none, evar 20); 0 disables early stopping.",
)
flags.DEFINE_enum(
    "select_by", None, SELECT_BY, "Best epoch by validation loss (paper) or metric (evar)."
)
flags.DEFINE_bool(
    "standardize", None, "Standardise embeddings with training statistics (paper no, evar yes)."
)
flags.DEFINE_float("weight_decay", None, "L2 on the probe's weights (paper 0, evar 1e-8).")
flags.DEFINE_enum("init", None, INITS, "Probe initialisation (paper keras, evar torch).")
flags.DEFINE_integer("runs", None, "Runs per task (paper 5, evar 3).")
flags.DEFINE_integer("first_seed", None, "Seed of the first run (paper 0, evar 42).")
flags.DEFINE_float(
    "valid_fraction",
    None,
    "Held-out share of the training clips where a task has no validation split (0.1).",
)
flags.DEFINE_enum("ci_method", "t", METHODS, "95% CI from Student's t (default) or 1.96.")
define_window_flags(__name__, sweep=True)
flags.mark_flags_as_required(["task"])


def _in_range(allowed):
    """An absl validator of `allowed` (config_ranges.Range); None: the preset's value."""

    def check(value) -> bool:
        reason = None if value is None else allowed.error(value)
        if reason is not None:
            raise flags.ValidationError(reason)
        return True

    return check


for _name, _allowed in EVALUATION.items():  # the ranges of every numeric option
    flags.register_validator(_name, _in_range(_allowed))

_PROBE_FLAGS = (
    "learning_rate",
    "batch_size",
    "max_epochs",
    "patience",
    "select_by",
    "standardize",
    "weight_decay",
    "init",
)
_RUN_FLAGS = ("runs", "first_seed", "valid_fraction")


def default_output_dir(model: str | None) -> str:
    """`<model without .keras>_eval` (`<preset>_eval` for a preset directory), or
    `logmel_stats_eval` without a model."""
    if not model:
        return "logmel_stats_eval"
    model = model.rstrip("/")
    return (model[: -len(".keras")] if model.endswith(".keras") else model) + "_eval"


def _seconds(flag: str) -> tuple[float, ...]:
    """A list flag's values as floats; InputError naming the flag for one that is not."""
    from matpac_keras.errors import InputError

    values = getattr(FLAGS, flag) or ()
    try:
        return tuple(float(value) for value in values)
    except ValueError:
        raise InputError(f"--{flag}: expected numbers of seconds; got {','.join(values)}") from None


def options_from_flags():
    """runner.Options from the flags: --protocol's presets with the given flags overriding."""
    from matpac_keras.evaluation.runner import RUN_PRESETS, Options

    probe = {f: getattr(FLAGS, f) for f in _PROBE_FLAGS if getattr(FLAGS, f) is not None}
    if probe.get("patience") == 0:
        probe["patience"] = None
    run = {f: getattr(FLAGS, f) for f in _RUN_FLAGS if getattr(FLAGS, f) is not None}
    overrides = {**probe, **run}
    return Options(
        tasks=expand(FLAGS.task),
        output_dir=FLAGS.output_dir or default_output_dir(FLAGS.model),
        model=FLAGS.model,
        source=FLAGS.features,
        init_seed=FLAGS.init_seed,
        data_dir=FLAGS.data_dir,
        manual_dirs=tuple(FLAGS.manual_dir) if FLAGS.manual_dir else None,
        cache_dir=FLAGS.cache_dir,
        mode=FLAGS.mode,
        input_length=FLAGS.input_length,
        embed_batch_size=FLAGS.embed_batch_size,
        probe=dataclasses.replace(PRESETS[FLAGS.protocol], **probe),
        runs=dataclasses.replace(RUN_PRESETS[FLAGS.protocol], **run),
        protocol=FLAGS.protocol + "".join(f" {k}={v}" for k, v in sorted(overrides.items())),
        ci_method=FLAGS.ci_method,
        overwrite=FLAGS.overwrite,
        save_classifiers=FLAGS.save_classifiers,
        temporal_support=_seconds("temporal_support"),
        hop=_seconds("hop"),
        aggregate=FLAGS.aggregate,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    options = options_from_flags()  # InputError: a bad flag value; FileNotFoundError: --model
    if options.temporal_support:
        from matpac_keras.evaluation.temporal_support import sweep

        sweep(options)  # checks the outputs, the model and the values before any dataset
        return
    from matpac_keras.evaluation.runner import evaluate

    evaluate(options)  # checks the outputs and loads the model before any dataset is built


def run():
    run_app(sys.modules[__name__], main)


if __name__ == "__main__":
    run()
