"""metrics.jsonl: a row per logged step, non-finite values kept readable, resumes de-duplicated."""

import json

import pytest

from matpac_keras.training.metrics_log import METRICS_FILE, MetricsWriter, read_metrics

pytestmark = pytest.mark.single_backend


def test_rows_and_non_finite_values(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(1, {"loss": 2.5, "lr": 1e-4})
    writer.write(2, {"loss": float("nan"), "lr": float("inf")})
    writer.close()
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "loss": 2.5, "lr": 1e-4},
        {"step": 2, "loss": "nan", "lr": "inf"},
    ]


def test_resume_drops_rows_after_the_checkpoint_and_torn_lines(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    for step in range(1, 8):
        writer.write(step, {"loss": float(step)})
    writer.close()
    with open(tmp_path / METRICS_FILE, "a") as f:
        f.write('{"step": 8, "lo')  # killed mid-write
    assert [row["step"] for row in read_metrics(tmp_path)] == list(range(1, 8))
    writer = MetricsWriter(tmp_path, resume_step=4, tensorboard=False)  # resumed from step 4
    writer.write(5, {"loss": 50.0})
    writer.close()
    rows = read_metrics(tmp_path)
    assert [(row["step"], row["loss"]) for row in rows] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 50)]


def test_fresh_workdir_has_no_rows(tmp_path):
    assert read_metrics(tmp_path) == []
