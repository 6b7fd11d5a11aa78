"""generate_square_subsequent_mask: the causal mask every model passes explicitly."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.masks import generate_square_subsequent_mask


def test_small_mask_literal():
    inf = float("-inf")
    expected = torch.tensor([[0.0, inf, inf],
                             [0.0, 0.0, inf],
                             [0.0, 0.0, 0.0]])
    assert torch.equal(generate_square_subsequent_mask(3), expected)


def test_size_one_is_a_single_zero():
    assert torch.equal(generate_square_subsequent_mask(1), torch.zeros(1, 1))


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=64))
def test_zero_on_and_below_diagonal_minus_inf_above(size):
    mask = generate_square_subsequent_mask(size)
    assert mask.shape == (size, size)
    assert mask.dtype.is_floating_point  # a float mask is added to the scores
    rows = torch.arange(size).unsqueeze(1)  # (S, 1)
    cols = torch.arange(size).unsqueeze(0)  # (1, S)
    allowed = cols <= rows
    assert (mask[allowed] == 0.0).all()
    assert torch.isneginf(mask[~allowed]).all()


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=1, max_value=16))
def test_softmax_over_mask_attends_uniformly_to_the_past_only(size):
    # Equal scores + mask: query i spreads its attention evenly over keys 0..i, none later.
    weights = torch.softmax(torch.zeros(size, size) + generate_square_subsequent_mask(size), dim=-1)
    for i in range(size):
        assert torch.allclose(weights[i, : i + 1], torch.full((i + 1,), 1.0 / (i + 1)))
        assert (weights[i, i + 1:] == 0).all()
    assert not torch.isnan(weights).any()


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_device_argument_is_honoured(device):
    mask = generate_square_subsequent_mask(4, device=device)
    assert mask.device.type == torch.device(device).type
    assert mask.shape == (4, 4)


def test_default_device_is_cpu():
    assert generate_square_subsequent_mask(2).device.type == "cpu"


@pytest.mark.parametrize("size", [0, -1, -10])
def test_size_below_one_raises(size):
    with pytest.raises(ValueError, match="at least 1"):
        generate_square_subsequent_mask(size)


def test_mask_matches_torch_reference():
    # nn.Transformer's own helper builds the same float mask.
    ref = torch.nn.Transformer.generate_square_subsequent_mask(7)
    ours = generate_square_subsequent_mask(7)
    assert torch.equal(ref, ours)
