#!/usr/bin/env bash
# Sets up .venv (tools/setup.sh) and runs the test suite: the multi-backend core under
# KERAS_BACKEND=tensorflow, jax and torch; backend-independent tests (marked single_backend:
# data builders, export, checkpoints reader, CLIs) once, under TensorFlow; then the "smoke"
# targets through Bazel (tools/bazel_test.sh): the BUILD check and quick tests of the core
# libraries' targets (`tools/bazel_test.sh` alone runs every "fast" target). Between them, the
# documentation site is built with `mkdocs build --strict` (its code blocks run in
# tests/docs_test.py).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
source .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
# JAX compiles each tiny train step once per process; its persistent cache lets the tests and
# xdist workers that build the same program share one compilation (and later runs reuse them).
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/matpac_keras/jax}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
# XLA compiles the JAX tests' many small programs about a quarter faster without its LLVM
# optimisations (the tolerances of the parity tests hold; a user's XLA_FLAGS are kept as given).
jax_xla_flags="${XLA_FLAGS:---xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true}"
status=0
for backend in tensorflow jax torch; do
  marker=() env=()
  [ "$backend" = tensorflow ] || marker=(-m "not single_backend")
  [ "$backend" = jax ] && env=(XLA_FLAGS="$jax_xla_flags")
  echo "=== KERAS_BACKEND=$backend"
  env "${env[@]}" KERAS_BACKEND=$backend python -m pytest -q -n 2 --dist loadfile "${marker[@]}" "$@" \
    || status=1
done
echo "=== mkdocs build --strict (the documentation site of docs/ and mkdocs.yml)"
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --quiet --site-dir "$site" || status=1
rm -rf "$site"
echo "=== bazel test (smoke targets, offline)"
tools/bazel_test.sh --test_tag_filters=smoke //... || status=1
exit $status
