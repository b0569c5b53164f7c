"""The --runtime and --precision flags of matpac-embed and matpac-tag, and the cached encoder
they select.

With --runtime=onnx or openvino the encoder is exported once from the model (under
KERAS_BACKEND=tensorflow) into the cache folder ($MATPAC_ENCODER_CACHE, else
~/.cache/matpac_keras/encoders), keyed by the model file's content
(`encoder_runtime.model_file_key`); a later run finds it there before importing TensorFlow or
Keras, and imports neither.
"""

import sys
from collections.abc import Callable

from absl import app, flags

FLAGS = flags.FLAGS
RUNTIME_HELP = (
    "What runs the encoder: Keras (the backend's), or ONNX Runtime / OpenVINO on the CPU "
    "(exported from the model on first use and cached, keyed by the model file's content; a "
    "cached export runs without TensorFlow or Keras; needs the export extra)."
)
PRECISION_HELP = (
    "The encoder's arithmetic: bfloat16 (with --runtime=openvino) is faster on CPUs with bf16 "
    "instructions, at about 1e-2 relative error."
)


def define_runtime_flags(module_name: str) -> None:
    """Defines --runtime and --precision for the CLI `module_name` (listed by its --help)."""
    if module_name == "__main__":  # run as `python -m`: absl names the module by its file
        module_name = sys.argv[0]
    flags.DEFINE_enum(
        "runtime", "keras", ["keras", "onnx", "openvino"], RUNTIME_HELP, module_name=module_name
    )
    flags.DEFINE_enum(
        "precision", "float32", ["float32", "bfloat16"], PRECISION_HELP, module_name=module_name
    )


def check_runtime_flags() -> None:
    """app.UsageError for flags that do not go together."""
    if FLAGS.precision == "bfloat16" and FLAGS.runtime != "openvino":
        raise app.UsageError("--precision=bfloat16 needs --runtime=openvino")


def runtime_encoder(model: str, layers: bool, load_backbone: Callable[[], object]):
    """The encoder of --runtime (not "keras") for the model file `model`: the cached export if
    there is one (no Keras imported), else exported from `load_backbone()` and cached.
    Returns (encoder, backbone or None when it came from the cache)."""
    from matpac_keras.encoder_runtime import cached_encoder, load_cached_encoder, model_file_key

    options = {"precision": FLAGS.precision} if FLAGS.runtime == "openvino" else {}
    key = model_file_key(model, layers)
    try:
        encoder = load_cached_encoder(key, FLAGS.runtime, **options)
        if encoder is not None:
            return encoder, None
    except (ImportError, ValueError) as error:  # no runtime installed; a stale export
        raise app.UsageError(f"--runtime={FLAGS.runtime}: {error}") from None
    backbone = load_backbone()  # first run with this model: export it (needs TensorFlow)
    try:
        return cached_encoder(backbone, FLAGS.runtime, layers, key=key, **options), backbone
    except (ImportError, ValueError) as error:  # no runtime; export needs TensorFlow
        raise app.UsageError(f"--runtime={FLAGS.runtime}: {error}") from None
