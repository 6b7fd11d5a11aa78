"""Self-attention as plain bf16 matmuls while a CPU trains in bf16 autocast.

PyTorch's CPU kernels for `scaled_dot_product_attention` are slow in bf16 for this project's
shapes: the math kernel upcasts q, k and v to float32 and guards its softmax against fully masked
rows (`all`, `isneginf`, `where` over every (T, T) map), and the flash kernel's backward is slow
for heads of 32. Forward plus backward of one layer's causal attention on 2 cores, head size 32,
q, k and v in bf16, two runs each:

    shape (B, H, T)     flash kernel   math kernel    plain bf16 (this module)
    (64, 4, 64)           21.9 ms      8.1-10.4 ms      3.1-3.4 ms
    (32, 8, 128)          48.4 ms     29.8-37.7 ms     10.7-13.1 ms

The encoder layers are the seed's `nn.TransformerEncoderLayer`s, so this module doesn't replace
them: `plain_attention()` is a `TorchFunctionMode` that answers the one call they make,
`F.multi_head_attention_forward`, with the same arithmetic on the same parameters (packed
in-projection, the explicit causal mask added to the scores, softmax, dropout on the weights,
out-projection). Calls it does not cover (attention weights asked for, key padding, separate
q/k/v projections, bias_k/bias_v) go to PyTorch unchanged.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


class plain_attention(TorchFunctionMode):  # noqa: N801 (used like a function: `with plain_attention():`)
    """Within it, self-attention without weights returned runs as plain matmuls in its input's dtype.

    Only `F.multi_head_attention_forward` is answered; every other torch call passes through.
    Backward runs in autograd's engine, outside any mode, on the ops the forward recorded.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.multi_head_attention_forward:
            call = _MHA_SIGNATURE.bind(*args, **kwargs)
            call.apply_defaults()
            if _is_plain_self_attention(call.arguments):
                return _self_attention(**call.arguments), None
        return func(*args, **kwargs)


def _is_plain_self_attention(a: dict) -> bool:
    """What `_self_attention` computes exactly: batched self-attention with packed projections."""
    mask = a["attn_mask"]
    return (a["query"] is a["key"] is a["value"] and a["query"].dim() == 3 and not a["need_weights"]
            and a["key_padding_mask"] is None and not a["use_separate_proj_weight"]
            and a["bias_k"] is None and a["bias_v"] is None and not a["add_zero_attn"]
            and a["static_k"] is None and a["static_v"] is None
            and (mask is None or (mask.dim() == 2 and mask.is_floating_point()))
            and not (a["is_causal"] and mask is None))


def _self_attention(query: torch.Tensor, num_heads: int, in_proj_weight: torch.Tensor,
                    in_proj_bias: torch.Tensor | None, dropout_p: float, out_proj_weight: torch.Tensor,
                    out_proj_bias: torch.Tensor | None, training: bool, attn_mask: torch.Tensor | None,
                    **_unused) -> torch.Tensor:
    """(T, B, C) -> (T, B, C), sequence first as `F.multi_head_attention_forward` takes it.

    The mask is the one the layer was given (with `is_causal` it is the causal mask: PyTorch only
    uses the flag to pick a kernel). The 1/sqrt(Dh) scale goes on q, a (T, Dh) tensor per head,
    instead of on the (T, T) scores.
    """
    x = query.transpose(0, 1)  # (T, B, C) -> (B, T, C): the layer's batch-first tensor again, no copy
    # (B, T, C) -> (B, T, 3C) -> q, k, v each (B, H, T, Dh)
    q, k, v = split_heads(F.linear(x, in_proj_weight, in_proj_bias), num_heads)
    scores = (q * q.size(-1) ** -0.5) @ k.transpose(-2, -1)  # (B, H, T, Dh) @ (B, H, Dh, T) -> (B, H, T, T)
    if attn_mask is not None:
        scores = scores + attn_mask.to(scores.dtype)  # (B, H, T, T) + (T, T): -inf above the diagonal
    weights = F.dropout(scores.softmax(dim=-1), dropout_p, training)  # (B, H, T, T)
    heads = weights @ v  # (B, H, T, T) @ (B, H, T, Dh) -> (B, H, T, Dh)
    # (B, H, T, Dh) -> (B, T, C) -> out-projection -> (T, B, C), as the caller expects
    return F.linear(merge_heads(heads), out_proj_weight, out_proj_bias).transpose(0, 1)


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A packed in-projection's output as `nn.MultiheadAttention` lays it out (all queries, then all
    keys, then all values, each head a contiguous slice): (B, T, 3C) -> q, k, v of (B, H, T, Dh)."""
    b, t, packed = qkv.shape
    # (B, T, 3C) -> (B, T, 3, H, Dh) -> (3, B, H, T, Dh)
    return qkv.view(b, t, 3, num_heads, packed // (3 * num_heads)).permute(2, 0, 3, 1, 4).unbind(0)


def merge_heads(heads: torch.Tensor) -> torch.Tensor:
    """Per-head outputs side by side again, as the out-projection takes them: (B, H, T, Dh) -> (B, T, C)."""
    b, h, t, dh = heads.shape
    return heads.transpose(1, 2).reshape(b, t, h * dh)  # (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, C)
