"""Label files of classifier heads: path convention, round trip, and errors naming the file."""

import json

import pytest

from matpac_keras.head_labels import HeadLabels, labels_path, load_head_labels, save_head_labels

pytestmark = pytest.mark.single_backend


def test_round_trip_beside_the_head(tmp_path):
    head = tmp_path / "probe.keras"
    written = save_head_labels(head, ["dog", "rain", "siren"], "sigmoid")
    assert written == labels_path(head) == str(tmp_path / "probe.labels.json")
    with open(written, encoding="utf-8") as file:
        assert json.load(file) == {"labels": ["dog", "rain", "siren"], "activation": "sigmoid"}
    expected = HeadLabels(("dog", "rain", "siren"), "sigmoid")
    assert load_head_labels(head) == load_head_labels(written) == expected


@pytest.mark.parametrize(
    "content, message",
    [
        ({"labels": ["a", "a"], "activation": "softmax"}, "unique"),
        ({"labels": [], "activation": "softmax"}, "non-empty list"),
        ({"labels": ["a", ""], "activation": "none"}, "non-empty string"),
        ({"labels": ["a", 3], "activation": "none"}, "non-empty string"),
        ({"labels": ["a"], "activation": "relu"}, "'activation' must be one of"),
        ({"labels": ["a"]}, "keys 'labels' and 'activation'"),
    ],
)
def test_bad_files_are_named(tmp_path, content, message):
    path = tmp_path / "head.labels.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        load_head_labels(path)
    assert "head.labels.json" in str(error.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.labels.json"):
        load_head_labels(tmp_path / "missing.keras")
    (tmp_path / "broken.labels.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.labels.json: not valid JSON"):
        load_head_labels(tmp_path / "broken.labels.json")
    with pytest.raises(ValueError, match="unique"):
        save_head_labels(tmp_path / "x.keras", ["a", "a"], "softmax")
    assert not (tmp_path / "x.labels.json").exists()
