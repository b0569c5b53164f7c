"""The command-line programs (console scripts `matpac-*`, or `python -m matpac_keras.cli.<name>`).

Importing this package, which every CLI module does before its own imports, keeps TensorFlow's
C++ start-up lines off stderr unless the command line sets `--verbosity` to 1 or more (see
`quiet.py`): several CLI modules import TensorFlow as they load.
"""

import sys

from matpac_keras.cli.quiet import asks_for_verbosity, quiet_imports

if not asks_for_verbosity(sys.argv[1:]):
    quiet_imports()
