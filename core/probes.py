"""Experiments on a trained model that make its lessons visible.

`causality_check` edits one token and measures how far each position's prediction moves: with
the causal mask, every position before the edit reads only tokens that did not change, so its
prediction is bit for bit the same (a change of exactly 0, not "small"); without the mask, they
all move.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def causality_check(model: nn.Module, ids: torch.Tensor | list[int], position: int, new_token: int) -> list[float]:
    """Per position, the total variation distance between the next-token distributions before and
    after the token at `position` becomes `new_token`: (T,) ids -> T numbers in [0, 1].

    Two separate forward passes of the same shape, so matching rows take exactly the same path
    through every kernel (one batch of both could round rows differently by where they fall).
    """
    ids = torch.as_tensor(ids)  # (T,)
    if not 0 <= position < ids.size(0):
        raise ValueError(f"the position to change must be between 0 and {ids.size(0) - 1}, got {position}")
    if ids[position].item() == new_token:
        raise ValueError("the new token is the token already there: choose a different one")
    was_training = model.training
    model.eval()
    try:
        edited = ids.clone()
        edited[position] = new_token
        # (T,) -> (1, T) -> (1, T, V) -> (T, V) probabilities
        before, after = (model(seq.unsqueeze(0))[0].float().softmax(-1) for seq in (ids, edited))
    finally:
        model.train(was_training)
    return (0.5 * (after - before).abs().sum(-1)).tolist()  # (T, V) -> (T,)
