"""One row times a weight matrix in a single pass over the weights: batch-1 sampling on a CPU.

At batch 1 every new token multiplies each weight matrix by one vector, so sampling is bound by how
fast that product reads the weights. PyTorch's eager operations offer two ways, and on the README's
2-core AMD machine both waste most of the time (config M's 25 matrices, 18 MB, per product):

- `F.linear` hands it to MKL, whose matrix-vector product takes a slow path on AMD CPUs: 56-94 us;
- `(weight * x).sum(-1)` writes a matrix-sized product before summing it: 36-57 us.

A loop that sums each row as it reads it writes nothing matrix-sized: 8 us over both cores and
14 us on one, where a plain `weight.sum()` (reading the weights alone) took 11 us. numba
compiles that loop with its own LLVM (no compiler needed); `fastmath` lets it reassociate the sum
into vector lanes, so results differ from `F.linear` by rounding, as any two kernels' do.

numba is optional (pyproject's `fast-sampling` extra; `kv_cache.row_kernel_for` checks that it is
installed) and imported with this module, which only `kv_cache.StepLinear` imports, on first use:
0.2 s and about 55 MB that a process spends only once it samples a large model. The rows are
split over numba's threads, whose pool must be thread-safe (Gradio samples from several threads
at once): OpenMP or TBB. Where neither loads, the loop runs on one thread. The pool is started by sampling,
never by the fork server that the page's training runs fork from (`core/processes.py`), since
GNU OpenMP does not survive a fork.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
import torch

numba.config.THREADING_LAYER = "threadsafe"  # OpenMP or TBB; numba's own workqueue is not thread-safe
_OPTIONS = {"fastmath": {"reassoc", "contract"}, "nogil": True, "cache": True}  # cache: compiled once per machine


def _rows_times_vector(weight: np.ndarray, x: np.ndarray, bias: np.ndarray | None, out: np.ndarray) -> None:
    """out = weight @ x (+ bias): (C_out, C_in) @ (C_in,) -> (C_out,), each row summed as it is read."""
    for row in numba.prange(weight.shape[0]):
        total = np.float32(0.0)
        for i in range(weight.shape[1]):
            total += weight[row, i] * x[i]
        out[row] = total if bias is None else total + bias[row]


parallel_kernel = numba.njit(parallel=True, **_OPTIONS)(_rows_times_vector)
serial_kernel = numba.njit(**_OPTIONS)(_rows_times_vector)


@functools.cache
def _kernel() -> Callable[..., None]:
    """The parallel kernel where a thread-safe threading layer loads (its first call loads one),
    else the serial one."""
    weight, vector = np.ones((1, 1), np.float32), np.ones(1, np.float32)
    try:
        parallel_kernel(weight, vector, vector, np.empty(1, np.float32))
    except ValueError:  # "No threading layer could be loaded": neither OpenMP nor TBB here
        return serial_kernel
    return parallel_kernel


def kernel_for_this_thread() -> Callable[..., None]:
    """The kernel, set to use as many threads as torch does in the calling thread: numba's count is
    per thread, and its default is every CPU the process may run on, which in a container is often
    more than its share, the count torch follows here (`core.training.configure_threads`)."""
    kernel = _kernel()
    if kernel is parallel_kernel:
        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    return kernel
