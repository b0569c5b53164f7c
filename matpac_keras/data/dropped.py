"""Counts and logs the clips a tf.data pipeline leaves out (TensorFlow-only package).

A pipeline skips a clip that cannot be decoded (`bad_audio`) or is shorter than its crop
(`too_short`). Each distinct clip is counted once, however many epochs pass over it; the first few
per reason are logged by name, then a running total at every power of ten.
"""

import threading

from absl import logging

BAD_AUDIO = "bad_audio"  # matpac_keras.audio.AudioError: missing, corrupt, empty, NaN/inf
TOO_SHORT = "too_short"  # decodes, but has fewer samples than one crop needs
REASONS = (BAD_AUDIO, TOO_SHORT)


class DroppedClips:
    """Thread-safe record of dropped clips, by reason (tf.data calls it from parallel maps).

    Args:
        log_first: int. Clips logged individually per reason. Defaults to 10.
    """

    def __init__(self, log_first: int = 10):
        if log_first < 0:
            raise ValueError(f"log_first must be >= 0; got {log_first}")
        self.log_first = log_first
        self._names: dict[str, set[str]] = {reason: set() for reason in REASONS}
        self._lock = threading.Lock()

    def record(self, reason: str, name: str, detail: str) -> None:
        """Counts clip `name` as dropped for `reason` (once) and logs it while few are."""
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}; got {reason!r}")
        with self._lock:
            if name in self._names[reason]:
                return
            self._names[reason].add(name)
            count = len(self._names[reason])
        if count <= self.log_first:
            logging.warning("dropped %s (%s): %s", name, reason, detail)
        elif str(count).strip("0") == "1":  # 100, 1000, ...: a running total
            logging.warning("%d distinct clips dropped so far as %s", count, reason)

    @property
    def counts(self) -> dict[str, int]:
        """Distinct clips dropped so far, per reason (every reason present, 0 if none)."""
        with self._lock:
            return {reason: len(names) for reason, names in self._names.items()}

    def names(self, reason: str) -> set[str]:
        """The names (file paths, or TFDS ids) of the clips dropped for `reason`."""
        with self._lock:
            return set(self._names[reason])
