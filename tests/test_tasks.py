"""The task registry: every entry builds a task, its answers are right, and parity and balanced
brackets (added through the registry alone) are learned end to end."""

import pytest
from helpers import one_torch_thread  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st

from core.config import Limits, ModelConfig, TaskConfig, TrainConfig
from core.data import IGNORE_INDEX, make_task
from core.tasks import TASKS, is_balanced, task_kind
from core.training import FitResult, train_task


def balanced_by_erasing(brackets: str) -> bool:
    """Reference answer, written differently: erase "()" pairs until none is left."""
    while "()" in brackets:
        brackets = brackets.replace("()", "")
    return brackets == ""


def running_parity(bits: str) -> str:
    """Reference answer: after each bit, E if the 1s so far are even, else O."""
    return "".join("E" if bits[: i + 1].count("1") % 2 == 0 else "O" for i in range(len(bits)))


@given(st.text(alphabet="()", max_size=16))
def test_is_balanced_matches_erasing_pairs(brackets):
    assert is_balanced(brackets) == balanced_by_erasing(brackets)


@pytest.mark.parametrize("bits", ["0", "1", "0110", "0111", "1111", "101010101010"])
def test_parity_answers_spell_the_running_parity_and_end_with_the_verdict(bits):
    task = make_task(TaskConfig("parity", seq_len=len(bits), train_size=8, val_size=2))
    answer = task.expected_answer(bits)
    assert answer == running_parity(bits)
    assert answer[-1] == ("E" if bits.count("1") % 2 == 0 else "O")


@pytest.mark.parametrize("prompt, answer", [("(())", "Y"), ("()()", "Y"), ("())(", "N"), ("((((", "N"),
                                            (")(()", "N")])
def test_brackets_answer_yes_or_no(prompt, answer):
    task = make_task(TaskConfig("brackets", seq_len=4, train_size=8, val_size=2))
    assert task.expected_answer(prompt) == answer


@pytest.mark.parametrize("name", list(TASKS))
def test_every_entry_builds_a_task_from_its_defaults_alone(name):
    """Left out, a task's numbers come from its entry; the datasets' answers are the entry's."""
    kind = TASKS[name]
    text = "the quick brown fox jumps over the lazy dog\n" * 40 if kind.needs_text else None
    config = TaskConfig(name, train_size=64, val_size=16, text=text)
    task = make_task(config)
    for field in kind.fields:
        assert getattr(config, field.name) == field.default
    assert task.sample_tokens >= 1 and task.examples(1)
    if kind.needs_text:
        return
    problem = task.problem
    x, y = task.train_dataset.tensors
    assert x.shape[1] == task.block_size == problem.block_size
    for row_x, row_y in zip(x[:8], y[:8]):
        prompt = task.vocab.decode(row_x[: problem.prompt_len].tolist())
        answer_ids = row_y[row_y != IGNORE_INDEX].tolist()
        assert task.vocab.decode(answer_ids) == problem.solve(prompt)
    assert not set(task.val_prompts) & {task.vocab.decode(r[: problem.prompt_len].tolist()) for r in x}


def test_unknown_task_lists_the_registry():
    with pytest.raises(ValueError, match="task must be one of sort, copy, reverse, addition, parity, brackets, text"):
        task_kind("palindrome")


@pytest.mark.parametrize("kind, length", [("parity", 10**6), ("brackets", 300)])
def test_a_length_past_the_limit_is_refused_before_a_prompt_is_built(kind, length):
    with pytest.raises(ValueError, match="makes model inputs of .* tokens, above the limit of 256"):
        TaskConfig(kind, seq_len=length).validate(Limits.public())


@pytest.mark.slow
@pytest.mark.parametrize("kind, seq_len", [("parity", 8), ("brackets", 6)])
def test_parity_and_brackets_are_learned_to_every_held_out_answer(kind, seq_len):
    task = make_task(TaskConfig(kind, seq_len=seq_len, seed=0))
    model_config = ModelConfig(len(task.vocab), [48] * 3, [192] * 3, 3, 0.05)
    result = [e for e in train_task(task, model_config, TrainConfig(seed=0, epochs=40))
              if isinstance(e, FitResult)][0]
    assert result.stop_reason == "solved", result.message
