#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs matpac-keras with TensorFlow, JAX, PyTorch (CPU builds),
# the export runtimes and the test tools. Idempotent: a second run only checks the installation.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# torch is pinned to 2.13.0, whose CPU wheel lies in /opt/wheels on these machines; elsewhere
# pip takes torch 2.13.0 from PyPI (a CUDA build: several GB).
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${find_links[@]}" \
  -e ".[test]"
echo "matpac-keras installed in .venv (keras $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("keras"))'))"
