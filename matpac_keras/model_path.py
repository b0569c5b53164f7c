"""Where a model is read from: a `.keras` file or a keras-hub preset directory.

Checked by the CLIs before anything heavy is imported, so a mistyped `--model` fails at once;
`saving.py` reads what passes.
"""

import hashlib
import os
import pathlib

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


def content_digest(path) -> str:
    """blake2b of a `.keras` file's bytes, or of a preset folder's files (names and bytes)."""
    path = pathlib.Path(path)
    digest = hashlib.blake2b(digest_size=16)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(f"{file.relative_to(path) if path.is_dir() else ''}\0".encode())
        with open(file, "rb") as data:
            digest.update(hashlib.file_digest(data, "blake2b").digest())
    return digest.hexdigest()
