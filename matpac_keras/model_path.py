"""Where a model is read from: a `.keras` file or a keras-hub preset directory.

Checked by the CLIs before anything heavy is imported, so a mistyped `--model` fails at once;
`saving.py` reads what passes.
"""

import os

from matpac_keras.errors import InputError


def check_model_path(path: str | os.PathLike, flag: str = "--model") -> None:
    """Raises, naming `flag`, unless `path` is an existing `.keras` file or a folder (a preset,
    whose contents `saving.load_backbone` checks).

    Raises:
        FileNotFoundError: nothing at `path`.
        InputError: a file that is not `.keras` (e.g. a `.pt` checkpoint, for matpac-convert).
    """
    text = os.fspath(path)
    if not os.path.exists(text):
        raise FileNotFoundError(f"{flag} {text!r}: no such file or preset directory")
    if not os.path.isdir(text) and not text.endswith(".keras"):
        raise InputError(
            f"{flag} {text!r}: expected a .keras file or a preset directory (convert .pt "
            "checkpoints with matpac-convert)"
        )
