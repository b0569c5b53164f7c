"""Encoder levers on CPU: the windows of 10 s clips through ViT-B, per runtime and precision.

Times `TokenFeatures(backbone).predict_on_batch` (what `EmbeddingExtractor` calls per batch of
windows) against the same function run other ways, on the windows that a 10 s clip gives in
precise mode (one 608-frame window and one 400-frame window), for B clips at once:

- keras: Keras on this process's backend (TensorFlow: graph, no XLA; JAX: XLA always);
- keras-xla: TensorFlow with `jit_compile=True` (XLA);
- keras-bf16: the backbone under the `mixed_bfloat16` dtype policy (weights float32, compute
  bfloat16), XLA-compiled under TensorFlow;
- onnx: ONNX Runtime on the exported encoder (`matpac_keras.encoder_runtime`);
- openvino / openvino-dynamic: OpenVINO, float32, one compiled model per shape / one for all;
- openvino-bf16: OpenVINO in bfloat16 (this CPU has avx512_bf16).

Per case: the set-up (export, compile) and first-call seconds per shape, then `--reps` timed
passes over both windows, interleaved with the other cases' (outside load hits all alike); the
median is the figure. Every output is compared with Keras float32's (max |diff| and that over
max |reference|). Random weights in the authors' layout (`benchmarks/embed.py`), seeded audio.
The JAX cases need their own process: run the script once per backend.

    KERAS_BACKEND=tensorflow python benchmarks/encoder_levers.py --output levers_tf.json
    KERAS_BACKEND=jax python benchmarks/encoder_levers.py --cases keras,keras-bf16 \
        --output levers_jax.json
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = (
    "keras",
    "keras-xla",
    "keras-bf16",
    "onnx",
    "openvino",
    "openvino-dynamic",
    "openvino-bf16",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--clips", type=int, nargs="+", default=[1, 8], help="B clips at once")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cache", default=None, help="exported encoders (default: temp dir)")
    parser.add_argument("--output", default=None)
    return parser.parse_args(argv)


def windows_of_clips(extractor, clips: int) -> list[np.ndarray]:
    """The precise-mode windows of `clips` seeded 10 s clips: [[B, 80, 608], [B, 80, 400]]."""
    rng = np.random.default_rng(7)
    t = np.arange(160000) / 16000
    waves = np.stack(
        [
            0.3 * rng.normal(size=t.size) + 0.5 * np.sin(2 * np.pi * (300 + 50 * i) * t)
            for i in range(clips)
        ]
    ).astype("float32")
    logmel = extractor.logmel(waves)
    padded = np.pad(
        logmel, ((0, 0), (0, 0), (0, extractor.padded_frames(logmel.shape[2]) - logmel.shape[2]))
    )
    return [
        np.ascontiguousarray(padded[:, :, s : s + n]) for s, n in extractor.windows(logmel.shape[2])
    ]


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, ROOT)
    import keras

    from benchmarks.embed import official_state
    from matpac_keras import encoder_runtime
    from matpac_keras.backbone import MatpacBackbone
    from matpac_keras.convert import model_from_state_dict
    from matpac_keras.embedding import EmbeddingExtractor, TokenFeatures

    backend = keras.backend.backend()
    cases = [c for c in args.cases.split(",") if c]
    if backend != "tensorflow":
        dropped = [c for c in cases if c not in ("keras", "keras-bf16")]
        if dropped:
            print(f"{backend}: skipping {dropped} (export and XLA cases run under TensorFlow)")
        cases = [c for c in cases if c in ("keras", "keras-bf16")]
    backbone = model_from_state_dict(official_state(seed=0))
    extractor = EmbeddingExtractor(backbone)
    cache = args.cache or tempfile.mkdtemp(prefix="matpac_levers_")
    fns, setup = {}, {}
    for case in cases:
        t0 = time.perf_counter()
        if case == "keras":
            fns[case] = TokenFeatures(backbone).predict_on_batch
        elif case == "keras-xla":
            features = TokenFeatures(backbone)
            features.jit_compile = True
            fns[case] = features.predict_on_batch
        elif case == "keras-bf16":
            config = {**backbone.get_config(), "dtype": "mixed_bfloat16"}
            bf16 = MatpacBackbone.from_config(config)
            bf16.set_weights(backbone.get_weights())
            features = TokenFeatures(bf16)
            if backend == "tensorflow":
                features.jit_compile = True
            fns[case] = features.predict_on_batch
        elif case == "onnx":
            fns[case] = encoder_runtime.cached_encoder(backbone, "onnx", cache_dir=cache)
        elif case.startswith("openvino"):
            options = {
                "precision": "bfloat16" if case.endswith("bf16") else "float32",
                "static_shapes": case != "openvino-dynamic",
            }
            fns[case] = encoder_runtime.cached_encoder(
                backbone, "openvino", cache_dir=cache, **options
            )
        setup[case] = round(time.perf_counter() - t0, 3)
        print(f"set-up {case:18s} {setup[case]:7.2f} s", flush=True)
    results = {"backend": backend, "cases": cases, "setup_s": setup, "by_clips": {}}
    for clips in args.clips:
        windows = windows_of_clips(extractor, clips)
        first, times, errors, outputs = {}, {c: [] for c in cases}, {}, {}
        for case in cases:  # the first call of each shape (tracing, compilation)
            first[case], outputs[case] = [], []
            for w in windows:
                t0 = time.perf_counter()
                out = np.asarray(keras.ops.convert_to_numpy(fns[case](w)), dtype=np.float64)
                first[case].append(round(time.perf_counter() - t0, 3))
                outputs[case].append(out)
        reference = outputs.get("keras")
        for case, outs in outputs.items():
            if reference is not None:
                diff = max(np.abs(o - r).max() for o, r in zip(outs, reference, strict=True))
                scale = max(np.abs(r).max() for r in reference)
                errors[case] = {"max_abs_diff": float(diff), "max_rel_diff": float(diff / scale)}
        for _ in range(args.reps):
            for case in cases:
                t0 = time.perf_counter()
                for w in windows:
                    keras.ops.convert_to_numpy(fns[case](w))
                times[case].append(time.perf_counter() - t0)
        rows = {}
        base = statistics.median(times["keras"]) if "keras" in times else None
        for case in cases:
            med = statistics.median(times[case])
            rows[case] = {
                "first_call_s": first[case],
                "times_s": [round(t, 3) for t in times[case]],
                "median_s": round(med, 4),
                "clips_per_s": clips / med,
                "speedup_vs_keras": (base / med) if base else None,
                **errors.get(case, {}),
            }
            err = errors.get(case, {})
            print(
                f"B={clips} {case:18s} median {med:7.3f} s ({clips / med:5.2f} clips/s)"
                + (f" x{base / med:.2f} vs keras" if base else "")
                + (
                    f"  max|diff| {err['max_abs_diff']:.1e} rel {err['max_rel_diff']:.1e}"
                    if err
                    else ""
                )
                + f"  first calls {first[case]}",
                flush=True,
            )
        results["by_clips"][str(clips)] = rows
    results["loadavg_end"] = os.getloadavg()
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
