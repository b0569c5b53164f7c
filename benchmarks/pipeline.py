"""Pre-training input pipeline on CPU: clips/s per core, tf.data against librosa + numpy.

Writes --files synthetic 10 s wav files (16 kHz, 16-bit; seeded noise and tones) to a temp dir and
times, each in its own process pinned to one CPU core (so every figure is per core), the
production of 608-frame normalised log-mel crops in batches of --batch:

  tfdata_files_logmel    pretraining_dataset(files): decode, crop, log-mel in tf.data
  tfdata_files_waveform  the same with logmel_in_pipeline=False: decode + crop only
  tfdata_tfds_logmel     pretraining_dataset(builder) on the same clips as a prepared
  tfdata_tfds_waveform     matpac_audio_folder TFDS dataset (int16 records), with/without log-mel
  frontend_only          LogMelSpectrogram alone on in-memory crops (tf.function)
  librosa                librosa.load + random frame-aligned crop + librosa.feature
                         .melspectrogram (same STFT/mel parameters) + log + normalise + np.stack

Each process runs one warm-up epoch, then --runs timed epochs of --repeat passes over the files;
--rounds processes per loader run interleaved (the cores are shared: other jobs' load then falls
on every loader alike). Printed as Markdown: medians over all runs, quartiles, ratios, and the
cores needed for --target clips/s. It also checks that the librosa loader's log-mel equals
LogMelSpectrogram on the same crop.

    python benchmarks/pipeline.py --rounds 3 --runs 3
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SAMPLE_RATE = 16000
CROP_FRAMES = 608
CROP_SAMPLES = (CROP_FRAMES - 1) * 160 + 400
TFDATA = (
    "tfdata_files_logmel",
    "tfdata_files_waveform",
    "tfdata_tfds_logmel",
    "tfdata_tfds_waveform",
)
LOADERS = (*TFDATA, "frontend_only", "librosa")


def write_files(folder: str, count: int, seconds: float) -> list[str]:
    """`count` seeded 16-bit wav files: a few tones in pink-ish noise, like a busy recording."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    paths = []
    for i in range(count):
        noise = np.cumsum(rng.normal(0, 0.02, t.size)) * 0.01 + rng.normal(0, 0.05, t.size)
        tones = sum(0.1 * np.sin(2 * np.pi * rng.uniform(80, 4000) * t) for _ in range(3))
        path = os.path.join(folder, "audio", f"clip{i:03d}.wav")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, np.clip(noise + tones, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def build_tfds(folder: str):
    """The files as a prepared matpac_audio_folder dataset under `folder`/tfds."""
    from matpac_datasets.audio_folder import audio_folder_dataset_builder as audio_folder

    config = audio_folder.AudioFolderConfig(name="bench", folder=os.path.join(folder, "audio"))
    builder = audio_folder.Builder(config=config, data_dir=os.path.join(folder, "tfds"))
    builder.download_and_prepare()
    return builder


MEL_ARGS = dict(
    sr=SAMPLE_RATE, n_fft=400, hop_length=160, center=False, power=2.0, n_mels=80, fmin=50.0,
    fmax=8000.0, htk=False, norm="slaney",
)  # fmt: skip


def librosa_logmel(crop: np.ndarray) -> np.ndarray:
    """Normalised log-mel [80, frames] of a 16 kHz waveform, with librosa."""
    import librosa

    mel = librosa.feature.melspectrogram(y=crop, **MEL_ARGS)
    return (np.log(mel + np.finfo(np.float32).eps) + 7.056) / 4.193


def librosa_loader(files: list[str], batch: int, rng: np.random.Generator):
    """The plain loader: per file librosa.load, random crop, log-mel; then np.stack."""
    import librosa

    order = rng.permutation(len(files))
    for start in range(0, len(order) - batch + 1, batch):
        crops = []
        for i in order[start : start + batch]:
            wave, _ = librosa.load(files[i], sr=SAMPLE_RATE)
            frames = 1 + (len(wave) - 400) // 160
            first = 160 * rng.integers(0, frames - CROP_FRAMES + 1)
            crops.append(librosa_logmel(wave[first : first + CROP_SAMPLES]))
        yield np.stack(crops).astype(np.float32)


def check_librosa_matches(path: str) -> float:
    """Max |librosa log-mel - LogMelSpectrogram| on one crop of `path` (normalised units)."""
    import librosa

    from matpac_keras.frontend import LogMelSpectrogram

    wave, _ = librosa.load(path, sr=SAMPLE_RATE)
    crop = wave[1600 : 1600 + CROP_SAMPLES]
    ours = np.asarray(LogMelSpectrogram()(crop[None]))[0]
    reference = librosa_logmel(crop)
    assert reference.shape == ours.shape == (80, CROP_FRAMES)
    return float(np.abs(ours - reference).max())


def worker(args) -> dict:
    """Times one loader in this process (pinned to one core); returns seconds per epoch."""
    files = sorted(
        os.path.join(args.dir, "audio", n) for n in os.listdir(os.path.join(args.dir, "audio"))
    )
    result = {"loader": args.loader}
    if args.loader == "librosa":
        rng = np.random.default_rng(0)

        def epoch():
            return sum(
                len(b) for _ in range(args.repeat) for b in librosa_loader(files, args.batch, rng)
            )
    elif args.loader == "frontend_only":
        import tensorflow as tf

        from matpac_keras.frontend import LogMelSpectrogram

        frontend = LogMelSpectrogram()
        crops = tf.constant(
            np.random.default_rng(0).uniform(-0.5, 0.5, (args.batch, CROP_SAMPLES)), tf.float32
        )
        run = tf.function(lambda x: frontend(x))

        def epoch():
            batches = args.repeat * (len(files) // args.batch)
            for _ in range(batches):
                run(crops).numpy()
            return batches * args.batch
    else:
        from matpac_keras.data.pretraining import pretraining_dataset

        source = files if "_files_" in args.loader else build_tfds(args.dir)
        dataset = pretraining_dataset(
            source, args.batch, CROP_FRAMES, seed=0, shuffle_buffer=len(files),
            num_parallel_calls=args.num_parallel_calls,
            logmel_in_pipeline=args.loader.endswith("_logmel"),
        ).repeat(args.repeat)  # fmt: skip

        def epoch():
            return sum(int(b.shape[0]) for b in dataset)

    epoch()  # warm-up: tracing, file cache
    times, clips = [], 0
    for _ in range(args.runs):
        started = time.perf_counter()
        clips = epoch()
        times.append(time.perf_counter() - started)
    result.update(clips_per_run=clips, times_s=times)
    return result


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return names[0] if names else platform.processor()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loaders", default=",".join(LOADERS))
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2, help="passes over the files per run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per worker process")
    parser.add_argument("--rounds", type=int, default=3, help="worker processes per loader")
    parser.add_argument("--cpu", type=int, default=0, help="the core every worker is pinned to")
    parser.add_argument(
        "--num_parallel_calls", type=int, default=-1, help="of the tf.data maps; -1: AUTOTUNE"
    )
    parser.add_argument("--target", type=float, default=4000.0, help="clips/s to feed")
    parser.add_argument("--output", default=None, help="write all figures as JSON here")
    parser.add_argument("--loader", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loader:
        os.sched_setaffinity(0, {args.cpu})
        print(json.dumps(worker(args)))
        return

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": root,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    results = []
    with tempfile.TemporaryDirectory() as folder:
        files = write_files(folder, args.files, args.seconds)
        os.environ["KERAS_BACKEND"] = "tensorflow"
        difference = check_librosa_matches(files[0])
        print(f"librosa loader vs LogMelSpectrogram, same crop: max |diff| {difference:.1e}")
        assert difference < 1e-3, difference
        loaders = args.loaders.split(",")
        times = {loader: [] for loader in loaders}
        clips = {}
        for round_ in range(args.rounds):  # interleaved, so load from other jobs hits all alike
            for loader in loaders:
                command = [sys.executable, __file__, f"--loader={loader}", f"--dir={folder}"]
                command += [
                    f"--{k}={getattr(args, k)}"
                    for k in ("batch", "repeat", "runs", "cpu", "num_parallel_calls")
                ]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{loader} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                times[loader] += result["times_s"]
                clips[loader] = result["clips_per_run"]
                rate = clips[loader] / statistics.median(result["times_s"])
                print(f"round {round_}: {loader} {rate:.0f} clips/s", file=sys.stderr, flush=True)
        for loader in loaders:
            rates = sorted(clips[loader] / t for t in times[loader])
            median = statistics.median(rates)
            results.append(
                {
                    "loader": loader,
                    "clips_per_run": clips[loader],
                    "times_s": times[loader],
                    "clips_per_s": median,
                    "quartiles": statistics.quantiles(rates, n=4)[::2],
                    "cores_for_target": args.target / median,
                }
            )

    print(f"\nMachine: {os.cpu_count()} cores ({cpu_model()}); workers pinned to core {args.cpu}.")
    print(f"tf.data num_parallel_calls: {args.num_parallel_calls} (-1: AUTOTUNE).")
    print(
        f"{args.files} files x {args.seconds:g} s, batch {args.batch}, crop {CROP_FRAMES} frames,"
    )
    runs = f"{args.rounds} x {args.runs}"
    print(f"{args.repeat * args.files} clips per run; median (quartiles) of {runs} runs.\n")
    librosa_rate = next((r["clips_per_s"] for r in results if r["loader"] == "librosa"), None)
    print(
        "| loader | clips/s per core (quartiles) | ms/clip | vs librosa "
        f"| cores for {args.target:g}/s |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r['clips_per_s'] / librosa_rate:.2f}x" if librosa_rate else "-"
        low, high = r["quartiles"]
        print(
            f"| {r['loader']} | {r['clips_per_s']:.0f} ({low:.0f}-{high:.0f}) "
            f"| {1000 / r['clips_per_s']:.2f} | {ratio} "
            f"| {r['cores_for_target']:.1f} |"
        )
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"args": vars(args), "results": results, "librosa_diff": difference}, f)


if __name__ == "__main__":
    main()
