"""Strict loading (issue 25, items 3 and 8): a preset or `.keras` whose config disagrees with
its weights is refused naming the first mismatch, and out-of-range sizes (a tampered
`max_frames=1e9`) are refused before anything is allocated.
"""

import json
import shutil
import sys
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

from matpac_keras import saving
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.errors import InputError
from tests.cli.run_cli import peak_rss

pytestmark = pytest.mark.single_backend


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 3-block tiny backbone as a preset and as a `.keras` file."""
    folder = tmp_path_factory.mktemp("models")
    backbone = MatpacBackbone(embed_dim=32, depth=3, num_heads=2, max_frames=64)
    saving.save_preset(backbone, folder / "preset")
    backbone.save(folder / "model.keras")
    return folder


def _tampered_preset(models, tmp_path, **changes):
    preset = tmp_path / "tampered"
    shutil.copytree(models / "preset", preset)
    config = json.loads((preset / "config.json").read_text())
    config["config"].update(changes)
    (preset / "config.json").write_text(json.dumps(config))
    return preset


def _tampered_keras(models, tmp_path, **changes):
    path = tmp_path / "tampered.keras"
    with zipfile.ZipFile(models / "model.keras") as source, zipfile.ZipFile(path, "w") as out:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                config = json.loads(data)
                config["config"].update(changes)
                data = json.dumps(config)
            out.writestr(name, data)
    return path


def test_untampered_models_load(models):
    assert saving.load_backbone(models / "preset").depth == 3
    assert saving.load_backbone(models / "model.keras").depth == 3


@pytest.mark.parametrize("kind", ["preset", "keras"])
def test_depth_lowered_beside_deeper_weights_is_refused(models, tmp_path, kind):
    make = _tampered_preset if kind == "preset" else _tampered_keras
    path = make(models, tmp_path, depth=1)
    with pytest.raises(InputError) as refused:
        saving.load_backbone(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: the config and the weights disagree (24 mismatches; ")
    assert "first: encoder/blocks/transformer_block_1/attn/proj/vars/0 (32, 32) in the weights" in (
        message
    )
    assert "not used by the model" in message


def test_depth_raised_beyond_the_weights_is_refused(models, tmp_path):
    path = _tampered_keras(models, tmp_path, depth=4)
    with pytest.raises(InputError, match=r"transformer_block_3/attn/proj/vars/0 \(32, 32\) is "):
        saving.load_backbone(path)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"depth": -2}, "depth=-2: must be in [1, 256]"),
        ({"max_frames": 1e9}, "max_frames=1000000000.0: expected an integer"),
        ({"max_frames": 10**9}, "max_frames=1000000000: must be in [1, 65536]"),
        ({"num_heads": 0}, "num_heads=0: must be in [1, 1024]"),
        ({"embed_dim": 30}, "embed_dim=30 must be a multiple of 4 and of num_heads=2"),
    ],
)
def test_out_of_range_sizes_are_refused_before_allocating(models, tmp_path, changes, reason):
    for path in (
        _tampered_preset(models, tmp_path, **changes),
        _tampered_keras(models, tmp_path, **changes),
    ):
        start = time.monotonic()
        with pytest.raises(InputError) as refused:
            saving.load_backbone(path)
        assert time.monotonic() - start < 5
        assert str(refused.value) == f"{path}: invalid " + (
            f"preset config ({reason})" if path.is_dir() else f"model config ({reason})"
        )


def test_embed_with_a_huge_max_frames_fails_fast_in_one_line(models, tmp_path):
    """The issue's preset allocated 74.5 GiB (8.4 GB peak RSS) before failing."""
    preset = _tampered_preset(models, tmp_path, max_frames=1e9)
    clip = tmp_path / "a.wav"
    sf.write(clip, np.zeros(16000, "int16"), 16000)
    command = [sys.executable, "-m", "matpac_keras.cli.embed", f"--model={preset}"]
    peak, stderr = peak_rss([*command, f"--output={tmp_path}/e.npz", str(clip)], ok=False)
    assert stderr.strip().splitlines() == [
        f"Error: {preset}: invalid preset config (max_frames=1000000000.0: expected an integer)"
    ]
    assert peak < 3 * 2**30, f"peak RSS {peak / 2**30:.1f} GiB"
