"""The C allocator's settings for training: freed buffers go back to the system.

A training step allocates and frees hundreds of MiB of tensors (gradients, the compiled step's
temporary buffer). glibc's malloc serves buffers under its mmap threshold from its heaps, and
that threshold grows by itself up to 32 MiB as buffers are freed; a heap keeps what is freed in
its middle, and each thread that allocates may get its own heap. Measured on ViT-B MATPAC
(batch 4, CPU, `benchmarks/train_throughput.md`), these settings lowered the peak by 0.2-0.3
GiB (JAX: 4814 -> 4489-4543 MiB). `return_freed_memory()` fixes the mmap threshold at 1 MiB
(larger buffers are mapped and unmapped, their memory returned at once), trims heaps above 1 MiB
of free top space, and caps the heaps at two. The numbers computed do not change; only where
memory comes from.

`matpac-train` calls it before TensorFlow, JAX or torch load; a program that imports
`matpac_keras` can call it first thing. It only acts under glibc (Linux); elsewhere it returns
False and changes nothing.
"""

import ctypes
import sys

# glibc's malloc.h parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SETTINGS = ((M_MMAP_THRESHOLD, 1 << 20), (M_TRIM_THRESHOLD, 1 << 20), (M_ARENA_MAX, 2))


def return_freed_memory() -> bool:
    """Applies `SETTINGS` with glibc's `mallopt`; True where every one was accepted (another
    C library's `mallopt`, e.g. musl's, accepts none)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
