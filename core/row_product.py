"""One row times a weight matrix in a single pass over the weights, and one token from its
embedding to its logits in a single call: batch-1 sampling on a CPU.

At batch 1 every new token multiplies each weight matrix by one vector, so sampling is bound by how
fast that product reads the weights. PyTorch's eager operations offer two ways, and on the README's
2-core AMD machine both waste most of the time (config M's 25 matrices, 18 MB, per product):

- `F.linear` hands it to MKL, whose matrix-vector product takes a slow path on AMD CPUs: 56-94 us;
- `(weight * x).sum(-1)` writes a matrix-sized product before summing it: 36-57 us.

A loop that sums each row as it reads it writes nothing matrix-sized: 8 us over both cores and
14 us on one, where a plain `weight.sum()` (reading the weights alone) took 11 us. numba
compiles that loop with its own LLVM (no compiler needed); `fastmath` lets it reassociate the sum
into vector lanes, so results differ from `F.linear` by rounding, as any two kernels' do.

numba is optional (pyproject's `fast-sampling` extra; `kv_cache.one_call_for` checks that it is
installed) and imported with this module, which `kv_cache` imports on first use only:
0.2 s and about 55 MB that a process spends only once it samples a large model. The rows are
split over numba's threads, whose pool must be thread-safe (Gradio samples from several threads
at once): OpenMP or TBB. Where neither loads, the loop runs on one thread. The pool is started by sampling,
never by the fork server that the page's training runs fork from (`core/processes.py`), since
GNU OpenMP does not survive a fork.

Once the products were fast, the rest of a token cost more than they did: of 64 tokens of config M,
the products took 23-29 ms and the rest 60-90 ms, a few hundred small PyTorch operations a token
(LayerNorm, head splits, cache writes, attention, GELU, residuals) and the Python between them,
each slower than alone because the weights had just streamed through the caches.
`token_through_stack` takes a token from its embedding to its logits in one compiled call: each
pre-norm encoder layer's work (`token_through_layer`), the projections and the head, every product
through the row kernel. In one call a layer, the 64 tokens took 46-84 ms instead of 114-157 ms on
the same minutes of the README's machine; in one call a token, 51-63 ms where one call a layer
took 61-85.
"""

from __future__ import annotations

import functools
import math
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


@numba.njit(**_OPTIONS)
def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """`F.layer_norm` of one row: (C,) -> (C,)."""
    centered = x - x.mean()
    return centered / np.sqrt((centered * centered).mean() + eps) * weight + bias


@numba.njit(**_OPTIONS)
def _attend(qkv: np.ndarray, keys: np.ndarray, values: np.ndarray, length: int, out: np.ndarray) -> None:
    """Scaled dot-product attention of one query per head over the first `length` cached positions.

    qkv (3C,) starts with the new token's query, heads side by side (as `split_heads` reads it);
    keys and values are (H, capacity, Dh); out (C,) gets the heads side by side (as `merge_heads`).
    """
    heads, _, head_dim = keys.shape
    scale = np.float32(1.0 / np.sqrt(head_dim))
    scores = np.empty(length, np.float32)
    for h in range(heads):
        query = qkv[h * head_dim:(h + 1) * head_dim]  # (Dh,)
        for j in range(length):
            total = np.float32(0.0)
            for d in range(head_dim):
                total += query[d] * keys[h, j, d]
            scores[j] = total * scale
        weights = np.exp(scores - scores.max())  # (length,): the softmax
        weights /= weights.sum()
        head = out[h * head_dim:(h + 1) * head_dim]  # (Dh,), a view
        head[:] = 0.0
        for j in range(length):
            for d in range(head_dim):
                head[d] += weights[j] * values[h, j, d]


@numba.njit(**_OPTIONS)
def token_through_layer(x: np.ndarray, norm1: tuple, attention_in: tuple, keys: np.ndarray,
                        values: np.ndarray, position: int, attention_out: tuple, norm2: tuple,
                        feed_forward_in: tuple, feed_forward_out: tuple, gelu: bool, out: np.ndarray) -> None:
    """What `kv_cache.encoder_layer_step` computes for one token of a pre-norm layer: x (C,) -> out (C,).

    Each norm is (weight, bias, eps) and each product (weight, bias), the layer's own memory. The
    token's key and value go into keys and values (H, capacity, Dh) at `position`, and it attends
    to positions 0 .. position. `gelu` picks exact (erf) GELU, else ReLU.
    """
    heads, _, head_dim = keys.shape
    width = x.shape[0]
    qkv = np.empty(3 * width, np.float32)  # (3C,): q, k, v, each with the heads side by side
    parallel_kernel(attention_in[0], _layer_norm(x, norm1[0], norm1[1], norm1[2]), attention_in[1], qkv)
    for h in range(heads):
        keys[h, position] = qkv[width + h * head_dim:width + (h + 1) * head_dim]
        values[h, position] = qkv[2 * width + h * head_dim:2 * width + (h + 1) * head_dim]
    attended = np.empty(width, np.float32)
    _attend(qkv, keys, values, position + 1, attended)
    attention = np.empty(width, np.float32)
    parallel_kernel(attention_out[0], attended, attention_out[1], attention)
    x = x + attention  # the first residual
    hidden = np.empty(feed_forward_in[0].shape[0], np.float32)  # (FF,)
    parallel_kernel(feed_forward_in[0], _layer_norm(x, norm2[0], norm2[1], norm2[2]), feed_forward_in[1], hidden)
    for i in range(hidden.shape[0]):
        value = hidden[i]
        hidden[i] = 0.5 * value * (1.0 + math.erf(value * 0.7071067811865476)) if gelu else max(value, 0.0)
    parallel_kernel(feed_forward_out[0], hidden, feed_forward_out[1], out)
    out += x  # the second residual


@numba.njit(**_OPTIONS)
def token_through_stack(x: np.ndarray, layers: tuple, keys: tuple, values: tuple, position: int,
                        projections: tuple, final_norm: tuple, head: tuple, logits: np.ndarray) -> None:
    """One token from its embedding x (C0,) to its next-token logits (V,), through every encoder
    layer (`token_through_layer`; layers[i] holds its arguments but the cache's), the projection
    after each layer where widths change (an empty weight where none), the final norm and the head.

    keys[i] and values[i] are layer i's cache, (H, capacity, Dh); the token is at `position`.
    """
    for i in range(len(layers)):
        norm1, attention_in, attention_out, norm2, feed_forward_in, feed_forward_out, gelu = layers[i]
        out = np.empty(x.shape[0], np.float32)
        token_through_layer(x, norm1, attention_in, keys[i], values[i], position, attention_out, norm2,
                            feed_forward_in, feed_forward_out, gelu, out)
        weight, bias = projections[i]
        if weight.shape[0] == 0:
            x = out
        else:  # (C_i,) -> (C_i+1,)
            x = np.empty(weight.shape[0], np.float32)
            parallel_kernel(weight, out, bias, x)
    parallel_kernel(head[0], _layer_norm(x, final_norm[0], final_norm[1], final_norm[2]), head[1], logits)


def stack_kernel_for_this_thread() -> Callable[..., None] | None:
    """`token_through_stack`, its products on as many threads as torch uses here, where numba's
    thread pool loads; None where it does not (tokens then go op by op, their products on one thread)."""
    return token_through_stack if kernel_for_this_thread() is parallel_kernel else None
