"""Toy tasks: right answers, loss only on answers, disjoint seeded splits, text windows."""

import random

import pytest
import torch
from helpers import one_torch_thread, tiny_task  # noqa: F401

from core.config import TaskConfig
from core.data import IGNORE_INDEX, TEXT_VALIDATION_FRACTION, Vocab, make_task, task_for_checkpoint

# The right answers, written independently of core.data.
ANSWERS = {
    "sort": lambda p: "".join(sorted(p)),
    "copy": lambda p: p,
    "reverse": lambda p: p[::-1],
}


def addition_answer(prompt: str, n: int) -> str:
    a, b = prompt[:n], prompt[n + 1: 2 * n + 1]
    return str(int(a) + int(b)).zfill(n + 1)


def expected(kind: str, prompt: str, n: int) -> str:
    return addition_answer(prompt, n) if kind == "addition" else ANSWERS[kind](prompt)


TASKS = [("sort", 5, 4), ("copy", 4, 3), ("reverse", 6, 10), ("addition", 0, 2), ("addition", 0, 3)]


@pytest.mark.parametrize("prompt, answer", [("201201", "001122"), ("000000", "000000"), ("210", "012")])
def test_sort_answers(prompt, answer):
    task = tiny_task("sort", seq_len=len(prompt), num_digits=3)
    assert task.expected_answer(prompt) == answer


def test_copy_and_reverse_answers():
    assert tiny_task("copy", seq_len=5, num_digits=10).expected_answer("90210") == "90210"
    assert tiny_task("reverse", seq_len=5, num_digits=10).expected_answer("90210") == "01209"


@pytest.mark.parametrize("prompt, answer", [("12+34=", "046"), ("99+99=", "198"), ("05+07=", "012"),
                                            ("00+00=", "000")])
def test_addition_answers_are_zero_padded_sums(prompt, answer):
    task = tiny_task("addition", num_digits=2)
    assert task.expected_answer(prompt) == answer


@pytest.mark.parametrize("kind, seq_len, num_digits", TASKS)
def test_dataset_sequences_are_prompt_then_right_answer(kind, seq_len, num_digits):
    task = make_task(TaskConfig(kind, seq_len, num_digits, train_size=40, val_size=12, seed=3))
    problem = task.problem
    prompt_len = problem.prompt_len
    assert prompt_len == (2 * num_digits + 2 if kind == "addition" else seq_len)
    assert problem.answer_len == (num_digits + 1 if kind == "addition" else seq_len)
    assert task.block_size == prompt_len + problem.answer_len - 1
    for dataset in (task.train_dataset, task.val_dataset):
        for x, y in dataset:
            assert x.shape == y.shape == (task.block_size,)
            # prompt positions are not learned
            assert (y[: prompt_len - 1] == IGNORE_INDEX).all()
            assert (y[prompt_len - 1:] != IGNORE_INDEX).all()
            # y is x shifted by one where it is learned
            assert torch.equal(y[prompt_len - 1: -1], x[prompt_len:])
            full = task.vocab.decode(x.tolist() + [y[-1].item()])
            prompt, answer = full[:prompt_len], full[prompt_len:]
            assert answer == expected(kind, prompt, num_digits)
            assert task.vocab.decode(y[prompt_len - 1:].tolist()) == answer
            if kind == "addition":
                assert prompt[num_digits] == "+" and prompt[-1] == "="


@pytest.mark.parametrize("kind, seq_len, num_digits", TASKS + [("sort", 9, 10)])
def test_train_and_validation_prompts_are_disjoint(kind, seq_len, num_digits):
    # sort 9 over 10 digits and 3-digit addition are too big to list: the sampled path is used
    task = make_task(TaskConfig(kind, seq_len, num_digits, train_size=300, val_size=60, seed=1))
    prompt_len = task.problem.prompt_len
    train = {task.vocab.decode(x[:prompt_len].tolist()) for x, _ in task.train_dataset}
    val = {task.vocab.decode(x[:prompt_len].tolist()) for x, _ in task.val_dataset}
    assert val == set(task.val_prompts)
    assert len(task.val_prompts) == len(val)  # no repeats in the held-out set
    assert not train & val
    assert len(task.train_dataset) == 300


def test_same_seed_same_data_other_seed_other_data():
    def tensors(seed):
        task = tiny_task("sort", seq_len=6, num_digits=3, train_size=50, val_size=20, seed=seed)
        return task.train_dataset.tensors + task.val_dataset.tensors

    a, b, c = tensors(7), tensors(7), tensors(8)
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    assert not all(torch.equal(s, t) for s, t in zip(a, c))


def test_sort_six_digits_over_three_symbols():
    task = make_task(TaskConfig("sort", seq_len=6, num_digits=3, train_size=2000, val_size=200))
    assert task.problem.space_size == 3 ** 6 == 729
    assert task.vocab.tokens == ["0", "1", "2"]
    # validation takes at most a fifth of the 729 problems, so most are left to train on
    assert len(task.val_prompts) == 729 // 5
    assert all(len(p) == 6 and set(p) <= set("012") for p in task.val_prompts)
    train = {task.vocab.decode(x[:6].tolist()) for x, _ in task.train_dataset}
    assert len(train) > 500 and not train & set(task.val_prompts)


def test_smallest_task_still_has_a_held_out_problem():
    task = make_task(TaskConfig("copy", seq_len=1, num_digits=2, train_size=4, val_size=5))
    assert task.problem.space_size == 2
    assert len(task.val_prompts) == 1
    train = {task.vocab.decode(x[:1].tolist()) for x, _ in task.train_dataset}
    assert train == {"01".replace(task.val_prompts[0], "")}


def test_examples_are_held_out_prompts():
    task = tiny_task("sort", seq_len=5, num_digits=3)
    assert task.examples(3) == task.val_prompts[:3]
    bare = task_for_checkpoint(task.config, task.vocab.tokens, task.block_size)
    examples = bare.examples(4)
    assert len(examples) == 4
    for e in examples:
        bare.check_prompt(e)  # valid prompts


# --- text -----------------------------------------------------------------------------------

_rng = random.Random(0)
TEXT = "".join(_rng.choice("abcdefgh ") for _ in range(400)) + "\nthe end."


def test_text_task_vocabulary_and_windows():
    task = make_task(TaskConfig("text", seq_len=8, train_size=50, val_size=10, text=TEXT))
    assert task.vocab.tokens == sorted(set(TEXT))
    assert task.block_size == 8
    assert task.problem is None and task.val_prompts is None
    assert task.expected_answer("abc") is None
    for dataset in (task.train_dataset, task.val_dataset):
        for x, y in dataset:
            xs, ys = task.vocab.decode(x.tolist()), task.vocab.decode(y.tolist())
            assert len(xs) == len(ys) == 8
            assert xs[1:] == ys[:-1]  # next-character targets
            assert xs + ys[-1] in TEXT


def test_text_validation_is_the_last_tenth():
    task = make_task(TaskConfig("text", seq_len=8, train_size=200, val_size=30, text=TEXT))
    split = int(len(TEXT) * (1 - TEXT_VALIDATION_FRACTION))
    for start in task.train_dataset.starts:
        assert start + 8 + 1 <= split  # a training window never reaches into the held-out tail
    assert task.val_dataset.starts
    for start in task.val_dataset.starts:
        assert split <= start and start + 8 + 1 <= len(TEXT)
    # the held-out windows reach the very end of the text
    last_x, last_y = task.val_dataset[len(task.val_dataset) - 1]
    assert task.vocab.decode(last_y.tolist()).endswith("the end.")


def test_text_same_seed_same_windows():
    a = make_task(TaskConfig("text", seq_len=8, train_size=20, val_size=5, seed=4, text=TEXT))
    b = make_task(TaskConfig("text", seq_len=8, train_size=20, val_size=5, seed=4, text=TEXT))
    assert a.train_dataset.starts == b.train_dataset.starts
    assert a.val_dataset.starts == b.val_dataset.starts


def test_too_short_text_says_how_much_is_needed():
    with pytest.raises(ValueError, match=r"the text has 100 characters; with a context length of 32 it "
                                         r"needs at least 331"):
        make_task(TaskConfig("text", seq_len=32, text="ab" * 50))


def test_text_with_one_distinct_character():
    with pytest.raises(ValueError, match="single distinct character"):
        make_task(TaskConfig("text", seq_len=4, text="a" * 500))


def test_text_task_without_text():
    with pytest.raises(ValueError, match="the text task needs some text"):
        make_task(TaskConfig("text", seq_len=4, text=""))


# --- vocabulary and prompts -----------------------------------------------------------------

def test_vocab_round_trip_and_unknown_characters():
    vocab = Vocab("012+=")
    assert vocab.decode(vocab.encode("12+0=")) == "12+0="
    with pytest.raises(ValueError, match=r"'x' is not in the vocabulary; use only these characters: 012\+="):
        vocab.encode("1x2")
    with pytest.raises(ValueError, match=r"'9' 'a' are not in the vocabulary"):
        vocab.encode("a919")


def test_vocab_many_unknown_characters_are_summarised():
    with pytest.raises(ValueError, match="and 16 more are not in the vocabulary"):
        Vocab("01").encode("abcdefghijklmnopqrstuvwxyz")


def test_vocab_tokens_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        Vocab("0120")


@pytest.mark.parametrize("kind, num_digits, prompt, message", [
    ("sort", 3, "2101",
     r"a sort prompt is 6 digits from 0-2 \(6 characters\), e\.g\. '.{6}'; got 4 characters"),
    ("sort", 3, "2101012", "got 7 characters"),
    ("sort", 3, "21x101", "'x' is not in the vocabulary"),
    ("sort", 3, "213101", "'3' is not in the vocabulary"),
    ("sort", 3, "", "the prompt is empty; try"),
    ("addition", 2, "123+4=", "character 3 of the prompt should be '\\+', got '3'"),
    ("addition", 2, "12=34+", "character 3 of the prompt should be '\\+', got '='"),
    ("addition", 2, "12+34+", "character 6 of the prompt should be '=', got '\\+'"),
    ("addition", 2, "+12+3=", "character 1 of the prompt should be a digit, got '\\+'"),
    ("addition", 2, "12+34",
     r"an addition prompt is two 2-digit numbers, zero-padded, like 44\+77= \(6 characters\)"),
])
def test_check_prompt_messages(kind, num_digits, prompt, message):
    task = make_task(TaskConfig(kind, seq_len=6, num_digits=num_digits, train_size=10, val_size=5))
    with pytest.raises(ValueError, match=message):
        task.check_prompt(prompt)


def test_check_prompt_accepts_valid_prompts():
    tiny_task("sort", seq_len=6, num_digits=3).check_prompt("210210")
    tiny_task("addition", num_digits=2).check_prompt("12+34=")
    text_task = make_task(TaskConfig("text", seq_len=8, text=TEXT))
    text_task.check_prompt("the end. bad head fed a cab ")  # any length


def test_rebuilt_task_has_vocab_and_answers_but_no_data():
    task = tiny_task("addition", num_digits=2)
    bare = task_for_checkpoint(task.config, task.vocab.tokens, task.block_size)
    assert bare.vocab == task.vocab
    assert bare.train_dataset is None and bare.val_dataset is None
    assert bare.expected_answer("50+50=") == "100"


@pytest.mark.parametrize("config", [TaskConfig("sort", 5, 4), TaskConfig("addition", num_digits=2),
                                    TaskConfig("reverse", 3, 10), TaskConfig("text", 8, text=TEXT)])
def test_task_vocab_without_building_data_matches_the_task(config):
    from core.data import task_vocab

    assert task_vocab(config) == make_task(config).vocab


def test_text_examples_are_openings_of_held_out_lines():
    text = "".join(f"line number {i} of the training part\n" for i in range(40))
    text += "zebra crossing ahead\nyellow submarine song\n"
    task = make_task(TaskConfig("text", seq_len=8, train_size=8, val_size=4, text=text))
    held_out = text[int(len(text) * 0.9):]
    examples = task.examples(5)
    assert examples and all(e in held_out for e in examples)
    assert "zebra crossi" in examples and "yellow subma" in examples


def test_a_small_space_trains_on_every_problem_equally_often():
    """Drawn at random, a rare pattern could be seen 7 times in 2,000 and never be learned."""
    from collections import Counter

    task = make_task(TaskConfig("sort", seq_len=6, num_digits=3, train_size=2000, val_size=200))
    prompt_len = task.problem.prompt_len
    counts = Counter(task.vocab.decode(x[: prompt_len].tolist()) for x, _ in task.train_dataset)
    assert len(counts) == 729 - 145  # every problem that isn't held out
    assert max(counts.values()) - min(counts.values()) <= 1
