"""What embedding a split costs on this machine: wall time and peak memory per clip second.

`measure` embeds a split's clips batch by batch (as the features are computed) and returns:

- `ms_per_clip_second`: the wall time of the embedding calls alone (log-mel, windows, encoder,
  aggregation: `time.perf_counter` around each call; reading and decoding the dataset is not
  counted), in milliseconds, over the seconds of audio embedded. Run warm: with `warm_up`, the
  split is embedded once first, untimed, so that no compilation (one per input shape) is timed.
- `peak_memory_mb`: the largest growth of the process's resident memory during one batch's
  embedding call, in MiB (2^20 bytes): before each call the freed heap is returned to the system
  (glibc `malloc_trim`) and the kernel's peak-RSS mark is reset to the current RSS (writing 5 to
  /proc/self/clear_refs); after it, the peak (VmHWM of /proc/self/status) minus the RSS before.
  It covers every allocation of the call, the backend's tensors and the NumPy arrays alike, but
  not memory that the backend's own allocator kept from earlier calls and reuses. Linux only:
  NaN elsewhere, or where /proc/self/clear_refs cannot be written.
"""

import ctypes
import ctypes.util
import dataclasses
import gc
import math
import time
from collections.abc import Callable, Iterable

import numpy as np

from matpac_keras.audio import SAMPLE_RATE

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


@dataclasses.dataclass(frozen=True)
class Cost:
    """Measured cost of embedding `clip_seconds` of audio (see the module docstring)."""

    clip_seconds: float
    wall_seconds: float
    peak_memory_mb: float

    @property
    def ms_per_clip_second(self) -> float:
        return 1000 * self.wall_seconds / self.clip_seconds


def _status_kib(field: str) -> int:
    with open(_STATUS, encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{_STATUS} has no {field}")


def _release_heap() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


class PeakMemory:
    """`with PeakMemory() as peak: ...` -> `peak.mb`: the resident memory's largest growth over
    the block in MiB (NaN where the peak cannot be reset: not Linux, or not permitted)."""

    def __enter__(self) -> "PeakMemory":
        self.mb, self.start = math.nan, None
        _release_heap()
        try:
            with open(_CLEAR_REFS, "w", encoding="ascii") as f:
                f.write("5")
            self.start = _status_kib("VmRSS")
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        if self.start is not None:
            self.mb = max(0, _status_kib("VmHWM") - self.start) / 1024


def measure(
    embed: Callable[[list[np.ndarray]], np.ndarray],
    batches: Callable[[], Iterable[list[np.ndarray]]],
    warm_up: bool = True,
) -> Cost:
    """The cost of `embed` on the waveform batches (16 kHz, 1-D each) that `batches()` yields,
    once warm (`warm_up`: embedded once, untimed, first)."""
    if warm_up:
        for waveforms in batches():
            embed(waveforms)
    samples, wall, peaks = 0, 0.0, []
    for waveforms in batches():
        with PeakMemory() as memory:
            start = time.perf_counter()
            embed(waveforms)
            wall += time.perf_counter() - start
        samples += sum(len(w) for w in waveforms)
        peaks.append(memory.mb)
    if not samples:
        raise ValueError("no clips to measure")
    peak = math.nan if any(math.isnan(p) for p in peaks) else max(peaks)
    return Cost(samples / SAMPLE_RATE, wall, peak)
