"""core/attention.py: plain self-attention computes what nn.MultiheadAttention computes, on its weights."""

import pytest
import torch
from helpers import one_torch_thread  # noqa: F401
from torch import nn

from core.attention import merge_heads, self_attention, split_heads
from core.masks import generate_square_subsequent_mask


def plain(mha: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None, dropout=None) -> torch.Tensor:
    return self_attention(x, mha.num_heads, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight,
                          mha.out_proj.bias, mask, dropout)


@pytest.mark.parametrize("causal", [True, False])
def test_self_attention_is_what_multihead_attention_computes_outputs_and_gradients(causal):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3, batch_first=True)
    x = torch.randn(2, 7, 12, requires_grad=True)  # (B, T, C)
    mask = generate_square_subsequent_mask(7) if causal else None  # (T, T)
    expected = mha(x, x, x, attn_mask=mask, need_weights=False)[0]
    expected_grads = torch.autograd.grad(expected.sum(), [x, *mha.parameters()])
    got = plain(mha, x, mask)
    grads = torch.autograd.grad(got.sum(), [x, *mha.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)


def test_the_mask_hides_the_future_and_dropout_acts_on_the_attention_weights():
    """Changing a later token leaves earlier outputs alone; a dropout that removes every weight
    leaves each position with the out-projection's bias alone."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    nn.init.normal_(mha.out_proj.bias)
    x = torch.randn(1, 5, 8)  # (B, T, C)
    mask = generate_square_subsequent_mask(5)  # (T, T)
    changed = x.clone()
    changed[:, 3] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(plain(mha, changed, mask)[:, :3], plain(mha, x, mask)[:, :3])
        dropped = plain(mha, x, mask, dropout=torch.zeros_like)
    torch.testing.assert_close(dropped, mha.out_proj.bias.expand(1, 5, 8))


def test_split_and_merge_heads_follow_multihead_attentions_packed_layout():
    """q is the first C columns of the packed projection, head h its h-th slice of Dh; merging the
    heads puts them back side by side."""
    qkv = torch.arange(2 * 3 * 24, dtype=torch.float32).view(2, 3, 24)  # (B, T, 3C), C = 8, H = 2
    q, k, v = split_heads(qkv, num_heads=2)  # (B, H, T, Dh) each
    assert q.shape == (2, 2, 3, 4)
    torch.testing.assert_close(q[1, 1, 2], qkv[1, 2, 4:8])
    torch.testing.assert_close(k[0, 0, 1], qkv[0, 1, 8:12])
    torch.testing.assert_close(v[0, 1, 0], qkv[0, 0, 20:24])
    torch.testing.assert_close(merge_heads(v), qkv[..., 16:])
