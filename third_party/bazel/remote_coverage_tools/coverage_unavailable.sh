#!/bin/sh
# Stand-in for Bazel's coverage tools, which are not available offline.
echo "coverage is not available in this offline Bazel set-up; use pytest for coverage" >&2
exit 1
