"""pytest set-up for the builder tests: a scratch TFDS_DATA_DIR."""

import os
import tempfile

# Tests always give builders a data_dir; this only keeps any stray default out of ~/.
os.environ.setdefault("TFDS_DATA_DIR", os.path.join(tempfile.gettempdir(), "matpac_tfds_tests"))
