"""Self-attention written out as plain matmuls on `nn.MultiheadAttention`'s own parameters.

Two users: bf16 training on a CPU, where `core/cpu_kernels.py` answers the encoder layers'
attention with `self_attention` because PyTorch's kernels are slow there; and the key/value cache
(`core/kv_cache.py`), which shares the packed q/k/v layout through `split_heads`/`merge_heads`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def self_attention(x: torch.Tensor, num_heads: int, in_proj_weight: torch.Tensor,
                   in_proj_bias: torch.Tensor | None, out_proj_weight: torch.Tensor,
                   out_proj_bias: torch.Tensor | None, mask: torch.Tensor | None,
                   dropout: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """(B, T, C) -> (B, T, C): what `nn.MultiheadAttention` computes for `attn(x, x, x, attn_mask=mask)`.

    The packed in-projection, the float mask (T, T) added to the scores (-inf hides a position),
    softmax, `dropout` on the attention weights when training, the out-projection. The 1/sqrt(Dh)
    scale goes on q, a (T, Dh) tensor per head, instead of on the (T, T) scores. Every step runs
    in x's dtype: in bf16 that is the point (see core/cpu_kernels.py).
    """
    # (B, T, C) -> (B, T, 3C) -> q, k, v each (B, H, T, Dh)
    q, k, v = split_heads(F.linear(x, in_proj_weight, in_proj_bias), num_heads)
    scores = (q * q.size(-1) ** -0.5) @ k.transpose(-2, -1)  # (B, H, T, Dh) @ (B, H, Dh, T) -> (B, H, T, T)
    if mask is not None:
        scores = scores + mask.to(scores.dtype)  # (B, H, T, T) + (T, T): -inf above the diagonal
    weights = scores.softmax(dim=-1)  # (B, H, T, T)
    if dropout is not None:
        weights = dropout(weights)
    heads = weights @ v  # (B, H, T, T) @ (B, H, T, Dh) -> (B, H, T, Dh)
    return F.linear(merge_heads(heads), out_proj_weight, out_proj_bias)  # (B, T, C)


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
