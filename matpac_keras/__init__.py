"""MATPAC and MATPAC++ in Keras 3: models, conversion of official checkpoints, embeddings.

`import matpac_keras` registers the model family with Keras, as any keras-hub model family:
afterwards `keras_hub.models.Backbone.from_preset(dir)`, `keras_hub.layers.AudioConverter
.from_preset(dir)` and `keras_hub.models.Task.from_preset(dir)` load MATPAC presets. The import
itself stays cheap (no Keras, no TensorFlow): the model modules are imported, and so registered,
when keras-hub is imported, or at once if it already is. `matpac_keras.MatpacBackbone` (and the
other names of `_MODELS`) import their module on first use.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# The public model classes, by the module (relative to this package) that defines and registers
# each. Relative names: the modules need this package, not the other way round (BUILD's graph).
_MODELS = {
    "MatpacBackbone": ".backbone",
    "MatpacAudioConverter": ".audio_converter",
    "MatpacAudioClassifier": ".audio_classifier",
    "MatpacAudioClassifierPreprocessor": ".audio_classifier",
    "MatpacPretrainer": ".pretrainer",
}
# keras-hub resolves a preset's `registered_name` ("matpac_keras>MatpacBackbone") in Keras's
# registry of custom objects, which a class joins when its module is imported.
_REGISTERING_MODULE = "keras_hub"

__all__ = sorted(_MODELS)


def register():
    """Imports the model modules, which registers their classes with Keras (idempotent).

    A module that is not installed (a Bazel target that does not depend on it) is left out; one
    that fails to import raises.
    """
    for module in dict.fromkeys(_MODELS.values()):
        if importlib.util.find_spec(module, __name__) is not None:
            importlib.import_module(module, __name__)


def __getattr__(name):
    if name in _MODELS:
        return getattr(importlib.import_module(_MODELS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MODELS))


class _RegisterAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds keras-hub as usual and, once it is executed, calls `register()`."""

    def __init__(self):
        self._spec = None

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _REGISTERING_MODULE or self._spec is not None:
            return None
        sys.meta_path.remove(self)  # one use: keras-hub is imported once per process
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._spec = spec
        wrapped = importlib.util.spec_from_loader(
            fullname,
            self,
            origin=spec.origin,
            is_package=spec.submodule_search_locations is not None,
        )
        wrapped.submodule_search_locations = spec.submodule_search_locations
        wrapped.has_location = spec.has_location
        wrapped.cached = spec.cached
        return wrapped

    def create_module(self, spec):
        return self._spec.loader.create_module(self._spec)

    def exec_module(self, module):
        # The original spec, so that keras-hub's module sees its own loader and file.
        module.__spec__ = self._spec
        module.__loader__ = self._spec.loader
        self._spec.loader.exec_module(module)
        register()


if _REGISTERING_MODULE in sys.modules:
    register()
elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())
