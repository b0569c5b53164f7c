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


class _Loader(importlib.abc.Loader):
    """Runs a module through its own loader (which the module then shows), then calls back."""

    def __init__(self, loader, executed):
        self._loader = loader
        self._executed = executed

    def __getattr__(self, name):  # get_code (runpy), get_source, is_package, ...
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self._loader
        self._executed(module, self._loader)


class _RegisterWhenKerasHubIsLoaded(importlib.abc.MetaPathFinder):
    """Calls `register()` once keras-hub is imported and no module of this package is halfway
    through its own import (one of them may be what imports keras-hub: registering then would
    import it again, half done); then leaves `sys.meta_path`."""

    def __init__(self):
        self._depth = 0  # modules of this package being executed, nested

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _REGISTERING_MODULE and not fullname.startswith(__name__ + "."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, self._executed)
                return spec
        return None

    def _executed(self, module, loader):
        own = module.__name__ != _REGISTERING_MODULE
        self._depth += own
        try:
            loader.exec_module(module)
        finally:
            self._depth -= own
        if self._depth == 0 and _keras_hub_loaded() and self in sys.meta_path:
            sys.meta_path.remove(self)
            register()


def _keras_hub_loaded() -> bool:
    """Whether keras-hub is imported (a `None` in `sys.modules` blocks it: not imported)."""
    return sys.modules.get(_REGISTERING_MODULE) is not None


if _keras_hub_loaded():
    register()
elif not any(isinstance(finder, _RegisterWhenKerasHubIsLoaded) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasHubIsLoaded())
