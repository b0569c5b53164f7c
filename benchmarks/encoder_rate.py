"""The encoder's achieved GFLOP/s beside this CPU's matmul rate, measured in one process (for
`embed_vs_authors.py`, which runs it in the same run as its timings).

    python benchmarks/encoder_rate.py --model PRESET [--runtimes openvino-float32,...]

Prints one JSON line: NumPy's float32 matmul rate (2048^3 products, best of 5), and per encoder
(Keras float32; the cached OpenVINO export of `matpac-embed --runtime=openvino`, in float32
and bfloat16; ONNX Runtime) the GFLOP/s of encoding 8 full windows (`flops.encoder_flops`),
best of 3 after a warm-up call; and the FLOPs of one 10 s clip in precise mode.
"""

import argparse
import json
import time

import numpy as np


def best_seconds(call, argument, repeats: int) -> float:
    """The fastest of `repeats` calls `call(argument)`, after one warm-up call."""
    call(argument)  # warm-up (compilation, first-touch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(argument)
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--runtimes", default="keras-float32,openvino-float32,openvino-bfloat16")
    args = parser.parse_args()
    n = 2048
    a, b = (np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in (0, 1))
    matmul = 2 * n**3 / best_seconds(a.__matmul__, b, 5) / 1e9

    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.encoder_runtime import load_cached_encoder, model_file_key
    from matpac_keras.flops import encoder_flops
    from matpac_keras.saving import load_backbone

    backbone = load_backbone(args.model)
    frames = backbone.max_frames
    windows = np.random.default_rng(2).standard_normal((8, backbone.num_mels, frames), "float32")
    window_flops = 8 * encoder_flops(backbone, frames)
    clip = sum(encoder_flops(backbone, t) for t in EmbeddingExtractor(backbone).chunk_lengths(1000))
    rates = {}
    for name in args.runtimes.split(","):
        runtime, precision = name.split("-")
        if runtime == "keras":
            from matpac_keras.embedding import TokenFeatures

            encode = TokenFeatures(backbone).predict_on_batch
        else:
            options = {"precision": precision} if runtime == "openvino" else {}
            encode = load_cached_encoder(model_file_key(args.model), runtime, **options)
        if encode is None:  # not exported by matpac-embed yet
            rates[name] = None
            continue
        rates[name] = round(window_flops / best_seconds(encode, windows, 3) / 1e9, 1)
    print(
        json.dumps(
            {
                "numpy_matmul_float32_gflops": round(matmul, 1),
                "encoder_gflops": rates,
                "clip_10s_gflop": round(clip / 1e9, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
