"""Loading models written by this package, on any backend: `.keras` files and keras-hub presets.

A `.keras` file is a zip archive (`config.json`, `metadata.json`, `model.weights.h5`). Before
Keras reads it, the archive is checked whole (its central directory and every member's CRC), so
a truncated or damaged file is reported as such, naming it, rather than as Keras's "File not
found"; a model that still fails to load is reported the same way, with Keras's reason.

A preset is a keras-hub preset directory (`config.json` of the backbone, `model.weights.h5`,
`metadata.json`, `audio_converter.json`), as `MatpacBackbone.save_to_preset` and
`matpac-convert --output DIR` write it; it loads through keras-hub's `from_preset`. A missing or
invalid config, missing weights or weights that do not load are reported naming the directory.

Loading is strict: a config whose values are out of range (`backbone.check_backbone_config`:
depth, widths, heads, `max_frames`...) is refused before anything is built, and the weights
file must hold exactly the weights the config builds (`check_weights_match`): a weight the
model has no place for (e.g. `depth` lowered beside deeper weights), one it lacks or one of
another shape is refused, naming the first, where Keras would ignore the first silently.
"""

import contextlib
import importlib
import json
import os
import zipfile

import h5py
import keras
import keras_hub
from keras.src.saving import saving_lib

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.audio_converter import MatpacAudioConverter
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.errors import InputError
from matpac_keras.head_labels import labels_path, load_head_labels

MATPAC_MODELS = ("MatpacBackbone", "MatpacPretrainer", "MatpacAudioClassifier", "TokenFeatures")
# Classes of earlier versions that this one cannot rebuild: what to do instead.
RETIRED_MODELS = {
    "MatpacClassifier": "a MatpacClassifier, the fine-tuned classifier of an earlier "
    "matpac-keras, which this version cannot read (it became MatpacAudioClassifier, whose "
    "weights are laid out differently): fine-tune again with matpac-finetune",
}
PRESET_CONFIG = "config.json"
PRESET_WEIGHTS = "model.weights.h5"
TASK_WEIGHTS = "task.weights.h5"
KERAS_WEIGHTS = "model.weights.h5"  # the weights member of a .keras archive
PACKAGE = "matpac_keras"
MATPAC_BACKBONE = "matpac_keras>MatpacBackbone"


class _ShapeRecorder(saving_lib.H5IOStore):
    """A write-mode weights store that records where Keras would save each variable, and its
    shape, without writing anything (`expected_weights`)."""

    def __init__(self):  # no file: nothing of H5IOStore's own state is used
        self.shapes: dict[str, tuple] = {}
        self._where = ""

    def __bool__(self):
        return True

    def make(self, path, metadata=None):
        self._where = f"{path}/vars" if path else "vars"
        return self

    def __setitem__(self, key, value):
        self.shapes[f"{self._where}/{key}"] = tuple(value.shape)


def expected_weights(model: keras.Model, skip: tuple = ()) -> dict[str, tuple]:
    """{dataset path in a `.weights.h5`: shape} of what `model.save_weights` would write, in
    Keras's order, leaving out the layers of `skip` (as a task's weights leave out its
    backbone)."""
    recorder = _ShapeRecorder()
    visited = {id(layer) for layer in skip}
    saving_lib._save_state(model, recorder, None, inner_path="", visited_saveables=visited)
    return recorder.shapes


def stored_weights(weights: h5py.File) -> dict[str, tuple]:
    """{dataset path: shape} of the variables in a `.weights.h5` file."""
    found = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            found[name] = tuple(item.shape)

    weights.visititems(visit)
    return found


def check_weights_match(model: keras.Model, weights, where: str, skip: tuple = ()) -> None:
    """Raises InputError naming `where` and the first mismatch unless the `.weights.h5` file
    `weights` (a path or an open binary file) holds exactly the weights of `model`: none
    unused, none missing, none of another shape. An optimizer's weights (a model saved
    compiled) are not counted."""
    expected = expected_weights(model, skip)
    try:
        with h5py.File(weights, "r") as file:
            stored = stored_weights(file)
    except OSError as error:
        reason = "unreadable weights: " + " ".join(str(error).split())
        raise InputError(f"{where}: corrupt preset or model ({reason})") from None
    # An optimizer's state (a model saved compiled) is no part of what the config builds.
    expected = {k: v for k, v in expected.items() if not k.startswith("optimizer/")}
    stored = {k: v for k, v in stored.items() if not k.startswith("optimizer/")}
    problems = []
    for name, shape in expected.items():
        if name not in stored:
            problems.append(f"{name} {shape} is missing from the weights")
        elif stored[name] != shape:
            problems.append(f"{name} is {stored[name]} in the weights, {shape} in the model")
    problems += [
        f"{name} {shape} in the weights is not used by the model the config builds"
        for name, shape in stored.items()
        if name not in expected
    ]
    if problems:
        raise InputError(
            f"{where}: the config and the weights disagree ({len(problems)} mismatches; "
            f"first: {problems[0]}): a tampered or mixed-up model; refusing to load it"
        )


def _first_line(error: BaseException) -> str:
    """An exception's reason for a one-line message: the text of the exception Keras wrapped
    (after "Exception encountered:"), else its first line (or its type)."""
    text = str(error).strip()
    marker = "Exception encountered:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    return text.splitlines()[0] if text else type(error).__name__


def import_model_module(config: dict) -> None:
    """Imports the module of a saved MATPAC model (`config["module"]`, e.g.
    `matpac_keras.audio_classifier`), which registers its class with Keras: this module
    then needs no import of the higher-level modules whose models it loads. Only modules of this
    package are imported; a config naming any other module is left to Keras (which refuses
    classes it does not know).
    """
    module = str(config.get("module") or "")
    if module == PACKAGE or module.startswith(f"{PACKAGE}."):
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # not a module of this version: Keras reports the class it cannot locate


@contextlib.contextmanager
def weights_from_file():
    """Inside, a Keras variable made with an initializer (`keras.initializers.Initializer`:
    Glorot, truncated normal, ...) is filled with zeros instead of its random draw: for models
    whose weights a file then overwrites (a ViT-B's 85 M draws cost seconds of start-up).
    Loading checks that the file holds every weight; other initial values (seed generators'
    states, plain arrays) are made as usual. Private API (`keras.src.backend.Variable`), pinned
    by the keras==3.15 requirement.
    """
    from keras.src import backend, initializers

    variable = backend.Variable
    draw = variable._initialize_with_initializer
    zeros = initializers.Zeros()

    def fill(self, initializer):
        draw(self, zeros if isinstance(initializer, initializers.Initializer) else initializer)

    variable._initialize_with_initializer = fill
    try:
        yield
    finally:
        variable._initialize_with_initializer = draw


def _corrupt(path: str, reason: str) -> InputError:
    return InputError(f"{path}: corrupt or truncated .keras file ({reason})")


def read_keras_config(path: str | os.PathLike) -> dict:
    """The model config (`config.json`) of a `.keras` file, after checking the archive.

    Raises:
        FileNotFoundError: no file at `path`.
        InputError: not a `.keras` name, not a zip archive, a damaged member, no valid
            `config.json`, or a model class of an earlier version (`RETIRED_MODELS`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not path.endswith(".keras"):
        raise InputError(f"{path}: expected a .keras file (convert .pt files with matpac-convert)")
    if not zipfile.is_zipfile(path):
        raise _corrupt(path, "not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise _corrupt(path, f"member {damaged} fails its CRC check")
            if "config.json" not in archive.namelist():
                raise _corrupt(path, "no config.json")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _corrupt(path, f"config.json is not valid JSON: {e}") from e
    if not isinstance(config, dict) or "class_name" not in config:
        raise _corrupt(path, "config.json holds no model config")
    if config["class_name"] in RETIRED_MODELS and str(config.get("module")).startswith(PACKAGE):
        raise InputError(f"{path}: {RETIRED_MODELS[config['class_name']]}")
    return config


def is_preset(path: str | os.PathLike) -> bool:
    """Whether `path` names a preset directory (rather than a `.keras` file)."""
    return os.path.isdir(path)


def read_preset_config(path: str | os.PathLike) -> dict:
    """The backbone config (`config.json`) of a preset directory, checked.

    Raises:
        InputError: naming the directory: no `config.json`, not valid JSON, not a serialised
            Keras object, or no weights file.
    """
    path = os.fspath(path)
    config_path = os.path.join(path, PRESET_CONFIG)
    if not os.path.isfile(config_path):
        raise InputError(f"{path}: not a model preset (no {PRESET_CONFIG})")
    try:
        with open(config_path, encoding="utf-8") as file:
            config = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{config_path}: corrupt preset config (not valid JSON: {e})") from e
    if not isinstance(config, dict) or "registered_name" not in config:
        raise InputError(f"{config_path}: corrupt preset config (no Keras object in it)")
    if not os.path.isfile(os.path.join(path, PRESET_WEIGHTS)):
        raise InputError(f"{path}: incomplete preset (no {PRESET_WEIGHTS})")
    return config


def _described(config: dict) -> str:
    """What a serialised Keras object is, for a message: its registered name (a package's
    class, e.g. keras_hub>BertBackbone), else its module and class (Keras's own classes have
    no registered name)."""
    if config.get("registered_name"):
        return str(config["registered_name"])
    module, name = config.get("module"), config.get("class_name")
    if name:
        return f"{module}.{name}" if module else str(name)
    return "an unnamed Keras object"


def save_preset(backbone: MatpacBackbone, directory: str | os.PathLike) -> None:
    """Writes `backbone` and its `MatpacAudioConverter` as a keras-hub preset directory."""
    directory = os.fspath(directory)
    backbone.save_to_preset(directory)
    MatpacAudioConverter().save_to_preset(directory)


def load_preset_backbone(path: str | os.PathLike) -> MatpacBackbone:
    """The MatpacBackbone of a preset directory (`keras_hub.models.Backbone.from_preset`).

    Raises:
        InputError: naming the directory: as `read_preset_config`, a preset of another model,
            or weights that do not load (truncated, or of another architecture).
    """
    path = os.fspath(path)
    config = read_preset_config(path)
    name = config["registered_name"]
    import_model_module(config)
    if name is None or keras.saving.get_registered_object(name) is not MatpacBackbone:
        raise InputError(f"{path}: a preset of {_described(config)}, not of {MATPAC_BACKBONE}")
    try:
        with weights_from_file():
            backbone = keras_hub.models.Backbone.from_preset(path, load_weights=False)
    except Exception as e:
        raise InputError(f"{path}: invalid preset config ({_first_line(e)})") from e
    weights = os.path.join(path, PRESET_WEIGHTS)
    check_weights_match(backbone, weights, path)
    try:
        backbone.load_weights(weights)
    except Exception as e:
        raise InputError(f"{path}: corrupt preset ({type(e).__name__}: {_first_line(e)})") from e
    return backbone


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads any Keras model (matpac_keras's or a plain one) from a `.keras` file, or the
    backbone of a preset directory.

    Raises:
        FileNotFoundError: no file at `path`.
        InputError: naming the file: not a `.keras` file, corrupt or truncated, or a model
            Keras cannot rebuild (e.g. of a class this package does not know).
    """
    path = os.fspath(path)
    if is_preset(path):
        return load_preset_backbone(path)
    config = read_keras_config(path)
    import_model_module(config)
    try:
        with weights_from_file():
            model = keras.saving.load_model(path, compile=False)
    except Exception as e:
        reason = _first_line(e)
        if "Could not locate class" in str(e) or "Unknown" in type(e).__name__:
            raise InputError(
                f"{path}: holds a {config.get('class_name')} that cannot be rebuilt ({reason})"
            ) from e
        if isinstance(e, InputError) or "Exception encountered:" in str(e):  # the config's
            raise InputError(f"{path}: invalid model config ({reason})") from e
        _check_keras_weights(_model_of_config(config), path)  # names a weights mismatch
        raise _corrupt(path, f"{type(e).__name__}: {reason}") from e
    _check_keras_weights(model, path)
    return model


def _model_of_config(config: dict) -> keras.Model | None:
    """The model a `.keras` file's config builds, without its weights (None if it does not
    build: then the weights are not to blame)."""
    with contextlib.suppress(Exception):
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if isinstance(model, keras.Model) and model.built:
            return model
    return None


def _check_keras_weights(model: keras.Model | None, path: str) -> None:
    """`check_weights_match` of a `.keras` file's model and its weights member (none: Keras
    says so)."""
    if model is None:
        return
    with zipfile.ZipFile(path) as archive:
        if KERAS_WEIGHTS not in archive.namelist():
            return
        with archive.open(KERAS_WEIGHTS) as weights:
            check_weights_match(model, weights, path)


TASK_CONFIG = "task.json"
WHAT_CLASSIFIERS_ARE = (
    "a classifier is written by matpac-convert (an enc_and_head checkpoint, or --probe) or "
    "by matpac-finetune (classifier.keras)"
)


def is_classifier(path: str | os.PathLike) -> bool:
    """Whether `path` holds a MatpacAudioClassifier (a preset with a `task.json`, or a `.keras`
    file of one), judged from its configs without loading it."""
    path = os.fspath(path)
    if is_preset(path):
        return os.path.isfile(os.path.join(path, TASK_CONFIG))
    return read_keras_config(path).get("class_name") == "MatpacAudioClassifier"


def load_classifier(path: str | os.PathLike) -> MatpacAudioClassifier:
    """The MatpacAudioClassifier of a preset directory (its `task.json`) or a `.keras` file.

    A classifier saved without label names gets those of the head label file beside it
    (`NAME.labels.json`, `matpac_keras.head_labels`), if there is one, and with it
    `multi_label` when that file's activation is "sigmoid".

    Raises:
        FileNotFoundError: nothing at `path`.
        InputError: naming the file: as `load_model`, a backbone-only preset, or a model of
            another kind.
    """
    path = os.fspath(path)
    if is_preset(path):
        read_preset_config(path)
        if not os.path.isfile(os.path.join(path, TASK_CONFIG)):
            raise InputError(
                f"{path}: a backbone preset without a classification head (no {TASK_CONFIG}); "
                + WHAT_CLASSIFIERS_ARE
            )
        try:
            with weights_from_file():
                model = MatpacAudioClassifier.from_preset(path, load_weights=False)
        except Exception as e:
            raise InputError(f"{path}: invalid preset config ({_first_line(e)})") from e
        weights = os.path.join(path, PRESET_WEIGHTS)
        check_weights_match(model.backbone, weights, path)
        task_weights = os.path.join(path, TASK_WEIGHTS)
        has_task_weights = os.path.isfile(task_weights)
        if has_task_weights:
            backbone_layers = tuple(model.backbone._flatten_layers())
            check_weights_match(model, task_weights, path, skip=backbone_layers)
        try:
            model.backbone.load_weights(weights)
            if has_task_weights:
                model.load_task_weights(task_weights)
        except Exception as e:
            reason = f"{type(e).__name__}: {_first_line(e)}"
            raise InputError(f"{path}: corrupt preset ({reason})") from e
    else:
        model = load_model(path)
    if not isinstance(model, MatpacAudioClassifier):
        raise InputError(
            f"{path}: holds a {type(model).__name__}, not a MatpacAudioClassifier; "
            + WHAT_CLASSIFIERS_ARE
        )
    if model.labels is None and os.path.isfile(labels_path(path)):
        sidecar = load_head_labels(labels_path(path))
        if len(sidecar.labels) != model.num_classes:
            raise InputError(
                f"{labels_path(path)}: {len(sidecar.labels)} labels for the "
                f"{model.num_classes} outputs of {path}"
            )
        model.labels = sidecar.labels
        model.multi_label = sidecar.activation == "sigmoid"
    return model


def load_backbone(path: str | os.PathLike) -> MatpacBackbone:
    """The (student) encoder of a preset directory or of a saved backbone, pretrainer or
    classifier (`.keras`).

    Raises:
        FileNotFoundError: no file at `path`.
        InputError: as `load_model`, or the file holds another kind of model.
    """
    path = os.fspath(path)
    if is_preset(path):
        return load_preset_backbone(path)
    config = read_keras_config(path)
    name, module = config.get("class_name"), str(config.get("module") or "")
    if name not in MATPAC_MODELS or not module.startswith("matpac_keras"):
        raise InputError(
            f"{path}: holds a {name} ({module or 'unknown module'}), not a MATPAC model "
            f"(one of {', '.join(MATPAC_MODELS)})"
        )
    model = load_model(path)
    if isinstance(model, MatpacBackbone):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, MatpacBackbone):
        return backbone
    raise InputError(f"{path}: holds a {type(model).__name__}, not a MATPAC model")
