"""A training step's forward and backward spread over a CPU's cores: a slice of the batch per thread.

PyTorch runs each operation on all the cores it has been given: a step's thousand-odd operations
are each cut in pieces, and the cores meet at the end of every one; between operations, while one
core runs Python, the dispatcher and autograd's bookkeeping, the others wait. Here each core takes
a slice of the batch on a thread of its own, with one intra-op thread, and goes through the whole
forward and backward alone; the calling thread adds the slices' gradients at the end.

Measured on 2 cores (AMD EPYC, AVX-512 BF16), bf16 training steps of bench/peers.py's shapes,
dropout 0, the two ways taking turns step by step in one process (medians of 20 steps each, two
runs):

    config S (4 x 128, T 64, batch 64)     96-116 ms sliced against 110-132 ms whole: 0.87-0.88x
    config M (6 x 256, T 128, batch 32)   466-475 ms sliced against 509-523 ms whole: 0.89-0.93x

With dropout 0.1: 0.87x and 0.93x. In fresh processes side by side, M's sliced step won 10 of 13
pairs in a first version (autograd adding the gradients) and 6 of 10 through the training loop
(bench/peers.py's measure): the whole-batch step loses most when the machine's neighbours are busy
(up to 516 ms, where the sliced one stayed under 447 ms), since each of its operations waits for
the slower core.

Where it is used (`slice_threads`): bf16 training on a CPU outside torchrun, with a mean
cross-entropy. bf16 on a CPU because its dropout (`core.cpu_kernels.fast_dropout`) can draw from
a generator of each thread's own, while float32 keeps PyTorch's dropout, which draws from the one
global generator in whatever order threads come. A mean cross-entropy because each slice's loss is
weighted by its share of the batch's counted targets, so the slices' losses add up to the batch's.

A seeded run repeats bit for bit: each slice's dropout generator is seeded from torch's global
one, and the slices' gradients are added in slice order (autograd's own accumulation into `.grad`
would add them in whichever order the threads finish).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import torch
from torch import nn

# (inputs (B', T), targets (B', T), the slice's dropout generator or None) -> the mean loss
BatchLoss = Callable[[torch.Tensor, torch.Tensor, torch.Generator | None], torch.Tensor]
MIN_SLICE_TOKENS = 2048  # positions; below this a slice's operations are too small to gain (see forward_backward)


def slice_threads(device: torch.device, autocast_dtype: torch.dtype | None, criterion: nn.Module,
                  distributed_run: bool) -> int:
    """Up to one slice per intra-op thread where slicing computes the same step (see the module's
    docstring); 1, the whole batch on the calling thread, elsewhere."""
    mean_cross_entropy = (isinstance(criterion, nn.CrossEntropyLoss) and criterion.weight is None
                          and criterion.reduction == "mean")
    if device.type != "cpu" or autocast_dtype != torch.bfloat16 or distributed_run or not mean_cross_entropy:
        return 1
    return torch.get_num_threads()


def forward_backward(batch_loss: BatchLoss, x: torch.Tensor, y: torch.Tensor, parameters: Sequence[nn.Parameter],
                     threads: int, ignore_index: int) -> torch.Tensor:
    """The batch's mean loss, detached; its gradients are added to `parameters`' `.grad`.

    With `threads` > 1, the batch (B, T) is cut along B into that many slices if each gets at
    least MIN_SLICE_TOKENS positions, each slice computed on a thread of `_slice_threads`; else it
    goes whole on the calling thread. Targets equal to `ignore_index` count for nothing, as in
    the cross-entropy; a batch with none counted goes whole (its mean is undefined either way).

    The threshold, from bf16 steps taking turns in one process (sliced / whole step time):
    - 2 cores (AMD EPYC): 704 positions a slice (sort models, 3 x 128 and 3 x 256) 1.04x, and
      1.14-1.39x for 2 x 64 models, where the threads queue for Python's lock; 1,024 (4 x 128)
      0.95x; 2,048 (configs S and M) 0.87-0.93x.
    - 16 cores (Intel Xeon), S and M: 2 threads, 2,048 a slice, 0.82x and 0.99x; 4 threads,
      1,024 a slice, 1.06x and 0.92x. Fewer slices than threads would leave cores idle (4 slices
      of one thread each took 1.3-2x as long as 8 or 16 threads on the whole batch).
    """
    slices = threads if x.size(0) >= threads and x.numel() >= threads * MIN_SLICE_TOKENS else 1
    counted = [int((ys != ignore_index).sum()) for ys in y.tensor_split(slices)] if slices > 1 else []
    if sum(counted) == 0:  # on this thread: one slice, or nothing counted (the mean is undefined either way)
        loss = batch_loss(x, y, None)
        loss.backward()
        return loss.detach()
    total = sum(counted)
    work = [(xs, ys, n / total) for xs, ys, n in zip(x.tensor_split(slices), y.tensor_split(slices), counted) if n]
    seeds = torch.randint(2**62, (len(work),)).tolist()  # from torch's generator: a seeded run repeats
    futures = [_slice_threads(threads).submit(_slice_gradients, batch_loss, xs, ys, share, seed, parameters)
               for (xs, ys, share), seed in zip(work, seeds)]
    wait(futures)  # every slice ends before any error is raised: none is left computing
    results = [future.result() for future in futures]  # a slice's error, before any gradient is added
    for _, gradients in results:  # in slice order, so the sums are the same every run
        for parameter, gradient in zip(parameters, gradients):
            _add_gradient(parameter, gradient)
    return torch.stack([loss for loss, _ in results]).sum()


def _slice_gradients(batch_loss: BatchLoss, x: torch.Tensor, y: torch.Tensor, share: float, seed: int,
                     parameters: Sequence[nn.Parameter]) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """A slice's loss, weighted by its share of the counted targets, and its gradients."""
    loss = batch_loss(x, y, torch.Generator().manual_seed(seed)) * share
    return loss.detach(), torch.autograd.grad(loss, parameters, allow_unused=True)


def _add_gradient(parameter: nn.Parameter, gradient: torch.Tensor | None) -> None:
    """What autograd's accumulation does: the first gradient is kept in the parameter's layout
    (a gradient may come back as an expanded view), the next ones are added to it in place."""
    if gradient is None:
        return
    if parameter.grad is None:
        same_layout = gradient.stride() == parameter.stride()
        parameter.grad = gradient if same_layout else torch.empty_like(parameter).copy_(gradient)
    else:
        parameter.grad += gradient


@functools.cache
def _slice_threads(count: int) -> ThreadPoolExecutor:
    """`count` threads for the process's lifetime, each running torch's operations on one thread.

    torch reads its intra-op thread count into a thread once, on that thread's first operation,
    and `torch.set_num_threads` sets both the calling thread's count and the process's: each new
    thread reads the process's count, then sets its own to 1, and the process's is put back once
    all have. Idle threads wait on a queue and cost nothing.
    """
    process_threads = torch.get_num_threads()
    started = threading.Barrier(count)

    def one_thread_each() -> None:
        torch.get_num_threads()  # read the process's count into this thread now, before it changes
        torch.set_num_threads(1)
        started.wait()  # every thread waits here, so each task gets a thread of its own

    pool = ThreadPoolExecutor(count, thread_name_prefix="batch-slice")
    wait([pool.submit(one_thread_each) for _ in range(count)])
    torch.set_num_threads(process_threads)
    return pool


os.register_at_fork(after_in_child=_slice_threads.cache_clear)  # a forked child has none of these threads
