"""Runs one pytest file as a Bazel py_test: `pytest_runner.py TEST_FILE [PYTEST_ARGS...]`.

Bazel 4's native py_test runs a plain script; our tests are pytest-style. The test file path is
relative to the repository root. Under Bazel, the editable install of matpac_keras is taken off
the import machinery first, so a test sees only the modules its BUILD target declares (a missing
dep fails the test instead of being read from the source tree), and numba (used by librosa)
caches its compiled functions in the test's temporary folder: the sandbox makes site-packages
and HOME read-only.
"""

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).absolute().parents[1]


def _hide_editable_install() -> None:
    """Drops setuptools' editable-install finders and source-tree paths outside the runfiles."""
    runfiles = os.environ.get("RUNFILES_DIR") or os.environ["TEST_SRCDIR"]
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if not getattr(finder, "__module__", "").startswith("__editable__")
    ]
    sys.path[:] = [
        entry
        for entry in sys.path
        if os.path.abspath(entry or ".").startswith(os.path.abspath(runfiles))
        or not os.path.isfile(os.path.join(entry or ".", "matpac_keras", "__init__.py"))
    ]


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: pytest_runner.py TEST_FILE [PYTEST_ARGS...]", file=sys.stderr)
        return 2
    test_file = ROOT / argv[0]
    if not test_file.is_file():
        print(f"pytest_runner: test file not found: {test_file}", file=sys.stderr)
        return 2
    args = [str(test_file), "-q", "-p", "no:cacheprovider", *argv[1:]]
    if "TEST_SRCDIR" in os.environ:
        _hide_editable_install()
        if os.environ.get("XML_OUTPUT_FILE"):
            args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
        if os.environ.get("TEST_TMPDIR"):
            args.append(f"--basetemp={os.environ['TEST_TMPDIR']}/pytest")
            os.environ.setdefault("NUMBA_CACHE_DIR", f"{os.environ['TEST_TMPDIR']}/numba")
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
