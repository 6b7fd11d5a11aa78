"""What bf16 training on a CPU runs where PyTorch's own kernels are slow on this kind of machine.

Measured on 2 cores (AMD EPYC, AVX-512 BF16):

- Attention. The math kernel of `scaled_dot_product_attention` upcasts q, k and v to float32 and
  guards its softmax against fully masked rows (`all`, `isneginf`, `where` over every (T, T) map);
  the flash kernel's backward is slow for heads of 32. Forward plus backward of one layer's
  causal attention, q, k and v in bf16, two runs each:

      shape (B, H, T)     flash kernel   math kernel    plain bf16 (core/attention.py)
      (64, 4, 64)           21.9 ms      8.1-10.4 ms      3.1-3.4 ms
      (32, 8, 128)          48.4 ms     29.8-37.7 ms     10.7-13.1 ms

- Dropout. PyTorch draws a dropout mask one element at a time from its Mersenne Twister (its
  vectorised MKL path was for Intel CPUs only, and open-source builds now leave it off while
  pytorch/pytorch#132395 is open): about 6 ns per element here, 0.8 ms for a
  (64, 12, 192) tensor that a multiply crosses in 0.015 ms. With dropout 0.05, a 4 x 128 model's
  bf16 step took 2.3x as long as without. `fast_dropout` draws one 64-bit number per four
  elements: 2.6x faster on that tensor.

`cpu_bf16_kernels()` is a `TorchFunctionMode` that answers the two calls the seed's
`nn.TransformerEncoderLayer`s make, `F.multi_head_attention_forward` and `F.dropout`, so the
layers and their parameters stay exactly as they are. Calls it does not cover go to PyTorch
unchanged. Training in float32 does not enter it: its runs, and the learning figures measured
with them, keep PyTorch's kernels and random streams. The cheaper dropout alone was tried in
float32: the default 3 x 48 model's step went from 17.6 to 16.1 ms and the first 100% came
sooner (sort, seeds 0-9: a median of 160 steps against 192), but at one thread, as the page
trains two runs at once, whole runs (to "solved") got longer in 7 of 10 seeds (median 336
steps against 288; the page's seed 0: 480 against 288), and the class of 30 took 230 s instead
of 109-113 s.

The plain attention alone was tried in float32 too, with PyTorch's dropout (the same masks:
the output laid out (T, B, C) as PyTorch's, and losses within 4e-7 over 40 steps). PyTorch's CPU
softmax over rows shorter than 16 floats costs 18-20 ns an element against 1-2 ns for longer
rows, and taken over the transposed scores it ran 3x faster, so the default model's step took
0.90-0.92x the time. Over seeds 0-9 at one thread, copy and reverse needed the same steps seed
for seed, and sort the same median (208 steps to its first 100%). But rounding moved each sort
run, and the page's seed 0 then stopped after 12 epochs instead of 9: the class of 30 took 144 s
against 117 s in the same hour. Every visitor who keeps the defaults trains seed 0.
"""

from __future__ import annotations

import inspect
from functools import partial

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .attention import self_attention

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)
_DROPOUT_SIGNATURE = inspect.signature(F.dropout)
_LEVELS = 1 << 16  # the values of one 16-bit random number


class cpu_bf16_kernels(TorchFunctionMode):  # noqa: N801 (used like a function: `with cpu_bf16_kernels():`)
    """Within it, self-attention runs as plain matmuls (`core.attention.self_attention`) and dropout
    uses `fast_dropout`; every other torch call passes through.

    Backward runs in autograd's engine, outside any mode, on the ops the forward recorded. The
    mode stack is per thread: training in one server thread leaves the others alone.
    """

    def __init__(self, generator: torch.Generator | None = None):
        super().__init__()
        self.generator = generator  # dropout's random numbers; None: torch's global generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            call = _arguments(_DROPOUT_SIGNATURE, args, kwargs)
            if call["training"] and not call["inplace"]:
                return fast_dropout(call["input"], call["p"], self.generator)
        elif func is F.multi_head_attention_forward:
            call = _arguments(_MHA_SIGNATURE, args, kwargs)
            if _is_plain_self_attention(call):
                return _sequence_first_attention(call, self.generator), None
        return func(*args, **kwargs)


def fast_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """`F.dropout(x, p, training=True)` with a cheaper mask.

    Each element is kept when a 16-bit random number is at least round(p * 65536), so p is
    rounded to a multiple of 1/65536 (0.05 -> 0.0500031); kept elements are scaled by one over
    their keep probability, so the expectation is exactly x. The numbers come from `generator`
    (torch's global one when None), so a seeded run repeats. A p that rounds to 0 or 65536 gets
    an exact mask: `F.dropout`'s, or with a generator of its own, `bernoulli_`'s.
    """
    dropped = round(p * _LEVELS)
    if not 0 < dropped < _LEVELS:
        if generator is None or p in (0, 1):  # p 0 or 1 draws nothing
            return F.dropout(x, p, training=True)
        return x * torch.empty_like(x).bernoulli_(1 - p, generator=generator) / (1 - p)
    n = x.numel()
    # one full-range 64-bit draw per four elements, read as four 16-bit numbers in [-32768, 32767]
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None,
                                                                                generator=generator)
    numbers = draws.view(torch.int16)[:n].view(x.shape)
    keep = (numbers >= dropped - _LEVELS // 2).to(x.dtype)  # 1 with probability 1 - dropped/65536
    return x * keep * (_LEVELS / (_LEVELS - dropped))


def _arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict:
    call = signature.bind(*args, **kwargs)
    call.apply_defaults()
    return call.arguments


def _is_plain_self_attention(a: dict) -> bool:
    """What `self_attention` computes exactly: batched self-attention with packed projections."""
    mask = a["attn_mask"]
    return (a["query"] is a["key"] is a["value"] and a["query"].dim() == 3 and not a["need_weights"]
            and a["key_padding_mask"] is None and not a["use_separate_proj_weight"]
            and a["bias_k"] is None and a["bias_v"] is None and not a["add_zero_attn"]
            and a["static_k"] is None and a["static_v"] is None
            and (mask is None or (mask.dim() == 2 and mask.is_floating_point()))
            and not (a["is_causal"] and mask is None))


def _sequence_first_attention(a: dict, generator: torch.Generator | None) -> torch.Tensor:
    """`F.multi_head_attention_forward`'s result, (T, B, C) in and out as it takes them.

    The mask is the one the layer was given: with `is_causal` it is the causal mask, PyTorch only
    uses the flag to pick a kernel.
    """
    dropout = partial(fast_dropout, p=a["dropout_p"], generator=generator) \
        if a["training"] and a["dropout_p"] > 0 else None
    x = a["query"].transpose(0, 1)  # (T, B, C) -> (B, T, C): the layer's batch-first tensor again, no copy
    out = self_attention(x, a["num_heads"], a["in_proj_weight"], a["in_proj_bias"], a["out_proj_weight"],
                         a["out_proj_bias"], a["attn_mask"], dropout)  # (B, T, C)
    return out.transpose(0, 1)  # (B, T, C) -> (T, B, C)
