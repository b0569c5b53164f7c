#!/usr/bin/env python3
"""A whole pretraining run of the AUTHORS' MATPAC training code on a folder of audio (issue 22).

Run by the authors' environment's Python (torch, torchaudio, timm, einops, soundfile), never by
ours: `benchmarks/pretrain_vs_authors.py` calls it in a subprocess. Their sources are a snapshot
of github.com/aurianworld/matpac passed with `--ref` (see ../shared/reference_bench/README.md);
fairseq and omegaconf are replaced by that folder's shim. Their code is imported, not modified.

What runs, theirs unless said otherwise:
- Data: their `data_preprocessing/resample_and_lms.py` (`process_folder`: soundfile read, mono,
  torchaudio's kaiser-sinc resampling to 16 kHz, their `logMelSpectrogram`, one .npy per file),
  cached in `--cache`; a manifest in their format (root line, then `path<TAB>frames`), written
  here because their `prepare_manifest.py` takes every file of a folder and we must leave out a
  test split (`--exclude`, file-name patterns) and must not drop clips of 1 s or less, as
  that script does for .npy files (made for AudioSet); then their `LogmelPretrainingTask` /
  `LogmelDataset` (clips shorter than the crop dropped, AudioSet normalisation (-7.056, 4.193),
  random crops of `--crop-frames` in their collater).
- Batching as fairseq's `EpochBatchIterator` with `rebuild_batches=True` (their task's default)
  does it for `batch_size` without `max_tokens`: epoch e (from 1) orders the clips by
  `ordered_indices()` under `numpy_seed(seed + e)` (longest first, random among equal sizes),
  cuts consecutive batches of `--batch-size` (the last one smaller), and shuffles the batches
  under `numpy_seed(seed + e)`. The crop offsets come from NumPy's global generator, seeded once.
- Model: their `GeneralModel` (`use_mcl=False`) with the sizes given, their initialisation (the
  teacher encoder gets its own random draw; the teacher head its own MLP draw), their EMA, centre,
  teacher-temperature ramp (`warmup_n_steps` = `--tau-steps`), annealed over `--steps`.
- The step, as fairseq's trainer with `criterion=model` and `loss_weights={loss_cls: .5,
  loss_pred: .5}` runs it in float32: `model.train(); model.set_num_updates(k)`; forward
  (which also steps the EMAs, none at k = 0); loss = (0.5 sum loss_cls + 0.5 sum loss_pred) /
  sample_size; backward; `clip_grad_norm_(3.0)` (FloatingPointError on a non-finite norm);
  torch AdamW (betas (0.9, 0.95), eps 1e-6, decoupled weight decay on every trainable tensor, as
  fairseq's `adam` with `weight_decay`); learning rate of update k from fairseq's `cosine`
  scheduler: `k * lr / warmup` during the warm-up (`warmup_init_lr` = `min_lr` = 0), then
  `0.5 lr (1 + cos(pi (k - warmup) / (steps - warmup)))`.
Not done (not needed on one CPU process in float32): fp16 and its loss scaler, distributed
all-reduce, data-loader workers, checkpoints, validation.

Writes to `--output` (a folder): metrics.jsonl (rows every `--log-every` steps, the mean over
those steps, with the names `matpac-train` uses: loss, loss_cls, loss_pred, grad_norm, lr,
teacher_temp, teacher_perplexity, teacher_classes, argmax_agreement, z_hat_m_std, z_m_std,
center_norm), encoder.pt (the student encoder in the layout of the published encoder-only files,
for `matpac-convert`) and summary.json.
"""

import argparse
import contextlib
import fnmatch
import importlib
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_BENCH = os.path.join(HERE, "..", "..", "shared", "reference_bench")
ENCODER_PREFIXES = ("patch_embed.", "student_encoder.")
ENCODER_KEYS = ("cls_token", "pos_embed")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="snapshot of aurianworld/matpac")
    parser.add_argument(
        "--reference-bench",
        default=REFERENCE_BENCH,
        help="folder of bench_ref.py and its shim (default: %(default)s)",
    )
    parser.add_argument("--audio", required=True, help="folder of audio files (searched deep)")
    parser.add_argument("--exclude", default="", help="comma-separated file-name patterns")
    parser.add_argument("--cache", required=True, help="folder for their log-mel .npy files")
    parser.add_argument("--output", required=True, help="folder for metrics and the encoder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup-steps", type=int, required=True)
    parser.add_argument("--tau-steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--crop-frames", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--encoder-ema", type=float, nargs=2, default=(0.996, 1.0))
    parser.add_argument("--head-ema", type=float, nargs=2, default=(0.996, 1.0))
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--predictor-dim", type=int, default=128)
    parser.add_argument("--predictor-depth", type=int, default=1)
    parser.add_argument("--predictor-heads", type=int, default=4)
    parser.add_argument("--head-hidden-dim", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=256)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return parser.parse_args(argv)


def log(message):
    print(f"[authors] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def numpy_seed(np, seed):
    """fairseq.data.data_utils.numpy_seed: a temporary global NumPy seed."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def load_reference(args):
    sys.path.insert(0, os.path.abspath(args.reference_bench))
    import bench_ref

    bench_ref.setup_paths(args.ref)
    modules = bench_ref.load_training_modules()
    with bench_ref.py311_dataclass_defaults():
        modules.lms = importlib.import_module("training_matpac.data_preprocessing.resample_and_lms")
    return modules


def their_logmels(modules, audio, cache):
    """Their preprocessing over the whole folder (files already in the cache are kept)."""
    started = time.perf_counter()
    modules.lms.process_folder(
        input_folder=audio,
        output_folder=cache,
        sample_rate=16000,
        n_mel=80,
        num_threads=2,
        replace=False,
    )
    log(f"log-mels in {cache} ({time.perf_counter() - started:.1f} s)")


def write_manifest(np, audio, cache, exclude, folder):
    """Their manifest format over the cached .npy files of the audio files not excluded."""
    patterns = [p.strip() for p in exclude.split(",") if p.strip()]
    lines, left_out = [], 0
    for root, _, files in sorted(os.walk(audio)):
        for name in sorted(files):
            if not name.lower().endswith((".wav", ".mp3")):
                continue
            if any(fnmatch.fnmatch(name, p) for p in patterns):
                left_out += 1
                continue
            relative = os.path.splitext(os.path.relpath(os.path.join(root, name), audio))[0]
            npy = os.path.join(cache, relative + ".npy")
            if not os.path.exists(npy):  # their to_log_mel skipped it (corrupt or < 1200 samples)
                continue
            # prepare_manifest.py would also drop clips of 100 frames or fewer (1 s): made for
            # AudioSet, that would leave 15 of FSDD's 2,700 train clips. Their dataset's own
            # filter (at least --crop-frames frames) is the one that applies here.
            frames = np.load(npy, mmap_mode="r").shape[-1]
            lines.append(f"{relative}.npy\t{frames}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.tsv"), "w") as manifest:
        manifest.write(os.path.realpath(cache) + "\n" + "".join(line + "\n" for line in lines))
    log(f"manifest: {len(lines)} files ({left_out} excluded by pattern)")


def epoch_batches(np, dataset, batch_size, seed, epoch):
    """fairseq's batches of one epoch (see the module docstring)."""
    with numpy_seed(np, seed + epoch):
        indices = dataset.ordered_indices()
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    with numpy_seed(np, seed + epoch):
        np.random.shuffle(batches)
    return batches


def batch_stream(np, dataset, batch_size, seed):
    epoch = 1
    while True:
        for indices in epoch_batches(np, dataset, batch_size, seed, epoch):
            yield dataset.collater([dataset[int(i)] for i in indices])["net_input"]["source"]
        epoch += 1


def fairseq_cosine_lr(step, peak, warmup, total):
    if step < warmup:
        return step * peak / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def build_model(M, args, manifest_folder):
    enc = M.encoder.encoder_layers_config(
        embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads, mlp_ratio=4
    )
    dec = M.decoder.decoder_config(
        embed_dim=args.embed_dim,
        decoder_embed_dim=args.predictor_dim,
        decoder_depth=args.predictor_depth,
        mlp_ratio=4,
        decoder_num_heads=args.predictor_heads,
    )
    cls_cfg = M.cls_head.Cls_Head_Config(
        head_dim_out=args.num_classes,
        hidden_dim=args.head_hidden_dim,
        ema_decay=args.head_ema[0],
        ema_end_decay=args.head_ema[1],
        warmup_n_steps=args.tau_steps,
    )
    cfg = M.model.general_config(
        encoder=enc,
        decoder=dec,
        use_mcl=False,
        mask_ratio=0.7,
        return_layers=False,
        n_freq=80,
        n_t=args.crop_frames,
        patch_size=16,
        ema_decay=args.encoder_ema[0],
        log_norms=True,
        ema_end_decay=args.encoder_ema[1],
        ema_anneal_end_step=args.steps,
        cls_head_cfg=cls_cfg,
        alpha=0.5,
    )
    task_cfg = M.task.PretrainingConfig(
        data=manifest_folder,
        max_sample_size=args.crop_frames,
        min_sample_size=args.crop_frames,
        patch_size=16,
        n_mels=80,
    )
    task = M.task.LogmelPretrainingTask.setup_task(task_cfg)
    task.load_dataset("train")
    return M.model.GeneralModel(cfg=cfg, task_cfg=task_cfg), task.datasets["train"]


def main(argv=None):
    args = parse_args(argv)
    M = load_reference(args)
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.output, exist_ok=True)
    their_logmels(M, args.audio, args.cache)
    manifest_folder = os.path.join(args.output, "manifest")
    write_manifest(np, args.audio, args.cache, args.exclude, manifest_folder)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model, dataset = build_model(M, args, manifest_folder)
    log(f"{len(dataset)} clips of at least {args.crop_frames} frames")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=0.0, betas=(0.9, 0.95), eps=1e-6, weight_decay=args.weight_decay
    )
    batches = batch_stream(np, dataset, args.batch_size, args.seed)
    rows, window = [], []
    started = time.perf_counter()
    for step in range(args.steps):
        source = next(batches)
        lr = fairseq_cosine_lr(step, args.lr, args.warmup_steps, args.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        model.set_num_updates(step)
        optimizer.zero_grad(set_to_none=True)
        out = model(source=source)
        losses = out["losses"]
        sample_size = out["sample_size"]
        loss = (
            0.5 * losses["loss_cls"].float().sum() + 0.5 * losses["loss_pred"].float().sum()
        ) / sample_size
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 3.0)
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"step {step}: gradients are NaN/Inf")
        optimizer.step()
        model.cls_head_loss.apply_center_update()  # the centre this step leaves (lazy upstream)
        perplexity = float(out["cls_perplexity"])
        window.append(
            {
                "loss": float(loss.detach()),
                "loss_cls": float(losses["loss_cls"].float().mean()),
                "loss_pred": float(losses["loss_pred"].float().mean()),
                "grad_norm": float(grad_norm),
                "teacher_perplexity": perplexity,
                "teacher_entropy": math.log(perplexity),
                "teacher_classes": float(out["n_diff_target"]),
                "argmax_agreement": out["correct"] / out["count"],
                "z_hat_m_std": float(out["var_z_hat_m"]) / 1000,
                "z_m_std": float(out["var_z_m"]) / 1000,
                "center_norm": float(model.cls_head_loss.center.norm()),
            }
        )
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            row = {"step": step + 1}
            row.update({k: sum(w[k] for w in window) / len(window) for k in window[0]})
            row["lr"] = lr
            row["teacher_temp"] = float(out["t_temp"]) / 100
            rows.append(row)
            window = []
            log(
                f"{step + 1}/{args.steps} loss {row['loss']:.4f} "
                f"({(time.perf_counter() - started) / (step + 1):.3f} s/step)"
            )
    seconds = time.perf_counter() - started
    with open(os.path.join(args.output, "metrics.jsonl"), "w") as metrics:
        metrics.write("".join(json.dumps(row) + "\n" for row in rows))
    state = model.state_dict()
    encoder = {
        k: v.detach().clone()
        for k, v in state.items()
        if k.startswith(ENCODER_PREFIXES) or k in ENCODER_KEYS
    }
    torch.save(encoder, os.path.join(args.output, "encoder.pt"))
    summary = {
        "steps": args.steps,
        "seconds": seconds,
        "clips": len(dataset),
        "torch": torch.__version__,
        "seed": args.seed,
    }
    with open(os.path.join(args.output, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    log(f"done: {args.steps} steps in {seconds:.1f} s")


if __name__ == "__main__":
    main()
