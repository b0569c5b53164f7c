"""What lower precision does to the embeddings: float32 vs bfloat16 (OpenVINO; Keras
mixed_bfloat16) vs int8 (OpenVINO post-training quantisation, opt-in), per encoder.

    python benchmarks/precision.py --models runs/fsdd/backbone.keras,/tmp/vitb \
        --fsdd_dir ../shared/data/fsdd/recordings --int8 --output benchmarks/precision.md

For each model and precision: the FSDD clip embeddings (precise mode, every one of the 3,000
recordings, `bucketed_embeddings` as `matpac-evaluate` computes them), their per-clip cosine
similarity to the float32 (Keras) embeddings, the linear-probe accuracy on FSDD's test split
(300 recordings) with `matpac-evaluate`'s paper protocol (its probe preset, 5 seeds, 10 % of the
training clips for validation per seed, t-interval CI at 95 %), and the embedding wall time.

- float32: Keras (`EmbeddingExtractor`), the reference.
- bfloat16-openvino: the exported encoder compiled by OpenVINO with `INFERENCE_PRECISION_HINT`
  bf16 (`--runtime=openvino --precision=bfloat16`).
- mixed_bfloat16-keras: the backbone rebuilt with the `mixed_bfloat16` dtype policy (float32
  weights, bfloat16 matmuls), the same weights.
- int8-openvino (`--int8`): the exported float32 encoder quantised by NNCF
  (`nncf.quantize`, default preset) calibrated on `--calibration` training windows; needs
  `nncf` importable (`--nncf_path` is appended to sys.path).

Writes a markdown report (machine, command, table) to `--output` and the numbers to a .json
beside it.
"""

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time

import numpy as np

PRECISIONS = ("float32", "bfloat16-openvino", "mixed_bfloat16-keras", "int8-openvino")


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            line = next(x for x in info if x.startswith("flags"))
    except (OSError, StopIteration):
        return []
    wanted = ("avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8", "avx512f")
    return [f for f in wanted if f in line.split()]


def _int8_encoder(backbone, waveforms, count: int, work: str):
    """The exported float32 encoder quantised to int8 by NNCF, calibrated on the log-mel windows
    of the first `count` clips (each padded to whole patches, as precise mode encodes them)."""
    import nncf
    import openvino

    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.encoder_runtime import OpenVinoEncoder, cached_encoder

    exported = cached_encoder(backbone, "openvino", cache_dir=os.path.join(work, "cache"))
    extractor = EmbeddingExtractor(backbone)
    windows = []
    for waveform in waveforms[:count]:
        logmel = extractor.logmel(waveform[None])
        padded = extractor.padded_frames(logmel.shape[2])
        logmel = np.pad(logmel, ((0, 0), (0, 0), (0, padded - logmel.shape[2])))
        windows.append(logmel[:, :, : backbone.max_frames])
    model = openvino.Core().read_model(exported.path)
    quantized = nncf.quantize(model, nncf.Dataset(windows), subset_size=len(windows))
    path = os.path.join(work, "int8", "encoder.xml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    openvino.save_model(quantized, path, compress_to_fp16=False)
    with open(f"{exported.path}.json") as source, open(f"{path}.json", "w") as sidecar:
        sidecar.write(source.read())
    return OpenVinoEncoder(path)  # float32 hint: the int8 ops run as quantised


def _extractor(backbone, precision: str, args, waveforms):
    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.encoder_runtime import cached_encoder

    cache = os.path.join(args.work_dir, "cache")
    if precision == "float32":
        return EmbeddingExtractor(backbone)
    if precision == "bfloat16-openvino":
        encoder = cached_encoder(backbone, "openvino", cache_dir=cache, precision="bfloat16")
        return EmbeddingExtractor(backbone, encoder=encoder)
    if precision == "mixed_bfloat16-keras":
        config = {**backbone.get_config(), "dtype": "mixed_bfloat16"}
        mixed = type(backbone).from_config(config)
        mixed.set_weights(backbone.get_weights())
        assert mixed.dtype_policy.compute_dtype == "bfloat16", mixed.dtype_policy
        return EmbeddingExtractor(mixed)
    if precision == "int8-openvino":
        encoder = _int8_encoder(backbone, waveforms, args.calibration, args.work_dir)
        return EmbeddingExtractor(backbone, encoder=encoder)
    raise ValueError(precision)


def _clips(builder, task, most: int | None = None):
    """Every split's waveforms and labels (FSDD: train, test); the first `most` of each."""
    from matpac_keras.evaluation import tfds_source

    out = {}
    for split in task.splits:
        waves, labels = [], []
        for batch in tfds_source.clip_batches(builder, split, task):
            waves += list(batch.waveforms)
            labels.append(batch.labels)
        out[split] = (waves[:most], np.concatenate(labels)[:most])
    return out


def study(model: str, args, clips, builder, task, log) -> list[dict]:
    from matpac_keras.embedding import bucketed_embeddings
    from matpac_keras.evaluation import report, tfds_source
    from matpac_keras.evaluation.probe import PRESETS, ProbeData
    from matpac_keras.evaluation.protocol import evaluate_task
    from matpac_keras.evaluation.runner import RUN_PRESETS
    from matpac_keras.saving import load_backbone

    backbone = load_backbone(model)
    train_waves = clips["train"][0]
    results, reference = [], None
    for precision in args.precisions:
        started = time.perf_counter()
        try:
            extractor = _extractor(backbone, precision, args, train_waves)
        except Exception as error:  # noqa: BLE001 (an optional runtime: reported, not fatal)
            log(f"{model} {precision}: not measured ({type(error).__name__}: {error})")
            results.append({"model": model, "precision": precision, "error": str(error)})
            continue
        prepared = time.perf_counter() - started
        started = time.perf_counter()
        embedded = {
            split: bucketed_embeddings(extractor, waves) for split, (waves, _) in clips.items()
        }
        seconds = time.perf_counter() - started
        if reference is None:
            reference = embedded
        cosines = np.concatenate(
            [
                np.sum(embedded[s] * reference[s], axis=1)
                / (np.linalg.norm(embedded[s], axis=1) * np.linalg.norm(reference[s], axis=1))
                for s in clips
            ]
        )
        relative = max(
            float(np.abs(embedded[s] - reference[s]).max() / np.abs(reference[s]).max())
            for s in clips
        )
        splits = {s: ProbeData(embedded[s], clips[s][1], None) for s in clips}
        scores = evaluate_task(
            task,
            splits,
            tfds_source.num_classes(builder, task),
            PRESETS["paper"],
            RUN_PRESETS["paper"],
        )
        row = report.Row(scores, f"{os.path.basename(model.rstrip('/'))} {precision}", "paper")
        runs = np.array(scores.runs) * 100
        half = float(row.summary("t")[1]) if len(runs) > 1 else None
        result = {
            "model": model,
            "precision": precision,
            "cosine_mean": float(cosines.mean()),
            "cosine_min": float(cosines.min()),
            "max_relative_error": relative,
            "accuracy_runs": runs.tolist(),
            "accuracy_mean": float(runs.mean()),
            "accuracy_ci95": half,
            "embed_seconds": seconds,
            "prepare_seconds": prepared,
            "clips": int(sum(len(w) for w, _ in clips.values())),
        }
        log(json.dumps(result))
        log(report.markdown([row]))
        results.append(result)
    return results


def _table(results: list[dict]) -> str:
    lines = [
        "| model | precision | cosine to float32: mean | min | max abs error / max abs | "
        "FSDD test accuracy (%), 5 seeds, 95 % CI | embedding time (s) |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['precision']} | not measured: {r['error']} |||||")
            continue
        ci = f" +- {r['accuracy_ci95']:.2f}" if r["accuracy_ci95"] is not None else ""
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['cosine_mean']:.6f} | {r['cosine_min']:.6f}"
            f" | {r['max_relative_error']:.1e} | {r['accuracy_mean']:.2f}{ci} "
            f"({', '.join(f'{a:.1f}' for a in r['accuracy_runs'])}) | {r['embed_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="Comma-separated models.")
    parser.add_argument("--fsdd_dir", required=True, help="FSDD recordings/ folder.")
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: temporary).")
    parser.add_argument("--work_dir", default=None, help="Exports (default: temporary).")
    parser.add_argument("--precisions", default=",".join(PRECISIONS[:3]))
    parser.add_argument("--int8", action="store_true", help="Also int8-openvino (NNCF).")
    parser.add_argument("--calibration", type=int, default=300, help="int8 calibration clips.")
    parser.add_argument("--nncf_path", default=None, help="Appended to sys.path for nncf.")
    parser.add_argument(
        "--max_clips", type=int, default=None, help="At most this many clips per split (a trial)."
    )
    parser.add_argument("--output", default="benchmarks/precision.md")
    args = parser.parse_args()
    args.precisions = args.precisions.split(",") + (["int8-openvino"] if args.int8 else [])
    if args.nncf_path:
        sys.path.append(args.nncf_path)
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="precision-")
    data_dir = args.data_dir or os.path.join(args.work_dir, "tfds")
    import keras

    from matpac_keras.evaluation import tasks, tfds_source

    task = tasks.get_task("spoken_digit")
    builder = tfds_source.prepared_builder(task, data_dir, args.fsdd_dir)
    clips = _clips(builder, task, args.max_clips)
    results = []
    started = time.perf_counter()
    for model in args.models.split(","):
        results += study(model, args, clips, builder, task, print)
    wall = time.perf_counter() - started
    command = "python benchmarks/precision.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, flags "
        f"{' '.join(_cpu_flags())}; Keras {keras.__version__} ({keras.backend.backend()}); "
        f"load average at the end {os.getloadavg()[0]:.1f}; wall {wall:.0f} s"
    )
    body = f"```bash\n{command}\n```\n\n{machine}\n\n{_table(results)}\n"
    with open(args.output, "w") as out:
        out.write(body)
    with open(os.path.splitext(args.output)[0] + ".json", "w") as out:
        json.dump({"command": command, "machine": machine, "results": results}, out, indent=1)
    print(body)


if __name__ == "__main__":
    main()
