"""The causal mask that keeps a position from attending to the future."""

from __future__ import annotations

import torch


def generate_square_subsequent_mask(sz: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Float mask (sz, sz): 0.0 where query i may attend to key j (j <= i), -inf above the diagonal.

    A float mask is *added* to the attention scores, so -inf becomes a zero weight after softmax.
    We pass it explicitly everywhere: `is_causal=True` alone is only a hint, and in eval mode
    under no_grad PyTorch would then silently attend to the future.
    """
    if sz < 1:
        raise ValueError(f"mask size must be at least 1, got {sz}")
    # (sz, sz): -inf strictly above the diagonal, 0 elsewhere
    return torch.triu(torch.full((sz, sz), float("-inf"), device=device), diagonal=1)
