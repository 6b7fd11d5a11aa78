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
    softmax, `dropout` on the attention weights when training, the out-projection. Every step runs
    in x's dtype: in bf16 that is the point (see core/cpu_kernels.py).

    The heads go to `bmm` as one batch of B*H contiguous matrices, and one `baddbmm` writes
    mask + scale * q @ k^T: `matmul` on the 4-D views copied k transposed, and the scale and the
    mask each took a pass of their own. Config M's bf16 training step (bench/peers.py) took 6-10 ms
    less (of 475-530 ms) in three comparisons, the two versions taking turns step by step.
    """
    b, t, _ = x.shape
    # (B, T, C) -> (B, T, 3C) -> q, k, v each (B, H, T, Dh) -> (B*H, T, Dh), contiguous
    q, k, v = (z.reshape(b * num_heads, t, -1) for z in split_heads(F.linear(x, in_proj_weight, in_proj_bias),
                                                                    num_heads))
    scale = q.size(-1) ** -0.5
    if mask is None:
        scores = torch.bmm(q * scale, k.transpose(1, 2))  # (B*H, T, Dh) @ (B*H, Dh, T) -> (B*H, T, T)
    else:  # mask (T, T), -inf above the diagonal, + scale * (B*H, T, Dh) @ (B*H, Dh, T) -> (B*H, T, T)
        scores = torch.baddbmm(mask.to(q.dtype).expand(b * num_heads, t, t), q, k.transpose(1, 2), alpha=scale)
    weights = scores.softmax(dim=-1)  # (B*H, T, T)
    if dropout is not None:
        weights = dropout(weights)
    heads = torch.bmm(weights, v).view(b, num_heads, t, -1)  # (B*H, T, T) @ (B*H, T, Dh) -> (B, H, T, Dh)
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
