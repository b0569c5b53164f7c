"""Result tables: CI values, markdown and CSV content."""

import csv
import io

import pytest
from scipy import stats

from matpac_keras.evaluation import report
from matpac_keras.evaluation.protocol import TaskScores

pytestmark = pytest.mark.single_backend


def _row(runs, task="esc50"):
    scores = TaskScores(
        task,
        "accuracy",
        list(range(len(runs))),
        runs,
        [[r] for r in runs],
        ["fold1"],
        [[3]] * len(runs),
    )
    return report.Row(scores, "m.keras", "paper")


def test_csv_and_markdown_hold_mean_and_t_interval(tmp_path):
    runs = [0.90, 0.92, 0.91, 0.95, 0.93]
    rows = [_row(runs), _row([0.5], task="gtzan")]
    half = 100 * stats.t.ppf(0.975, 4) * stats.sem(runs)
    md_path, csv_path = report.write(rows, str(tmp_path))
    table = list(csv.DictReader(io.StringIO(open(csv_path).read())))
    assert float(table[0]["mean"]) == pytest.approx(92.2, abs=1e-4)
    assert float(table[0]["ci95"]) == pytest.approx(half, abs=1e-4)
    assert table[0]["scores"] == "90.0000;92.0000;91.0000;95.0000;93.0000"
    assert table[0]["seeds"] == "0;1;2;3;4" and table[0]["ci_method"] == "t"
    assert table[0]["best_epochs"] == "4;4;4;4;4"  # 0-based 3 -> 1-based 4
    assert table[1]["ci95"] == "" and table[1]["runs"] == "1"
    markdown = open(md_path).read()
    assert (
        f"| esc50 | accuracy | 92.2 ± {half:.1f} | 93.1 ± 0.1 | 5 | 90.00 92.00 91.00 95.00 93.00 "
        "| 4 4" in markdown
    )
    assert "| gtzan | accuracy | 50.0 | 87.6 ± 0.0 | 1 |" in markdown


def test_normal_interval():
    runs = [0.90, 0.92, 0.91, 0.95, 0.93]
    mean, half = _row(runs).summary("normal")
    assert half == pytest.approx(100 * 1.959964 * stats.tstd(runs) / 5**0.5, rel=1e-6)


def test_published_matpac_plusplus_scores_beside_ours(tmp_path):
    rows = [_row([0.4, 0.5], task="mtg_genre"), _row([0.5, 0.6], task="urbansound8k")]
    md_path, csv_path = report.write(rows, str(tmp_path))
    markdown = open(md_path).read()
    assert "| task | metric | mean ± 95% CI | MATPAC++ (published) | runs |" in markdown
    assert "| mtg_genre | accuracy | 45.0 ± 63.5 |  | 2 |" in markdown  # none published: blank
    assert "| urbansound8k | accuracy | 55.0 ± 63.5 | 89.7 ± 0.3 | 2 |" in markdown
    assert "Published: MATPAC++ (Quelennec et al., arXiv 2508.12709) Table 1" in markdown
    table = list(csv.DictReader(io.StringIO(open(csv_path).read())))
    assert [
        (r["published_matpac_plusplus"], r["published_matpac_plusplus_ci95"]) for r in table
    ] == [
        ("", ""),
        ("89.7", "0.3"),
    ]


def test_published_table_holds_the_papers_seven_tasks():
    """SPEC section 7's scores; none for MTG-Jamendo (no source gives one)."""
    expected = {
        "MATPAC++": [85.6, 76.8, 87.6, 40.8, 56.1, 93.1, 89.7],
        "MATPAC": [85.3, 74.3, 85.3, 41.1, 55.2, 93.5, 89.4],
    }
    tasks = ["openmic", "nsynth", "gtzan", "magnatagatune", "fsd50k", "esc50", "urbansound8k"]
    for model, means in expected.items():
        assert [report.published(t, model)[0] for t in tasks] == means
        assert set(report.PUBLISHED[model].scores) == set(tasks)
    assert report.published("mtg_top50") is None
