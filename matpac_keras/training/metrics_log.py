"""Training metrics to `<workdir>/metrics.jsonl` (one JSON object per logged step) and, when
TensorFlow is installed, to TensorBoard event files under `<workdir>/tensorboard`."""

import json
import math
import os
import pathlib

from absl import logging

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The logged rows of a workdir, in order; a torn last line (a killed run) is skipped."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class MetricsWriter:
    """Appends `{"step": s, name: value, ...}` rows; NaN and infinity are written as strings.

    Args:
        workdir: the run's directory.
        resume_step: rows logged after this step (by a run that was killed after its last
            checkpoint) are dropped, so the file holds each step once. Defaults to 0.
        tensorboard: bool. Also write TensorBoard scalars (needs TensorFlow; without it a
            warning is logged and only the JSON file is written). Defaults to True.
    """

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0, tensorboard: bool = True):
        self.path = pathlib.Path(workdir) / METRICS_FILE
        kept = [row for row in read_metrics(workdir) if row.get("step", 0) <= resume_step]
        temporary = self.path.with_name(METRICS_FILE + ".tmp")
        temporary.write_text("".join(json.dumps(row) + "\n" for row in kept))
        os.replace(temporary, self.path)
        self._file = open(self.path, "a")
        self._tensorboard = None
        if tensorboard:
            try:
                from matpac_keras.training.tensorboard import TensorBoardWriter
            except ImportError:
                logging.warning("TensorFlow is not installed: no TensorBoard events are written")
            else:
                self._tensorboard = TensorBoardWriter(pathlib.Path(workdir) / TENSORBOARD_DIR)

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": int(step)}
        for name, value in values.items():
            value = float(value)
            row[name] = value if math.isfinite(value) else str(value)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            self._tensorboard.write(step, values)

    def close(self) -> None:
        """Closes both files, the second even if the first fails (a full disk: the error of the
        first is raised once both are closed)."""
        try:
            self._file.close()
        finally:
            if self._tensorboard is not None:
                self._tensorboard.close()
