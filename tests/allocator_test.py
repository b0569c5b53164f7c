"""`return_freed_memory`: freed buffers of a MiB and more leave the process at once."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.single_backend

# 40 buffers of 4 MiB (under glibc's self-raised mmap threshold once one such buffer has been
# freed); every other one freed: with glibc's defaults the holes stay in the heap.
SCRIPT = """
import sys
from matpac_keras.allocator import return_freed_memory
if sys.argv[1] == "on":
    assert return_freed_memory()
import numpy as np
def rss():
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS:")).split()[1]) / 1024
np.ones(1 << 19)  # one 4 MiB buffer mapped and freed: glibc raises its mmap threshold
buffers = [np.ones(1 << 19) for _ in range(40)]
before = rss()
del buffers[::2]
print(before - rss())
"""


def _freed_mib(setting: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, setting], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_returned():
    assert _freed_mib("on") > 70  # 20 x 4 MiB returned
    assert _freed_mib("off") < 10  # glibc's defaults keep them: the test can fail
