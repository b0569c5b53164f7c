"""Quiet start-up: TensorFlow's C++ start-up lines kept off the terminal unless asked for.

Importing TensorFlow (and tensorflow-text, which keras-hub loads) prints lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...

from C++, before any logging setting applies (`TF_CPP_MIN_LOG_LEVEL` does not hide them). The
CLIs install `quiet_imports()` unless `--verbosity` is 1 or more: while those two packages are
first imported, the process's stderr (file descriptor 2) points at /dev/null. Python exceptions
are unaffected (an import error still propagates and is reported), and TensorFlow's later C++
log lines are limited by `TF_CPP_MIN_LOG_LEVEL`, set to 3 unless the environment sets it: the
`tensorflow` wheel logs "failed call to cuInit" as an error on every machine without a GPU
(failures that matter reach Python as exceptions).
"""

import contextlib
import importlib.abc
import os
import sys
from collections.abc import Iterator

QUIET_PACKAGES = frozenset({"tensorflow", "tensorflow_text"})


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 points at /dev/null for the block (C++ writes included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # resource readers, get_data, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with stderr_to_devnull():
            self._loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds QUIET_PACKAGES with the normal machinery and runs their import quietly."""

    def find_spec(self, name, path=None, target=None):
        if name not in QUIET_PACKAGES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def asks_for_verbosity(argv: list[str]) -> bool:
    """Whether the command line sets absl's `--verbosity` (or `-v`) to 1 or more."""
    for i, arg in enumerate(argv):
        for flag in ("--verbosity", "-v"):
            value = None
            if arg.startswith(flag + "="):
                value = arg[len(flag) + 1 :]
            elif arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            if value is not None:
                try:
                    return int(value) >= 1
                except ValueError:
                    return False
    return False


def quiet_imports() -> None:
    """Installs the quiet import of QUIET_PACKAGES (once; packages already imported are left)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
