"""The Free Spoken Digit Dataset as a demo: pretraining on its train recordings, a digit probe.

FSDD (https://github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0) holds 3,000 8 kHz
recordings named `<digit>_<speaker>_<index>.wav` (6 speakers x 10 digits x 50 repetitions). Its
standard split holds repetitions 0-4 out for testing: 300 test clips, 2,700 train clips.
`TEST_PATTERN` excludes the test clips from a folder source (`data.exclude`), so pretraining
sees the train recordings only; `probe_data` labels the digits for the run's probe.
"""

import pathlib
import re

import numpy as np

from matpac_keras.audio import SAMPLE_RATE, load_audio
from matpac_keras.errors import InputError

TEST_PATTERN = "*_[0-4].wav"  # repetitions 0-4: the standard test split
PROBE_SECONDS = 1.0  # probe clips are zero-padded (or cut, centred) to this length
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


def recordings(folder) -> list[tuple[pathlib.Path, int, bool]]:
    """(path, digit, is_test) of every `<digit>_<speaker>_<index>.wav` in `folder`, sorted."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: FSDD recordings folder not found")
    found = []
    for path in sorted(folder.glob("*.wav")):
        match = _NAME.match(path.stem)
        if match is not None:
            found.append((path, int(match[1]), int(match[3]) < 5))
    if not found:
        raise InputError(f"{folder}: no <digit>_<speaker>_<index>.wav recordings")
    return found


def fixed_length(waveform: np.ndarray, samples: int) -> np.ndarray:
    """`waveform` zero-padded at both ends, or cut around its centre, to `samples`."""
    if len(waveform) >= samples:
        start = (len(waveform) - samples) // 2
        return waveform[start : start + samples]
    before = (samples - len(waveform)) // 2
    return np.pad(waveform, (before, samples - len(waveform) - before))


def probe_data(config):
    """The digit probe's clips (`matpac_keras.training.probe.ProbeClips`): the train recordings
    of the folder `config.data.source` to fit it, the 300 test recordings to score it, each
    `PROBE_SECONDS` long (FSDD clips are 0.1-2.3 s, median 0.42 s)."""
    from matpac_keras.training.probe import ProbeClips

    samples = int(PROBE_SECONDS * SAMPLE_RATE)
    split = {True: ([], []), False: ([], [])}
    for path, digit, is_test in recordings(config.data.source):
        waveforms, labels = split[is_test]
        waveforms.append(fixed_length(load_audio(path, min_samples=1), samples))
        labels.append(digit)
    (train_x, train_y), (test_x, test_y) = split[False], split[True]
    return ProbeClips("held-out FSDD digits", train_x, np.array(train_y), test_x, np.array(test_y))
