"""Plain attention (core/attention.py) computes what the encoder layers' own attention computes."""

import pytest
import torch
from helpers import one_torch_thread, tiny_model  # noqa: F401
from torch import nn

from core import attention
from core.attention import plain_attention
from core.masks import generate_square_subsequent_mask


@pytest.fixture
def answered(monkeypatch):
    """How many attention calls plain_attention answered itself (a test that passes because every
    call fell through to PyTorch would prove nothing)."""
    calls = []
    original = attention._self_attention

    def counting(**arguments):
        calls.append(arguments["query"].shape)
        return original(**arguments)
    monkeypatch.setattr(attention, "_self_attention", counting)
    return calls


def forward_and_gradients(model: nn.Module, ids: torch.Tensor, plain: bool):
    """(logits, {parameter name: gradient}) of one forward and backward pass."""
    model.zero_grad(set_to_none=True)
    if plain:
        with plain_attention():
            logits = model(ids)  # (B, T) -> (B, T, V)
    else:
        logits = model(ids)
    logits.logsumexp(-1).mean().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("model_type, d_models, nhead", [
    ("configurable", (16, 32, 32), [2, 4, 4]),  # per-layer widths and heads, with a projection
    ("simple", (16, 16), 2),
])
def test_plain_attention_gives_the_layers_own_outputs_and_gradients(answered, model_type, d_models, nhead):
    model = tiny_model(vocab_size=7, d_models=d_models, nhead=nhead, model_type=model_type)
    ids = torch.randint(7, (3, 9))  # (B, T)
    expected_logits, expected_grads = forward_and_gradients(model, ids, plain=False)
    logits, grads = forward_and_gradients(model, ids, plain=True)
    assert len(answered) == len(d_models), "every encoder layer's attention ran the plain way"
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_plain_attention_without_a_mask_lets_every_position_read_every_other(answered):
    """causal=False models pass no mask: every position then attends to every other, as in PyTorch."""
    torch.manual_seed(0)
    model = tiny_model(vocab_size=7, d_models=(16,)).eval()
    model.causal = False
    ids = torch.randint(7, (2, 5))  # (B, T)
    with torch.no_grad(), plain_attention():
        logits = model(ids)
    assert len(answered) == 1
    torch.testing.assert_close(logits, model(ids).detach(), rtol=1e-5, atol=1e-5)


def test_in_bf16_autocast_plain_attention_agrees_with_pytorchs_within_rounding(answered):
    model = tiny_model(vocab_size=7, d_models=(32, 32), nhead=4)
    ids = torch.randint(7, (4, 12))  # (B, T)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(ids).float()
        with plain_attention():
            plain = model(ids).float()
    assert len(answered) == 2 and plain.dtype == torch.float32
    torch.testing.assert_close(plain, expected, rtol=0.05, atol=0.05)


def test_calls_it_does_not_cover_go_to_pytorch_unchanged(answered):
    """Attention weights asked for, or a key padding mask: PyTorch's own result, weights included."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 8)  # (B, T, C)
    mask = generate_square_subsequent_mask(5)  # (T, T)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])  # (B, T)
    with torch.no_grad():
        expected = [mha(x, x, x, attn_mask=mask), mha(x, x, x, key_padding_mask=padding, need_weights=False)]
        with plain_attention():
            got = [mha(x, x, x, attn_mask=mask), mha(x, x, x, key_padding_mask=padding, need_weights=False)]
    assert answered == []
    torch.testing.assert_close(got[0][0], expected[0][0])
    torch.testing.assert_close(got[0][1], expected[0][1])  # the weights, (B, T, T)
    torch.testing.assert_close(got[1][0], expected[1][0])


def test_plain_attention_drops_attention_weights_in_training_as_pytorch_does(answered):
    """Dropout acts on the attention weights: with p = 1 none is left, so each position's output is
    the out-projection's bias alone; in eval mode nothing is dropped."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, dropout=1.0, batch_first=True)
    nn.init.normal_(mha.out_proj.bias)
    x = torch.randn(2, 5, 8)  # (B, T, C)
    mask = generate_square_subsequent_mask(5)  # (T, T)
    with torch.no_grad(), plain_attention():
        trained = mha.train()(x, x, x, attn_mask=mask, need_weights=False)[0]
        evaluated = mha.eval()(x, x, x, attn_mask=mask, need_weights=False)[0]
    assert len(answered) == 2
    torch.testing.assert_close(trained, mha.out_proj.bias.expand(2, 5, 8))
    assert not torch.allclose(evaluated, trained)
