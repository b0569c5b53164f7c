"""The console entry points' shared start: `--help` shows the command's docstring and flags."""

import sys
import types

from absl import app, flags


def run_app(module: types.ModuleType, main, **kwargs) -> None:
    """`app.run(main)` for the CLI `module`, whose docstring and flags `--help` then shows.

    absl's help describes the `__main__` module, which for an installed console script is the
    generated wrapper: without this, `matpac-embed --help` lists no flags of its own.
    """
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, **kwargs)
