"""The models: per-layer widths with projections, causality, any length, honest parameter counts."""


import pytest
import torch
from helpers import layer_stacks, num_params, one_torch_thread, tiny_config, tiny_model  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from core.config import ModelConfig
from core.model import (
    ConfigurableTransformer,
    PositionalEncoding,
    SimpleTransformer,
    attention_weights,
    build_model,
    parameter_counts,
)
from core.probes import causality_check

VOCAB = 7


# --- structure ------------------------------------------------------------------------------

def test_projections_exactly_where_widths_change():
    model = ConfigurableTransformer(VOCAB, [32, 64, 64, 32], [64, 128, 128, 64], nhead=4, dropout=0.0)
    kinds = [type(m) for m in model.layers]
    assert kinds == [nn.TransformerEncoderLayer, nn.Linear, nn.TransformerEncoderLayer,
                     nn.TransformerEncoderLayer, nn.Linear, nn.TransformerEncoderLayer]
    linears = [(i, m) for i, m in enumerate(model.layers) if isinstance(m, nn.Linear)]
    assert len(linears) == 2
    (i1, p1), (i2, p2) = linears
    # between layer 1 and 2, and between layer 3 and 4
    assert i1 == 1 and (p1.in_features, p1.out_features) == (32, 64)
    assert i2 == 4 and (p2.in_features, p2.out_features) == (64, 32)
    widths = [layer.self_attn.embed_dim for layer in model.encoder_layers()]
    assert widths == [32, 64, 64, 32]
    assert [layer.linear1.out_features for layer in model.encoder_layers()] == [64, 128, 128, 64]


def test_no_projection_when_widths_are_equal():
    model = ConfigurableTransformer(VOCAB, [16, 16, 16], [32, 48, 64], nhead=2)
    assert not any(isinstance(m, nn.Linear) for m in model.layers)
    assert len(model.layers) == 3
    assert [layer.linear1.out_features for layer in model.encoder_layers()] == [32, 48, 64]


def test_per_layer_nhead_is_honoured():
    model = ConfigurableTransformer(VOCAB, [16, 16, 24, 8], [32] * 4, nhead=[1, 4, 3, 8])
    assert [layer.self_attn.num_heads for layer in model.encoder_layers()] == [1, 4, 3, 8]


def test_single_nhead_is_used_by_every_layer():
    model = ConfigurableTransformer(VOCAB, [16, 32], [32, 32], nhead=4)
    assert [layer.self_attn.num_heads for layer in model.encoder_layers()] == [4, 4]


def test_simple_transformer_is_uniform():
    model = SimpleTransformer(VOCAB, d_model=16, nhead=4, num_layers=3, dim_feedforward=40)
    layers = model.encoder_layers()
    assert len(layers) == 3
    assert {(layer.self_attn.embed_dim, layer.self_attn.num_heads, layer.linear1.out_features) for layer in layers} \
        == {(16, 4, 40)}
    assert isinstance(model.encoder, nn.TransformerEncoder)


def test_build_model_picks_the_class_from_the_config():
    assert isinstance(build_model(tiny_config(VOCAB, [16, 16])), ConfigurableTransformer)
    simple = build_model(tiny_config(VOCAB, [16, 16], model_type="simple"))
    assert isinstance(simple, SimpleTransformer)
    assert len(simple.encoder_layers()) == 2


def test_invalid_widths_raise_value_error_not_assertion():
    with pytest.raises(ValueError, match="layer 2: d_model 100 is not divisible by nhead 8"):
        ConfigurableTransformer(VOCAB, [16, 100], [32, 32], nhead=8)
    with pytest.raises(ValueError, match="layer 1: d_model 10 is not divisible by nhead 4"):
        SimpleTransformer(VOCAB, 10, 4, 2, 32)
    with pytest.raises(ValueError, match="d_model_configs is empty"):
        build_model(ModelConfig(VOCAB, [], []))


@pytest.mark.parametrize("model_type", ["configurable", "simple"])
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_input_must_be_batch_by_time(model_type, shape):
    model = tiny_model(VOCAB, [8, 8], model_type=model_type)
    with pytest.raises(ValueError, match=r"expected token ids of shape \(batch, time\), got"):
        model(torch.zeros(shape, dtype=torch.long))


@pytest.mark.parametrize("model_type", ["configurable", "simple"])
def test_device_argument_places_every_parameter(model_type):
    # "meta" stands in for a GPU: nothing is hard-coded to the CPU.
    config = tiny_config(VOCAB, [8, 8], model_type=model_type)
    model = build_model(config, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    out = model(torch.zeros(2, 5, dtype=torch.long, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 5, VOCAB)


def test_dropout_setting_is_used_in_train_mode_only():
    model = tiny_model(VOCAB, [16], dropout=0.5)
    x = torch.randint(0, VOCAB, (2, 6))
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


# --- causality ------------------------------------------------------------------------------

def _future_changes_past(model: nn.Module, x: torch.Tensor, t: int, mode: str) -> tuple[float, float]:
    """Max |logit change| at positions <= t and > t after replacing every token after t."""
    x2 = x.clone()
    x2[:, t + 1:] = (x[:, t + 1:] + 1 + torch.randint(0, VOCAB - 1, x[:, t + 1:].shape)) % VOCAB
    model.train(mode == "train")
    with torch.set_grad_enabled(mode != "eval_no_grad"):
        a, b = model(x), model(x2)
    past = (a[:, : t + 1] - b[:, : t + 1]).abs().max().item()
    future = (a[:, t + 1:] - b[:, t + 1:]).abs().max().item()
    return past, future


@settings(max_examples=20, deadline=None)
@given(stack=layer_stacks(), length=st.integers(2, 12), simple=st.booleans(), data=st.data(),
       seed=st.integers(0, 2**16))
def test_future_tokens_never_change_earlier_logits(stack, length, simple, data, seed):
    d_models, ffs, heads = stack
    if simple:  # the simple model needs one width for every layer
        d_models, ffs, heads = [d_models[0]] * len(d_models), [ffs[0]] * len(ffs), heads[0]
    torch.manual_seed(seed)
    config = ModelConfig(VOCAB, d_models, ffs, heads, dropout=0.0,
                         model_type="simple" if simple else "configurable")
    model = build_model(config)
    t = data.draw(st.integers(0, length - 2), label="t")
    x = torch.randint(0, VOCAB, (2, length))
    # train mode (dropout 0: deterministic), eval mode, and eval under no_grad (torch's fast path)
    for mode in ("train", "eval", "eval_no_grad"):
        past, future = _future_changes_past(model, x, t, mode)
        assert past <= 1e-5, f"{mode}: logits at positions <= {t} moved by {past}"
        assert future > 0, f"{mode}: changed tokens did not change their own logits"


def test_causality_check_detects_a_model_that_sees_the_future():
    # The same check flags a plain encoder layer used without a mask, so it is not vacuous.
    torch.manual_seed(0)

    class Leaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, 8)
            self.layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True)
            self.head = nn.Linear(8, VOCAB)

        def forward(self, src):
            return self.head(self.layer(self.emb(src)))

    past, _ = _future_changes_past(Leaky(), torch.randint(0, VOCAB, (2, 6)), 2, "eval")
    assert past > 1e-3


@pytest.mark.parametrize("model_type", ["configurable", "simple"])
def test_causal_false_lets_later_tokens_change_earlier_outputs_and_the_default_does_not(model_type):
    x = torch.randint(0, VOCAB, (2, 7))
    for causal in (True, False):
        torch.manual_seed(0)
        model = build_model(ModelConfig(VOCAB, [16, 16], [32, 32], 2, 0.0, model_type, causal=causal))
        assert model.causal is causal
        for mode in ("train", "eval", "eval_no_grad"):
            past, _ = _future_changes_past(model, x, 2, mode)
            assert (past > 1e-3) if not causal else (past <= 1e-5), (causal, mode, past)
    assert ModelConfig(VOCAB, [16], [32]).causal is True


@pytest.mark.parametrize("causal", [True, False])
def test_the_causality_check_is_exactly_zero_before_the_edit_only_with_the_mask(causal):
    torch.manual_seed(1)
    model = build_model(ModelConfig(VOCAB, [16, 24], [32, 48], [2, 4], 0.1, causal=causal))
    ids = torch.randint(0, VOCAB, (9,))
    changes = causality_check(model, ids, 5, (ids[5].item() + 1) % VOCAB)
    assert len(changes) == 9 and all(0 <= c <= 1 for c in changes)
    assert changes[5] > 0
    if causal:
        assert changes[:5] == [0.0] * 5  # exactly, not approximately
    else:
        assert all(c > 0 for c in changes[:5]), changes
    assert model.training, "the check restores the model's mode"
    with pytest.raises(ValueError, match="between 0 and 8"):
        causality_check(model, ids, 9, 0)
    with pytest.raises(ValueError, match="already there"):
        causality_check(model, ids, 3, ids[3].item())


# --- any length -----------------------------------------------------------------------------

@pytest.mark.parametrize("model_type", ["configurable", "simple"])
def test_a_length_never_seen_before_works(model_type):
    model = tiny_model(VOCAB, [8, 8] if model_type == "simple" else [8, 16], model_type=model_type)
    model.eval()
    x = torch.randint(0, VOCAB, (2, 300))
    with torch.no_grad():
        short = model(x[:, :16])
        assert short.shape == (2, 16, VOCAB)
        long = model(x)
    assert long.shape == (2, 300, VOCAB)
    assert model.pos_encoding.table.size(0) >= 300
    assert torch.isfinite(long).all()
    # the grown table agrees with the old one: the first 16 positions give the same logits
    torch.testing.assert_close(long[:, :16], short, atol=1e-5, rtol=1e-5)


def test_positional_encoding_is_the_sinusoid_and_grows_consistently():
    pe = PositionalEncoding(6, dropout=0.0, initial_len=4)
    out = pe(torch.zeros(1, 10, 6))[0]  # (10, 6), longer than the initial table
    positions = torch.arange(10, dtype=torch.float32)
    for k in range(3):
        freq = 10000 ** (-2 * k / 6)
        torch.testing.assert_close(out[:, 2 * k], torch.sin(positions * freq))
        torch.testing.assert_close(out[:, 2 * k + 1], torch.cos(positions * freq))
    torch.testing.assert_close(PositionalEncoding(6, 0.0, initial_len=4)(torch.zeros(1, 3, 6))[0], out[:3])


def test_positional_encoding_odd_width():
    model = ConfigurableTransformer(VOCAB, [9], [16], nhead=3, dropout=0.0)
    assert model(torch.randint(0, VOCAB, (1, 200))).shape == (1, 200, VOCAB)


def test_positional_table_is_not_in_the_state_dict():
    model = tiny_model(VOCAB)
    model(torch.zeros(1, 500, dtype=torch.long))
    assert not any("pos_encoding" in key for key in model.state_dict())


# --- parameter counts -----------------------------------------------------------------------

def _counts_in_flow_order(model: nn.Module) -> list[int]:
    """parameter_counts regrouped as parameter_breakdown orders them: embedding, stack, norm + head."""
    rows = dict(parameter_counts(model))
    stack = [count for name, count in parameter_counts(model) if name.startswith(("layers.", "encoder."))]
    return [rows["embedding"]] + stack + [rows["final_norm"] + rows["head"]]


@settings(max_examples=25, deadline=None)
@given(stack=layer_stacks(max_layers=4), vocab=st.integers(2, 30))
def test_configurable_parameter_count_matches_the_module(stack, vocab):
    d_models, ffs, heads = stack
    config = ModelConfig(vocab, d_models, ffs, heads, dropout=0.0)
    model = build_model(config)
    assert config.num_parameters() == num_params(model)
    assert sum(c for _, c in parameter_counts(model)) == num_params(model)
    assert _counts_in_flow_order(model) == [c for _, c in config.parameter_breakdown()]
    projections = [name for name, _ in parameter_counts(model) if name.endswith(" Linear")]
    assert len(projections) == len(config.projection_positions())


@settings(max_examples=15, deadline=None)
@given(width=st.sampled_from([4, 8, 12]), nhead=st.sampled_from([1, 2, 4]), layers=st.integers(1, 3),
       ff=st.integers(1, 20), vocab=st.integers(2, 30))
def test_simple_parameter_count_matches_the_module(width, nhead, layers, ff, vocab):
    config = ModelConfig(vocab, [width] * layers, [ff] * layers, nhead, 0.0, "simple")
    model = build_model(config)
    assert config.num_parameters() == num_params(model)
    assert sum(c for _, c in parameter_counts(model)) == num_params(model)
    assert _counts_in_flow_order(model) == [c for _, c in config.parameter_breakdown()]
    stack_names = [name for name, _ in parameter_counts(model) if name.startswith("encoder.")]
    assert stack_names == [f"encoder.{i} TransformerEncoderLayer" for i in range(layers)]


def test_parameter_counts_name_every_part():
    model = ConfigurableTransformer(VOCAB, [8, 16], [16, 16], nhead=2)
    rows = parameter_counts(model)
    assert {name for name, _ in rows} == {"embedding", "layers.0 TransformerEncoderLayer", "layers.1 Linear",
                                          "layers.2 TransformerEncoderLayer", "final_norm", "head"}
    stack = [name for name, _ in rows if name.startswith("layers.")]
    assert stack == ["layers.0 TransformerEncoderLayer", "layers.1 Linear",
                     "layers.2 TransformerEncoderLayer"]
    assert dict(rows)["layers.1 Linear"] == 8 * 16 + 16
    assert dict(rows)["embedding"] == VOCAB * 8
    assert dict(rows)["head"] == 16 * VOCAB + VOCAB


# --- attention maps -------------------------------------------------------------------------

@pytest.mark.parametrize("model_type", ["configurable", "simple"])
def test_attention_weights_are_causal_distributions(model_type):
    model = tiny_model(VOCAB, [8, 8] if model_type == "simple" else [8, 16],
                       nhead=2, model_type=model_type, dropout=0.1)
    model.train()
    x = torch.randint(0, VOCAB, (3, 5))
    maps = attention_weights(model, x)
    assert model.training  # mode restored
    assert len(maps) == 2
    for weights in maps:
        assert weights.shape == (3, 2, 5, 5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 5))
        assert (weights.triu(diagonal=1) == 0).all()
    assert maps[0][..., 0, 0].allclose(torch.ones(3, 2))  # the first token can only see itself


def test_embeddings_are_added_to_positions_unscaled():
    """No sqrt(d_model) factor: it drowned the positions and kept the toy tasks from being solved."""
    model = ConfigurableTransformer(VOCAB, [16, 8], [16, 16], nhead=2, dropout=0.0).eval()
    x = torch.randint(0, VOCAB, (2, 5))
    expected = model.embedding(x) + model.pos_encoding.table[:5]  # (B, T, C) + (T, C)
    torch.testing.assert_close(model._embed(x), expected)
