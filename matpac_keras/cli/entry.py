"""The console entry points' shared start: `--help` and one-line errors for every command.

`run_app` runs a CLI's `main` under absl with two additions: `--help` shows the command's
docstring and flags, and an error the user can fix is printed as one line on stderr,

    Error: <file or argument>: <reason>

with exit status 1 (the traceback too with `--verbosity=1`, which also shows TensorFlow's C++
start-up lines). User errors are
`matpac_keras.errors.InputError` and its subclasses, `app.UsageError`, a missing, unreadable or
wrong-kind file (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError), an
OSError of a full, read-only or forbidden file system (ENOSPC, EDQUOT, EROFS, EACCES, EPERM) or
a library's error saying the disk is full (h5py's, TensorFlow's ResourceExhaustedError:
`outputs.write_failure`; the process then ends at once, as a library's half-written objects
would print tracebacks or crash when torn down), and a bad flag value (absl's flag parsing
errors, a `--config.<field>` of the wrong type or of a field the config file lacks). Any other
exception is a bug and keeps its traceback.
"""

import os
import sys
import traceback
import types
from difflib import get_close_matches

from absl import app, flags
from ml_collections import ConfigDict

from matpac_keras.errors import InputError
from matpac_keras.outputs import write_failure

USER_ERRORS = (
    InputError,
    app.UsageError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def is_user_error(error: BaseException) -> bool:
    """Whether `error` is one the user can fix (printed as one line) rather than a bug."""
    if isinstance(error, USER_ERRORS):
        return True
    return write_failure(error) is not None


def error_line(error: BaseException) -> str:
    """`Error: <message>` on one line; an OSError with a file name names the file first."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        message = f"{error.filename}: {error.strerror}"
        if error.filename2 is not None:
            message = f"{error.filename} -> {error.filename2}: {error.strerror}"
    elif isinstance(error, OSError) and error.strerror:
        message = error.strerror
    else:
        message = str(error) or type(error).__name__
    return "Error: " + " ".join(message.split())


def _verbose() -> bool:
    try:
        return flags.FLAGS["verbosity"].value >= 1
    except (KeyError, flags.UnparsedFlagAccessError):
        return False


def _report_user_errors(main):
    """`main`, with user errors printed as one line and exit status 1."""

    def wrapped(argv):
        try:
            return main(argv)
        except BaseException as error:
            if not is_user_error(error):
                raise
            if _verbose():
                traceback.print_exc(file=sys.stderr)
            print(error_line(error), file=sys.stderr, flush=True)
            code = getattr(error, "exitcode", 1) or 1
            if write_failure(error):
                # A library that failed to write (h5py on a full disk) leaves objects whose
                # teardown prints "Exception ignored ... __dealloc__" tracebacks and can crash
                # the interpreter at exit (SIGSEGV): the outputs are atomic, so end here.
                sys.stdout.flush()
                os._exit(code)
            sys.exit(code)

    return wrapped


_TRACEBACK = "Traceback (most recent call last):"


def _parse_flags(argv):
    """absl's flag parsing, with a bad or missing flag value reported as one line.

    A config file that fails to load (ml_collections puts the traceback into the flag error's
    message) is reported by the traceback's last line, the exception itself.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        message = str(error)
        if _TRACEBACK in message:
            head, _, trace = message.partition(_TRACEBACK)
            message = head + trace.strip().splitlines()[-1]
    except (AttributeError, KeyError):
        message = _unknown_override(argv)
        if message is None:
            raise
    line = error_line(flags.Error(message))
    print(f"{line} (see --helpshort)", file=sys.stderr, flush=True)
    sys.exit(1)


def _unknown_override(argv: list[str]) -> str | None:
    """'--config.a.b=1: the config has no field a.b' for the first override of a field that a
    `--config` file's config lacks (ml_collections raises a bare AttributeError or KeyError
    naming only the last key), else None."""
    specs = [a.removeprefix("--config=") for a in argv if a.startswith("--config=")]
    if not specs or "config" not in flags.FLAGS:
        return None
    try:
        config = flags.FLAGS["config"].parser.parse(specs[-1])  # the file, without overrides
    except Exception:  # noqa: BLE001 - a file that fails to load: not an unknown field
        return None
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        path = arg.removeprefix("--config.").split("=")[0].split(".")
        node = config
        for depth, key in enumerate(path):
            if not isinstance(node, ConfigDict) or key not in node:
                fields = list(node) if isinstance(node, ConfigDict) else []
                close = [".".join(path[:depth] + [m]) for m in get_close_matches(key, fields, 1)]
                hint = f" (did you mean --config.{close[0]}?)" if close else ""
                return f"{arg}: the config has no field {'.'.join(path[: depth + 1])}{hint}"
            node = node[key]
    return None


def run_app(module: types.ModuleType, main, **kwargs) -> None:
    """`app.run(main)` for the CLI `module`, whose docstring and flags `--help` then shows.

    absl's help describes the `__main__` module, which for an installed console script is the
    generated wrapper: without this, `matpac-embed --help` lists no flags of its own. User
    errors raised by `main` are printed as one line (see the module docstring). TensorFlow's
    C++ start-up lines are hidden unless `--verbosity` is 1 or more (`cli/__init__.py`).
    """
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    kwargs.setdefault("flags_parser", _parse_flags)
    app.run(_report_user_errors(main), **kwargs)
