"""`import matpac_keras` alone registers the model family: keras-hub's own `from_preset` (and
the tasks' through the package's names) load MATPAC presets in a fresh process that imports no
submodule (issue #23, item 4)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.saving import save_preset
from tests.pretrainer_tiny import tiny_pretrainer

# The user's program: keras-hub's base classes only, no matpac_keras submodule.
LOAD = """
import json, sys
{imports}
import keras
import numpy as np
backbone = keras_hub.models.Backbone.from_preset(sys.argv[1] + "/backbone")
converter = keras_hub.layers.AudioConverter.from_preset(sys.argv[1] + "/backbone")
# keras-hub has no audio-classifier base class: the tasks are reached as the package's names.
classifier = matpac_keras.MatpacAudioClassifier.from_preset(sys.argv[1] + "/classifier")
pretrainer = matpac_keras.MatpacPretrainer.from_preset(sys.argv[1] + "/pretrainer")
waveform = np.load(sys.argv[1] + "/waveform.npy")
print(json.dumps({{
    "classes": [type(m).__name__ for m in (backbone, converter, classifier, pretrainer)],
    "tokens": keras.ops.convert_to_numpy(backbone(converter(waveform))).tolist(),
}}))
"""
IMPORTS = [
    pytest.param("import keras_hub\nimport matpac_keras", id="keras_hub first (the README's)"),
    # The registration when keras-hub is imported later does not depend on the backend.
    pytest.param(
        "import matpac_keras\nimport keras_hub",
        id="matpac_keras first",
        marks=pytest.mark.single_backend,
    ),
    # A module of the package that imports keras-hub itself: registering must wait for it.
    pytest.param(
        "import matpac_keras.backbone\nimport keras_hub",
        id="a submodule first",
        marks=pytest.mark.single_backend,
    ),
]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    keras.utils.set_random_seed(0)
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    save_preset(backbone, root / "backbone")
    MatpacAudioClassifier.from_preset(str(root / "backbone"), num_classes=3).save_to_preset(
        root / "classifier"
    )
    tiny_pretrainer().save_to_preset(root / "pretrainer")
    waveform = np.random.default_rng(0).normal(scale=0.1, size=(2, 8000)).astype("float32")
    np.save(root / "waveform.npy", waveform)
    return root, backbone, waveform


def run_fresh(imports: str, root) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LOAD.format(imports=imports), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


@pytest.mark.parametrize("imports", IMPORTS)
def test_from_preset_in_a_fresh_process(presets, imports):
    root, backbone, waveform = presets
    result = run_fresh(imports, root)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["classes"] == [
        "MatpacBackbone",
        "MatpacAudioConverter",
        "MatpacAudioClassifier",
        "MatpacPretrainer",
    ]
    from matpac_keras.audio_converter import MatpacAudioConverter

    expected = backbone(MatpacAudioConverter()(waveform))
    np.testing.assert_allclose(loaded["tokens"], keras.ops.convert_to_numpy(expected), atol=1e-5)


@pytest.mark.single_backend
def test_without_the_package_import_nothing_is_registered(presets):
    """The check can fail: keras-hub alone does not know the MATPAC classes."""
    root, _, _ = presets
    without = "import keras_hub\nimport types\nmatpac_keras = types.SimpleNamespace()"
    result = run_fresh(without, root)
    assert result.returncode != 0
    assert "no class registered with Keras for matpac_keras>MatpacBackbone" in result.stderr


@pytest.mark.single_backend
def test_the_import_itself_loads_no_keras():
    """`import matpac_keras` stays cheap: neither Keras nor keras-hub nor TensorFlow."""
    code = (
        "import sys, matpac_keras\n"
        "print(sorted(m for m in ('keras', 'keras_hub', 'tensorflow', 'jax', 'torch')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
