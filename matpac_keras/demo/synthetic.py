"""A labelled corpus of synthetic sound classes, generated from a seed (no download).

Ten classes that differ in *structure* rather than in level or average spectrum: every clip gets
a random pitch or band, level, onset and background noise, so telling the classes apart needs
the time-frequency patterns (pitch contours, modulation rates, pulse rates, sweeps) that a good
audio representation captures. Clip `i` of a corpus is a pure function of `(seed, i)`.
"""

import numpy as np

from matpac_keras.audio import SAMPLE_RATE

CLASS_NAMES = (
    "steady_harmonic",  # a harmonic tone at a fixed pitch
    "rising_glide",  # a harmonic tone gliding up by 0.4-1 octave
    "falling_glide",  # ... and down
    "vibrato",  # a harmonic tone with 4-7 Hz frequency modulation
    "tremolo",  # a harmonic tone with 6-12 Hz amplitude modulation
    "noise_band",  # steady band-pass noise, 1/3-1 octave wide
    "slow_clicks",  # a pulse train at 3-6 pulses per second
    "fast_clicks",  # a pulse train at 15-30 pulses per second
    "sweeps",  # fast sine sweeps, up or down, 2-4 per second
    "noise_bursts",  # broadband noise bursts with random gaps
)
NUM_CLASSES = len(CLASS_NAMES)


def _harmonic(rng, f0: np.ndarray, num_samples: int) -> np.ndarray:
    """A tone with 3-8 harmonics of the instantaneous pitch `f0` [samples], random spectral tilt."""
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    tilt = rng.uniform(0.5, 1.5)
    out = np.zeros(num_samples)
    for k in range(1, rng.integers(3, 9) + 1):
        partial = np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * k**-tilt
        out += np.where(k * f0 < 0.45 * SAMPLE_RATE, partial, 0.0)
    return out


def _band_noise(rng, num_samples: int, low: float, high: float) -> np.ndarray:
    """White noise limited to [low, high] Hz (zeroed FFT bins)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, num_samples)


def _pulses(rng, num_samples: int, rate: float) -> np.ndarray:
    """Decaying band-limited clicks at `rate` per second, with 10% timing jitter."""
    t = np.arange(num_samples) / SAMPLE_RATE
    out = np.zeros(num_samples)
    click = _band_noise(rng, 800, rng.uniform(300, 1500), rng.uniform(3000, 7000))
    click *= np.exp(-np.arange(800) / rng.uniform(40, 160))
    onset = rng.uniform(0, 1 / rate)
    while onset < t[-1]:
        start = int(onset * SAMPLE_RATE)
        end = min(start + len(click), num_samples)
        out[start:end] += click[: end - start]
        onset += (1 / rate) * rng.uniform(0.9, 1.1)
    return out


def _sweeps(rng, num_samples: int) -> np.ndarray:
    """Exponential sine sweeps of 0.15-0.3 s spanning 2-4 octaves, all up or all down."""
    out = np.zeros(num_samples)
    up = rng.random() < 0.5
    position = int(rng.uniform(0, 0.2) * SAMPLE_RATE)
    while position < num_samples:
        length = int(rng.uniform(0.15, 0.3) * SAMPLE_RATE)
        low = rng.uniform(200, 800)
        high = low * 2 ** rng.uniform(2, 4)
        ramp = np.linspace(0, 1, length)
        f = low * (high / low) ** (ramp if up else 1 - ramp)
        sweep = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.hanning(length)
        end = min(position + length, num_samples)
        out[position:end] += sweep[: end - position]
        position = end + int(rng.uniform(0.05, 0.25) * SAMPLE_RATE)
    return out


def _bursts(rng, num_samples: int) -> np.ndarray:
    """Broadband noise bursts of 30-150 ms separated by 50-400 ms of silence."""
    envelope = np.zeros(num_samples)
    position = int(rng.uniform(0, 0.3) * SAMPLE_RATE)
    while position < num_samples:
        length = int(rng.uniform(0.03, 0.15) * SAMPLE_RATE)
        end = min(position + length, num_samples)
        envelope[position:end] = np.hanning(length)[: end - position]
        position = end + int(rng.uniform(0.05, 0.4) * SAMPLE_RATE)
    return envelope * _band_noise(rng, num_samples, 100, 7500)


def synthesize(label: int, rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """One clip of class `label` [num_samples] float32 in [-1, 1], with random nuisances."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in [0, {NUM_CLASSES}); got {label}")
    name = CLASS_NAMES[label]
    t = np.arange(num_samples) / SAMPLE_RATE
    f0 = np.full(num_samples, 110 * 2 ** rng.uniform(0, 3))  # 110-880 Hz
    if name == "steady_harmonic":
        sound = _harmonic(rng, f0, num_samples)
    elif name in ("rising_glide", "falling_glide"):
        octaves = rng.uniform(0.4, 1.0) * (1 if name == "rising_glide" else -1)
        sound = _harmonic(rng, f0 * 2 ** (octaves * t / t[-1] - octaves / 2), num_samples)
    elif name == "vibrato":
        depth = rng.uniform(0.03, 0.06)
        modulation = np.sin(2 * np.pi * rng.uniform(4, 7) * t + rng.uniform(0, 2 * np.pi))
        sound = _harmonic(rng, f0 * (1 + depth * modulation), num_samples)
    elif name == "tremolo":
        modulation = np.sin(2 * np.pi * rng.uniform(6, 12) * t + rng.uniform(0, 2 * np.pi))
        sound = _harmonic(rng, f0, num_samples) * (1 + rng.uniform(0.7, 1.0) * modulation) / 2
    elif name == "noise_band":
        centre = 300 * 2 ** rng.uniform(0, 4)  # 300-4800 Hz
        half_width = 2 ** (rng.uniform(1 / 3, 1) / 2)
        sound = _band_noise(rng, num_samples, centre / half_width, centre * half_width)
    elif name in ("slow_clicks", "fast_clicks"):
        rate = rng.uniform(3, 6) if name == "slow_clicks" else rng.uniform(15, 30)
        sound = _pulses(rng, num_samples, rate)
    elif name == "sweeps":
        sound = _sweeps(rng, num_samples)
    else:
        sound = _bursts(rng, num_samples)
    # Nuisances: level (-30 to -6 dBFS peak) and white background noise at 5-30 dB SNR.
    sound = sound / max(np.max(np.abs(sound)), 1e-9)
    signal_power = np.mean(sound**2)
    noise = rng.standard_normal(num_samples) * np.sqrt(
        signal_power / 10 ** (rng.uniform(5, 30) / 10)
    )
    clip = (sound + noise) * 10 ** (rng.uniform(-30, -6) / 20)
    return np.clip(clip, -1, 1).astype(np.float32)


SPLITS = ("pretrain", "probe_train", "probe_test")


def make_corpus(
    clips_per_class: int, seconds: float, seed: int, split: str = "pretrain"
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced corpus: waveforms [N, samples] float32 at 16 kHz and labels [N] (class-major).

    Clip i (label i // clips_per_class) is drawn from `np.random.default_rng((seed, s, i))`,
    s the index of `split` in SPLITS: the splits are independent draws (held-out clips for
    the probe), and any clip can be regenerated on its own.
    """
    if clips_per_class < 1 or seconds <= 0:
        raise ValueError(
            f"need clips_per_class >= 1 and seconds > 0; got {clips_per_class}, {seconds}"
        )
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    num_samples = int(round(seconds * SAMPLE_RATE))
    labels = np.repeat(np.arange(NUM_CLASSES), clips_per_class)
    stream = SPLITS.index(split)
    waveforms = np.stack(
        [
            synthesize(int(label), np.random.default_rng((seed, stream, i)), num_samples)
            for i, label in enumerate(labels)
        ]
    )
    return waveforms, labels


def pretraining_corpus(config):
    """The corpus `config.data.source = "synthetic"` pretrains on (an
    `matpac_keras.training.inputs.InMemoryCorpus`, labels left out): `config.data.synthetic`'s
    `clips_per_class` x 10 classes of `seconds` each, drawn from the run's seed; the clips
    are made when the run starts. Raises InputError naming a field that cannot make one."""
    from matpac_keras.errors import InputError
    from matpac_keras.training.inputs import InMemoryCorpus

    clips, seconds = config.data.synthetic.clips_per_class, config.data.synthetic.seconds
    if clips < 1:
        raise InputError(f"config.data.synthetic.clips_per_class must be at least 1; got {clips}")
    if seconds <= 0:
        raise InputError(f"config.data.synthetic.seconds must be positive; got {seconds}")
    return InMemoryCorpus(
        description="the synthetic demo corpus (config.data.synthetic)",
        num_clips=clips * NUM_CLASSES,
        num_samples=int(round(seconds * SAMPLE_RATE)),
        make_waveforms=lambda: make_corpus(clips, seconds, config.seed)[0],
    )


def probe_data(config):
    """The demo's probe clips (`matpac_keras.training.probe.ProbeClips`): independent held-out
    draws of the corpus, `config.evaluate.clips_per_class` per class to fit the probe and as
    many to score it, `config.data.synthetic.seconds` long."""
    from matpac_keras.training.probe import ProbeClips

    clips, seconds = config.evaluate.clips_per_class, config.data.synthetic.seconds
    train_x, train_y = make_corpus(clips, seconds, config.seed, "probe_train")
    test_x, test_y = make_corpus(clips, seconds, config.seed, "probe_test")
    return ProbeClips("held-out synthetic clips", list(train_x), train_y, list(test_x), test_y)
