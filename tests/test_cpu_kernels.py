"""core/cpu_kernels.py: inside cpu_bf16_kernels the encoder layers compute what they compute outside it,
with their attention and dropout answered by the mode."""

import pytest
import torch
from helpers import one_torch_thread, tiny_model  # noqa: F401
from torch import nn

from core import cpu_kernels
from core.cpu_kernels import cpu_bf16_kernels, fast_dropout
from core.masks import generate_square_subsequent_mask


@pytest.fixture
def answered(monkeypatch):
    """How many attention calls the mode answered itself (a test that passes because every call fell
    through to PyTorch would prove nothing)."""
    calls = []
    original = cpu_kernels.self_attention

    def counting(x, *args):
        calls.append(x.shape)
        return original(x, *args)
    monkeypatch.setattr(cpu_kernels, "self_attention", counting)
    return calls


def forward_and_gradients(model: nn.Module, ids: torch.Tensor, plain: bool):
    """(logits, {parameter name: gradient}) of one forward and backward pass."""
    model.zero_grad(set_to_none=True)
    if plain:
        with cpu_bf16_kernels():
            logits = model(ids)  # (B, T) -> (B, T, V)
    else:
        logits = model(ids)
    logits.logsumexp(-1).mean().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("model_type, d_models, nhead", [
    ("configurable", (16, 32, 32), [2, 4, 4]),  # per-layer widths and heads, with a projection
    ("simple", (16, 16), 2),
])
def test_the_mode_gives_the_layers_own_outputs_and_gradients(answered, model_type, d_models, nhead):
    model = tiny_model(vocab_size=7, d_models=d_models, nhead=nhead, model_type=model_type)
    ids = torch.randint(7, (3, 9))  # (B, T)
    expected_logits, expected_grads = forward_and_gradients(model, ids, plain=False)
    logits, grads = forward_and_gradients(model, ids, plain=True)
    assert len(answered) == len(d_models), "every encoder layer's attention ran the plain way"
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_mode_without_a_mask_lets_every_position_read_every_other(answered):
    """causal=False models pass no mask: every position then attends to every other, as in PyTorch."""
    torch.manual_seed(0)
    model = tiny_model(vocab_size=7, d_models=(16,)).eval()
    model.causal = False
    ids = torch.randint(7, (2, 5))  # (B, T)
    with torch.no_grad(), cpu_bf16_kernels():
        logits = model(ids)
    assert len(answered) == 1
    torch.testing.assert_close(logits, model(ids).detach(), rtol=1e-5, atol=1e-5)


def test_in_bf16_autocast_the_mode_agrees_with_pytorch_within_rounding(answered):
    model = tiny_model(vocab_size=7, d_models=(32, 32), nhead=4)
    ids = torch.randint(7, (4, 12))  # (B, T)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(ids).float()
        with cpu_bf16_kernels():
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
        with cpu_bf16_kernels():
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
    with torch.no_grad(), cpu_bf16_kernels():
        trained = mha.train()(x, x, x, attn_mask=mask, need_weights=False)[0]
        evaluated = mha.eval()(x, x, x, attn_mask=mask, need_weights=False)[0]
    assert len(answered) == 2
    torch.testing.assert_close(trained, mha.out_proj.bias.expand(2, 5, 8))
    assert not torch.allclose(evaluated, trained)


# --- dropout ---------------------------------------------------------------------------------

def test_fast_dropout_drops_each_element_with_probability_p_and_keeps_the_mean():
    """Over a million elements: the dropped share is p in each of the four 16-bit lanes a 64-bit
    draw gives (a lane with a biased bit would show), and the kept ones are scaled to keep the mean."""
    torch.manual_seed(0)
    x = torch.ones(1_000_003)  # not a multiple of 4: the last draw is used in part
    y = fast_dropout(x, 0.05)
    assert y.shape == x.shape
    dropped = y == 0
    for lane in range(4):
        assert abs(dropped[lane::4].float().mean().item() - 0.05) < 0.003, lane
    kept = y[~dropped]
    torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - 3277)))  # 3277 = round(0.05 * 65536)
    assert abs(y.mean().item() - 1.0) < 0.003


def test_fast_dropout_repeats_with_the_seed_and_its_gradient_follows_the_mask():
    x = torch.randn(3, 5, 7, requires_grad=True)
    masks = []
    for _ in range(2):
        torch.manual_seed(1)
        y = fast_dropout(x, 0.3)
        (grad,) = torch.autograd.grad(y.sum(), x)
        masks.append(y != 0)
        torch.testing.assert_close(grad, (y != 0).float() / (1 - round(0.3 * 65536) / 65536))
    assert torch.equal(masks[0], masks[1])
    assert 0 < masks[0].sum() < x.numel()


def test_fast_dropout_with_a_generator_of_its_own_repeats_with_it_and_leaves_torchs_alone():
    """Each thread of a sliced training step (core/parallel_step.py) draws from its own generator."""
    x = torch.randn(3, 5, 7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first, second = (fast_dropout(x, p, torch.Generator().manual_seed(4)) for p in (0.3, 0.3))
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), before)
    other = fast_dropout(x, 0.3, torch.Generator().manual_seed(5))
    assert not torch.equal(first == 0, other == 0)
    tiny = fast_dropout(torch.ones(200_000), 1e-6, torch.Generator().manual_seed(0))  # rounds to 0 of 65536
    assert torch.equal(torch.get_rng_state(), before)
    assert (tiny == 0).sum() <= 5
    torch.testing.assert_close(tiny.max(), torch.tensor(1 / (1 - 1e-6)))


def test_fast_dropout_leaves_the_extremes_to_pytorch():
    x = torch.randn(4, 6)
    torch.testing.assert_close(fast_dropout(x, 0.0), x)
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def test_the_mode_answers_every_dropout_of_a_training_model_and_none_in_eval(monkeypatch):
    """Positions, and per encoder layer: the attention weights, after attention, in the
    feed-forward block, after it. In eval mode dropout is off, so nothing is drawn."""
    calls = []
    original = cpu_kernels.fast_dropout

    def counting(x, p, generator=None):
        calls.append(p)
        return original(x, p, generator)
    monkeypatch.setattr(cpu_kernels, "fast_dropout", counting)
    model = tiny_model(vocab_size=7, d_models=(16, 16), dropout=0.2)
    ids = torch.randint(7, (2, 6))  # (B, T)
    with cpu_bf16_kernels():
        model.train()(ids)
        assert calls == [0.2] * (1 + 4 * 2)
        calls.clear()
        model.eval()(ids)
    assert calls == []
