"""Sampling: greedy, temperature, top-k, top-p, seeds, the model left as it was, the key/value cache."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import FixedLogits, layer_stacks, one_torch_thread, tiny_model, tiny_task  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from core import kv_cache, row_product
from core.config import Limits, SampleConfig
from core.kv_cache import CachedDecoder, supports_kv_cache
from core.sampling import generate, greedy_answers, sample_text

VOCAB = 6
PROBS = [0.5, 0.3, 0.15, 0.05]


def model():
    return tiny_model(VOCAB, [16, 16], nhead=2, dropout=0.1, seed=3)


def prompt():
    return torch.tensor([1, 4, 2, 0, 5])


def manual_greedy(m, ids, n):
    m.eval()
    ids = ids.clone()
    with torch.no_grad():
        for _ in range(n):
            next_id = m(ids.unsqueeze(0))[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1)])
    return ids[-n:]


def test_temperature_zero_is_greedy_is_argmax():
    m = model()
    by_temperature = generate(m, prompt(), SampleConfig(max_new_tokens=8, temperature=0))
    by_flag = generate(m, prompt(), SampleConfig(max_new_tokens=8, greedy=True, temperature=1.5, top_k=3))
    assert torch.equal(by_temperature, by_flag)
    assert torch.equal(by_temperature, manual_greedy(m, prompt(), 8))


def test_top_k_one_and_tiny_top_p_are_greedy():
    m = model()
    greedy = generate(m, prompt(), SampleConfig(max_new_tokens=8, greedy=True))
    assert torch.equal(generate(m, prompt(), SampleConfig(max_new_tokens=8, top_k=1, seed=1)), greedy)
    assert torch.equal(generate(m, prompt(), SampleConfig(max_new_tokens=8, top_p=1e-6, seed=1)), greedy)


def test_top_k_larger_than_the_vocabulary_is_clamped():
    m = model()
    clamped = generate(m, prompt(), SampleConfig(max_new_tokens=10, top_k=1000, seed=4))
    unfiltered = generate(m, prompt(), SampleConfig(max_new_tokens=10, seed=4))
    assert torch.equal(clamped, unfiltered)


def test_same_seed_same_sample():
    m = model()
    config = SampleConfig(max_new_tokens=20, temperature=1.3, seed=11)
    first = generate(m, prompt(), config)
    assert torch.equal(first, generate(m, prompt(), config))
    others = [generate(m, prompt(), SampleConfig(max_new_tokens=20, temperature=1.3, seed=s))
              for s in (12, 13)]
    assert any(not torch.equal(first, o) for o in others)


def test_seeded_sampling_does_not_touch_the_global_generator():
    m = model()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    generate(m, prompt(), SampleConfig(max_new_tokens=5, seed=9))
    assert torch.equal(torch.rand(3), expected)


def tokens_drawn(config_kwargs, n=300):
    return set(generate(FixedLogits(PROBS), torch.tensor([0]),
                        SampleConfig(max_new_tokens=n, seed=0, **config_kwargs)).tolist())


def test_unfiltered_sampling_draws_every_token():
    assert tokens_drawn({}) == {0, 1, 2, 3}


@pytest.mark.parametrize("kwargs, allowed", [
    (dict(top_k=2), {0, 1}),
    (dict(top_k=3), {0, 1, 2}),
    (dict(top_p=0.7), {0, 1}),  # 0.5 < 0.7 so the second token is still needed
    (dict(top_p=0.9), {0, 1, 2}),
    (dict(top_p=0.45), {0}),
    (dict(top_p=1.0), {0, 1, 2, 3}),
    (dict(top_k=3, top_p=0.7), {0, 1}),
    (dict(temperature=0.01), {0}),
])
def test_filters_keep_only_the_likeliest_tokens(kwargs, allowed):
    assert tokens_drawn(kwargs) == allowed


def test_high_temperature_flattens_the_distribution():
    draws = generate(FixedLogits(PROBS), torch.tensor([0]),
                     SampleConfig(max_new_tokens=400, temperature=50, seed=0))
    rare = (draws == 3).float().mean().item()
    assert rare > 0.15  # 0.05 at temperature 1, near 0.25 when flat


@pytest.mark.parametrize("kwargs, message", [
    (dict(top_k=0), "top-k must be at least 1"),
    (dict(top_p=0.0), "top-p must be above 0 and at most 1"),
    (dict(top_p=1.5), "top-p must be above 0 and at most 1"),
    (dict(top_p=-0.2), "top-p must be above 0 and at most 1"),
    (dict(temperature=-1.0), "temperature must be 0 .greedy. or positive"),
    (dict(max_new_tokens=0), "max new tokens must be at least 1"),
])
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(model(), prompt(), SampleConfig(**kwargs))


def test_limit_on_new_tokens():
    with pytest.raises(ValueError, match="max new tokens 6 is above the limit of 5"):
        generate(model(), prompt(), SampleConfig(max_new_tokens=6), limits=Limits(max_new_tokens=5))


def test_empty_prompt_raises():
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate(model(), [], SampleConfig(max_new_tokens=3))
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate(model(), torch.zeros(2, 0, dtype=torch.long), SampleConfig(max_new_tokens=3))


@pytest.mark.parametrize("training", [True, False])
def test_model_mode_is_restored(training):
    m = model()
    m.train(training)
    generate(m, prompt(), SampleConfig(max_new_tokens=3, temperature=0.8, seed=0))
    assert m.training is training


def test_model_mode_is_restored_after_an_error():
    m = model()
    m.train()
    with pytest.raises(IndexError):
        generate(m, torch.tensor([VOCAB + 5]), SampleConfig(max_new_tokens=2))  # id outside the vocabulary
    assert m.training


def test_sampling_runs_without_gradients_and_in_eval_mode():
    m = model()
    m.train()
    out = generate(m, prompt(), SampleConfig(max_new_tokens=4, seed=0))
    assert not out.requires_grad
    assert all(p.grad is None for p in m.parameters())
    # eval mode: dropout is off, so greedy decoding of a train-mode model is reproducible
    again = generate(m, prompt(), SampleConfig(max_new_tokens=4, greedy=True))
    assert torch.equal(again, generate(m, prompt(), SampleConfig(max_new_tokens=4, greedy=True)))


def test_shapes_and_batches():
    m = model()
    one = generate(m, prompt(), SampleConfig(max_new_tokens=7, greedy=True))
    assert one.shape == (7,) and one.dtype == torch.long
    assert 0 <= one.min() and one.max() < VOCAB
    batch = torch.stack([prompt(), prompt().flip(0)])
    both = generate(m, batch, SampleConfig(max_new_tokens=7, greedy=True))
    assert both.shape == (2, 7)
    assert torch.equal(both[0], one)  # rows do not influence each other
    assert torch.equal(both[1], generate(m, prompt().flip(0), SampleConfig(max_new_tokens=7, greedy=True)))
    assert torch.equal(greedy_answers(m, batch, 7), both)


def test_block_size_crops_long_prompts():
    fixed = FixedLogits(PROBS)
    long_prompt = torch.arange(20) % 4
    generate(fixed, long_prompt, SampleConfig(max_new_tokens=5, greedy=True), block_size=6)
    assert max(fixed.calls) == 6

    m = model()
    ids = torch.randint(0, VOCAB, (40,), generator=torch.Generator().manual_seed(0))
    cropped = generate(m, ids, SampleConfig(max_new_tokens=6, greedy=True), block_size=8)
    from_tail = generate(m, ids[-8:], SampleConfig(max_new_tokens=6, greedy=True), block_size=8)
    assert torch.equal(cropped, from_tail)
    for use_cache in (True, False):
        lengths = []  # the embedding sees every position either path encodes
        hook = m.embedding.register_forward_pre_hook(
            lambda module, args, lengths=lengths: lengths.append(args[0].size(1)))
        generate(m, ids, SampleConfig(max_new_tokens=6, temperature=0.9, seed=0), block_size=8,
                 use_cache=use_cache)
        hook.remove()
        assert lengths == [8] * 6


def test_prompt_longer_than_any_trained_length_without_crop():
    out = generate(model(), torch.randint(0, VOCAB, (300,)), SampleConfig(max_new_tokens=2, greedy=True))
    assert out.shape == (2,)


def test_sample_text_checks_the_prompt_and_decodes():
    task = tiny_task("sort", seq_len=4, num_digits=3)
    m = tiny_model(len(task.vocab), [16], seed=0)
    answer = sample_text(m, task, "2101", SampleConfig(max_new_tokens=4, greedy=True))
    assert len(answer) == 4 and set(answer) <= set("012")
    with pytest.raises(ValueError, match="the prompt is empty"):
        sample_text(m, task, "", SampleConfig(max_new_tokens=4))
    with pytest.raises(ValueError, match="got 3 characters"):
        sample_text(m, task, "210", SampleConfig(max_new_tokens=4))
    with pytest.raises(ValueError, match="'7' is not in the vocabulary"):
        sample_text(m, task, "2107", SampleConfig(max_new_tokens=4))


def test_sample_text_continues_a_long_text_prompt():
    from core.config import TaskConfig
    from core.data import make_task

    text = "the cat sat on a mat. " * 20
    task = make_task(TaskConfig("text", seq_len=8, train_size=4, val_size=2, text=text))
    m = tiny_model(len(task.vocab), [16], seed=0)
    text = sample_text(m, task, "the cat sat on a mat. the cat", SampleConfig(max_new_tokens=12, seed=0))
    assert len(text) == 12 and set(text) <= set(task.vocab.tokens)


# --- the key/value cache: the same tokens as re-encoding the whole context ------------------

def widths_model():
    return tiny_model(VOCAB, [16, 24, 24, 16], nhead=[2, 3, 3, 2], dropout=0.1, seed=5)


def simple_model():
    return tiny_model(VOCAB, [16, 16, 16], nhead=4, dropout=0.1, model_type="simple", seed=6)


def batch_of_prompts():
    return torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(1))  # (B, T)


SAMPLINGS = [dict(greedy=True), dict(temperature=1.3, seed=2), dict(top_k=3, seed=3),
             dict(top_p=0.8, seed=4), dict(temperature=0.7, top_k=4, top_p=0.9, seed=5)]


@pytest.fixture(params=[True, False], ids=["one call", "op by op"])
def one_row_products(request, monkeypatch):
    """Both ways a new token of one sequence is computed, whichever this CPU would pick: in one call
    with the row kernel's products, or op by op with MKL's."""
    monkeypatch.setattr(kv_cache, "row_kernel_for", lambda model: request.param)
    monkeypatch.setattr(kv_cache, "one_call_for", lambda model: request.param)
    return request.param


def cached_and_uncached(m, prompt_ids, block_size=None, **config_kwargs):
    config = SampleConfig(**config_kwargs)
    return (generate(m, prompt_ids, config, block_size=block_size),
            generate(m, prompt_ids, config, block_size=block_size, use_cache=False))


@pytest.mark.parametrize("make_model", [model, widths_model, simple_model])
@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("batch", [1, 3])  # one row takes the cache's matrix-vector path
def test_cache_gives_the_same_tokens(make_model, sampling, batch, one_row_products):
    cached, uncached = cached_and_uncached(make_model(), batch_of_prompts()[:batch], max_new_tokens=20, **sampling)
    assert cached.shape == (batch, 20)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("make_model", [model, widths_model, simple_model])
@pytest.mark.parametrize("sampling", [dict(greedy=True), dict(temperature=1.1, top_p=0.9, seed=7)])
def test_cache_crops_like_re_encoding(make_model, sampling):
    # prompt shorter than the block, then the window slides: the cache is rebuilt every step
    cached, uncached = cached_and_uncached(make_model(), batch_of_prompts(), block_size=9, max_new_tokens=12,
                                           **sampling)
    assert torch.equal(cached, uncached)
    long_prompt = torch.randint(0, VOCAB, (2, 14), generator=torch.Generator().manual_seed(2))
    cached, uncached = cached_and_uncached(make_model(), long_prompt, block_size=6, max_new_tokens=8, **sampling)
    assert torch.equal(cached, uncached)


def test_cache_past_the_positional_table():
    m = widths_model()
    assert m.pos_encoding.table.size(0) == 128
    prompt_ids = torch.randint(0, VOCAB, (2, 120), generator=torch.Generator().manual_seed(3))
    cached, uncached = cached_and_uncached(m, prompt_ids, max_new_tokens=20, temperature=0.9, seed=0)
    assert torch.equal(cached, uncached)
    assert m.pos_encoding.table.size(0) >= 140
    assert not m.pos_encoding.table.is_inference()  # still an ordinary buffer: training can use it
    m.train()
    m(prompt_ids[:, :4]).sum().backward()


@pytest.mark.parametrize("make_model", [widths_model, simple_model])
@pytest.mark.parametrize("batch", [1, 3])
def test_cached_logits_match_the_forward_pass(make_model, batch, one_row_products):
    m = make_model().eval()
    decoder = CachedDecoder(m)
    ids = batch_of_prompts()[:batch]
    with torch.no_grad():
        for _ in range(130):  # runs past the table's initial 128 positions
            logits = decoder.next_logits(ids)  # (B, V)
            torch.testing.assert_close(logits, m(ids)[:, -1], rtol=1e-5, atol=1e-5)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    assert decoder.length == ids.size(1) - 1


def test_cache_holds_only_keys_and_values_never_a_weight():
    m = widths_model().eval()
    params_before = {name: p.data_ptr() for name, p in m.named_parameters()}
    tensors_before = len(m.state_dict())
    decoder = CachedDecoder(m)
    with torch.no_grad():
        decoder.next_logits(batch_of_prompts())
    assert {name: p.data_ptr() for name, p in m.named_parameters()} == params_before
    assert len(m.state_dict()) == tensors_before
    weights = {p.untyped_storage().data_ptr() for p in m.parameters()}
    layers = m.encoder_layers()
    assert len(decoder.caches) == len(layers)
    for layer, cache in zip(layers, decoder.caches):
        assert set(vars(cache)) == {"keys", "values", "length"} and cache.length == 5
        heads = layer.self_attn.num_heads
        for kept in (cache.keys, cache.values):
            # (B, H, capacity, Dh), the first `length` positions in use
            assert kept.shape[:2] + kept.shape[3:] == (3, heads, layer.self_attn.embed_dim // heads)
            assert kept.untyped_storage().data_ptr() not in weights


def nested_arrays(parts) -> list[np.ndarray]:
    """The numpy arrays in nested tuples."""
    if isinstance(parts, np.ndarray):
        return [parts]
    return [a for part in parts for a in nested_arrays(part)] if isinstance(parts, tuple) else []


def test_one_row_products_read_the_parameters_own_memory_and_return_new_tensors(monkeypatch):
    monkeypatch.setattr(kv_cache, "row_kernel_for", lambda model: True)
    monkeypatch.setattr(kv_cache, "one_call_for", lambda model: True)
    m = widths_model().eval()
    weights = {p.untyped_storage().data_ptr() for p in m.parameters()}
    decoder = CachedDecoder(m)
    ids = batch_of_prompts()[:1]  # (1, T)
    with torch.no_grad():
        for _ in range(3):  # the prompt as a matrix product, then one row at a time
            ids = torch.cat([ids, decoder.next_logits(ids).argmax(-1, keepdim=True)], dim=1)
    # one call a token: every parameter but the embedding's, each read in its own memory
    arrays = [a for a in nested_arrays(decoder.one_call.arguments) if a.size]  # empty: no projection there
    read = [p for name, p in m.named_parameters() if not name.startswith("embedding")]
    assert len(arrays) == len(read)
    assert {a.ctypes.data for a in arrays} == {p.data_ptr() for p in read}  # views, no copies
    out = decoder.linear(torch.ones(1, 1, 16), m.layers[0].linear1.weight, m.layers[0].linear1.bias)
    assert out.shape == (1, 1, m.layers[0].linear1.out_features)
    assert out.untyped_storage().data_ptr() not in weights


def test_the_row_kernel_computes_what_f_linear_does():
    generator = torch.Generator().manual_seed(0)
    decoder_linear = kv_cache.StepLinear(row_kernel=True)
    for c_out, c_in in [(1, 1), (3, 5), (48, 17), (1024, 256)]:  # widths off the vector lanes too
        weight, bias = torch.randn(c_out, c_in, generator=generator), torch.randn(c_out, generator=generator)
        x = torch.randn(1, 1, c_in, generator=generator)  # (B=1, T=1, C_in)
        for b in (bias, None):
            torch.testing.assert_close(decoder_linear(x, weight, b), F.linear(x, weight, b))
        # both compilations: the serial one serves where no thread-safe threading layer loads
        for kernel in (row_product.parallel_kernel, row_product.serial_kernel):
            out = np.empty(c_out, np.float32)
            kernel(weight.numpy(), x.view(-1).numpy(), bias.numpy(), out)
            torch.testing.assert_close(torch.from_numpy(out), F.linear(x.view(-1), weight, bias))


def test_without_a_thread_safe_threading_layer_the_row_kernel_runs_on_one_thread(monkeypatch):
    def no_threading_layer(*arrays):
        raise ValueError("No threading layer could be loaded.")
    monkeypatch.setattr(row_product, "parallel_kernel", no_threading_layer)
    row_product._kernel.cache_clear()
    try:
        assert row_product.kernel_for_this_thread() is row_product.serial_kernel
        assert row_product.stack_kernel_for_this_thread() is None  # its products need the thread pool
    finally:
        row_product._kernel.cache_clear()  # the next caller probes the real kernel again


def test_threads_sample_through_the_row_kernel_at_once(one_row_products):
    """The page samples from several threads: each gets the tokens it would get alone (numba's
    threads come from a thread-safe layer; its own workqueue layer would abort the process)."""
    m = widths_model().eval()
    config = SampleConfig(max_new_tokens=12, greedy=True)
    alone = generate(m, prompt(), config)
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda _: generate(m, prompt(), config), range(8)))
    assert all(torch.equal(tokens, alone) for tokens in together)


def test_the_row_kernel_leaves_rows_it_does_not_take_to_f_linear(monkeypatch):
    def kernel(*arrays):
        raise AssertionError("the row kernel was called")
    decoder_linear = kv_cache.StepLinear(row_kernel=True)
    monkeypatch.setattr(decoder_linear, "kernel", kernel)
    weight, bias = torch.randn(8, 4), torch.randn(8)
    for x, w in [(torch.randn(2, 1, 4), weight),  # two rows: a matrix product
                 (torch.randn(1, 2, 4), weight),  # two positions of one sequence: a prompt
                 (torch.randn(1, 1, 4, dtype=torch.float64), weight.double()),  # not float32
                 (torch.randn(1, 1, 4), torch.randn(4, 8).t())]:  # a transposed weight
        torch.testing.assert_close(decoder_linear(x, w, bias.to(w.dtype)), F.linear(x, w, bias.to(w.dtype)))


def decoder_after_the_prompt(m: nn.Module, row_kernel: bool, monkeypatch) -> CachedDecoder:
    """A decoder of `m` whose caches hold a 5-token prompt."""
    monkeypatch.setattr(kv_cache, "row_kernel_for", lambda model: row_kernel)
    monkeypatch.setattr(kv_cache, "one_call_for", lambda model: row_kernel)
    decoder = CachedDecoder(m.eval())
    with torch.no_grad():
        decoder.next_logits(prompt().unsqueeze(0))  # (1, 5): the prompt, op by op
    return decoder


def relu_model():
    m = tiny_model(VOCAB, [24, 24], nhead=3, seed=7)
    for layer in m.encoder_layers():
        layer.activation = F.relu
    return m


def wide_model():  # config M's layer width, heads and feed-forward
    return tiny_model(VOCAB, [256, 256], [1024, 1024], nhead=8, seed=8)


@pytest.mark.parametrize("make_model", [widths_model, simple_model, relu_model, wide_model])
def test_one_call_a_token_computes_what_the_stack_does_op_by_op(make_model, monkeypatch):
    m = make_model()
    by_ops, in_one_call = (decoder_after_the_prompt(m, row_kernel, monkeypatch) for row_kernel in (False, True))
    ids = torch.cat([prompt(), torch.tensor([3])]).unsqueeze(0)  # (1, 6): one new token
    with torch.no_grad():
        expected = by_ops.next_logits(ids)
        assert in_one_call.one_call.takes(ids[:, 5:])
        logits = in_one_call.next_logits(ids)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    for kept, expected_kept in zip(in_one_call.caches, by_ops.caches):
        assert kept.length == expected_kept.length == 6
        torch.testing.assert_close(kept.keys[:, :, :6], expected_kept.keys[:, :, :6])
        torch.testing.assert_close(kept.values[:, :, :6], expected_kept.values[:, :, :6])


def with_silu(m):
    m.encoder_layers()[-1].activation = F.silu  # an activation the call does not compute
    return m


def with_a_transposed_weight(m):
    linear = m.encoder_layers()[0].linear1  # the same values, laid out column by column
    linear.weight = nn.Parameter(linear.weight.detach().t().contiguous().t())
    return m


@pytest.mark.parametrize("change", [with_silu, with_a_transposed_weight, lambda m: m.double()])
def test_one_call_a_token_leaves_models_it_does_not_take_op_by_op(change, monkeypatch):
    m = change(widths_model())
    decoder = decoder_after_the_prompt(m, True, monkeypatch)
    assert decoder.one_call.arguments is None and not decoder.one_call.takes(torch.tensor([[3]]))
    cached, uncached = cached_and_uncached(m, prompt(), max_new_tokens=6, greedy=True)
    assert torch.equal(cached, uncached)


def test_one_call_a_token_takes_one_new_token_of_one_sequence(monkeypatch):
    one_call = decoder_after_the_prompt(widths_model(), True, monkeypatch).one_call
    assert one_call.takes(torch.tensor([[3]]))
    assert not one_call.takes(torch.tensor([[3], [4]]))  # two sequences: a matrix product
    assert not one_call.takes(torch.tensor([[3, 4]]))  # two new tokens: a prompt


@pytest.mark.parametrize("shape", [(1, 1, 192), (1, 1, 7), (3, 1, 192), (1, 4, 192)])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_a_steps_activation_is_the_layers_own(shape, activation):
    layer = nn.TransformerEncoderLayer(8, 2, shape[-1], activation=activation, batch_first=True)
    hidden = torch.randn(shape)
    out = kv_cache._activation(layer, hidden)
    assert out.shape == hidden.shape and out.is_contiguous()
    torch.testing.assert_close(out, layer.activation(hidden))


def test_processes_that_fork_training_runs_never_load_numba():
    """GNU OpenMP's threads don't survive a fork: the fork server imports the engine, never numba,
    and held-out accuracy's batches, matrix products, don't load it either."""
    code = ("import sys, torch, core.training, core.kv_cache as kv\n"
            "from core.model import build_model\nfrom core.config import ModelConfig\n"
            "from core.sampling import greedy_answers\n"
            "kv.row_kernel_for = kv.one_call_for = lambda model: True\n"
            "model = build_model(ModelConfig(5, [16], [32], 2, 0.0))\n"
            "greedy_answers(model, torch.zeros(3, 4, dtype=torch.long), 2)\n"
            "assert 'numba' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("amd_mkl", [True, False])
@pytest.mark.parametrize("numba_installed", [True, False])
def test_numba_serves_only_large_models_and_op_by_op_products_only_where_mkl_runs_on_amd(
        monkeypatch, amd_mkl, numba_installed):
    monkeypatch.setattr(kv_cache, "mkl_on_an_amd_cpu", lambda: amd_mkl)
    monkeypatch.setattr(kv_cache, "numba_installed", lambda: numba_installed)
    assert not kv_cache.row_kernel_for(widths_model()) and not kv_cache.one_call_for(widths_model())
    # config M of the benchmark: 6 layers of 256, 18 MB of weight matrices
    big = tiny_model(VOCAB, [256] * 6, [1024] * 6, nhead=8, seed=0)
    assert kv_cache.one_call_for(big) is numba_installed  # whatever the CPU
    assert kv_cache.row_kernel_for(big) is (amd_mkl and numba_installed)


def test_numba_is_found_where_the_test_tools_install_it():
    assert kv_cache.numba_installed()  # requirements-dev.txt pins it, so the tests above ran the kernel


@pytest.mark.parametrize("training", [True, False])
def test_cache_restores_the_mode_and_leaves_no_gradients(training):
    m = widths_model()
    m.train(training)
    cached, uncached = cached_and_uncached(m, prompt(), max_new_tokens=6, temperature=0.9, seed=1)
    assert torch.equal(cached, uncached)  # eval mode both times: dropout off
    assert m.training is training
    assert not cached.requires_grad and all(p.grad is None for p in m.parameters())
    cached[0] = 0  # the caller gets an ordinary tensor, free to change in place


def test_models_without_a_cache_are_re_run_whole():
    fixed = FixedLogits(PROBS)
    assert not supports_kv_cache(fixed) and supports_kv_cache(model()) and supports_kv_cache(simple_model())
    generate(fixed, torch.tensor([0, 1, 2]), SampleConfig(max_new_tokens=3, greedy=True))
    assert fixed.calls == [3, 4, 5]


@settings(max_examples=25, deadline=None)
@given(stack=layer_stacks(max_layers=3), batch=st.integers(1, 2), prompt_len=st.integers(1, 6),
       block_size=st.one_of(st.none(), st.integers(1, 8)), seed=st.integers(0, 2**16),
       row_kernel=st.booleans())
def test_cache_matches_re_encoding_for_any_stack(stack, batch, prompt_len, block_size, seed, row_kernel):
    d_models, ffs, heads = stack
    m = tiny_model(VOCAB, d_models, ffs, nhead=heads, seed=seed)
    prompt_ids = torch.randint(0, VOCAB, (batch, prompt_len), generator=torch.Generator().manual_seed(seed))
    with mock.patch.object(kv_cache, "row_kernel_for", lambda model: row_kernel), \
            mock.patch.object(kv_cache, "one_call_for", lambda model: row_kernel):
        for sampling in (dict(greedy=True), dict(temperature=1.0, seed=seed)):
            cached, uncached = cached_and_uncached(m, prompt_ids, block_size, max_new_tokens=10, **sampling)
            assert torch.equal(cached, uncached)
