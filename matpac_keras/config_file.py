"""Config files (`configs/*.py`) loaded as `--config=<path>[:<variant>]` loads them; no backend
is imported, so a config file can load another cheaply (`configs/demo.py` extends
`configs/matpac.py`)."""

import importlib.util
import os
import pathlib

from ml_collections import ConfigDict


def load_config(path: str | os.PathLike, arg: str | None = None) -> ConfigDict:
    """`get_config(arg)` of the config file at `path`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {os.fspath(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
