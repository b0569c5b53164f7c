#!/usr/bin/env bash
# Runs Bazel tests offline: tools/bazel_test.sh [--bazel_flag=value...] [TARGET...]
# Default targets: every py_test tagged "fast" (//... with --test_tag_filters=fast); slow tests
# are tagged "manual" and run only when named, e.g. tools/bazel_test.sh //:embedding_test.
# Give flags as --flag=value: an argument not starting with "-" is taken as a target.
# Installs Debian's Bazel 4 (bazel-bootstrap, bazel-rules-java) with apt-get when missing, puts
# the venv first on PATH (py_test runs the python3 it finds there) and points the repositories
# Bazel 4 would download at local copies (see /work/shared/BAZEL.md, third_party/bazel/).
# Environment passed to the tests: KERAS_BACKEND (default tensorflow), MATPAC_FIXTURES (default
# ../shared/fixtures from the repo), NUMBA_CACHE_DIR, CI when set.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if ! installed bazel-bootstrap || ! installed bazel-rules-java; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  echo "bazel_test: installing bazel-bootstrap and bazel-rules-java with apt-get" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    bazel-bootstrap bazel-rules-java >/dev/null
fi

[ -x .venv/bin/python ] || tools/setup.sh
export PATH="$root/.venv/bin:$PATH"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}" PYTHONHASHSEED="${PYTHONHASHSEED:-0}"
if [ -z "${MATPAC_FIXTURES:-}" ] && [ -d "$root/../shared/fixtures" ]; then
  export MATPAC_FIXTURES="$(cd "$root/../shared/fixtures" && pwd)"
fi
# librosa's numba functions are compiled once and cached here, writable inside the sandbox (site-
# packages and HOME are not; without it every run recompiles them, about 15 s).
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/matpac_keras/numba}"
mkdir -p "$NUMBA_CACHE_DIR"

flags=(
  --host_javabase=@local_jdk//:jdk
  --override_repository=rules_cc="$root/third_party/bazel/rules_cc"
  --override_repository=rules_java=/usr/share/bazel/rules/java
  --override_repository=remote_coverage_tools="$root/third_party/bazel/remote_coverage_tools"
  --test_env=PATH --test_env=KERAS_BACKEND
  --test_env=TF_CPP_MIN_LOG_LEVEL --test_env=PYTHONHASHSEED
  --test_env=NUMBA_CACHE_DIR --sandbox_writable_path="$NUMBA_CACHE_DIR"
  --test_output=errors --test_summary=short
  --symlink_prefix=/ --nosandbox_debug --curses=no --color=no --show_progress_rate_limit=30
)
[ -z "${MATPAC_FIXTURES:-}" ] || flags+=(--test_env=MATPAC_FIXTURES)
[ -z "${CI:-}" ] || flags+=(--test_env=CI)
targets_given=false
for arg in "$@"; do
  [[ $arg == -* ]] || targets_given=true
done
$targets_given || set -- "$@" --test_tag_filters=fast //...

# Start-up flags as in Debian's /etc/bazel/bazelrc (.bazelrc makes the server exit after 10 idle
# minutes). --test_output=errors prints the log of every failing test.
exec bazel --install_base=/usr/share/bazel --trust_install_base test "${flags[@]}" "$@"
