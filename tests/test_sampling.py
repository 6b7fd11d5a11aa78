"""Sampling: greedy, temperature, top-k, top-p, seeds, and the model left as it was."""

import pytest
import torch

from core.config import Limits, SampleConfig
from core.sampling import generate, greedy_answers, sample_text
from helpers import FixedLogits, one_torch_thread, tiny_model, tiny_task  # noqa: F401

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
        hook = m.embedding.register_forward_pre_hook(lambda module, args: lengths.append(args[0].size(1)))
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
