"""A training run in a process of its own: the same events as in-process, errors and Stop brought
back, and a run that is reproducible however many others train beside it."""

import os
import signal
import threading

import pytest
import torch
from helpers import one_torch_thread, same_weights, snapshot  # noqa: F401

from core.config import Limits, ModelConfig, TaskConfig, TrainConfig
from core.data import make_task, task_vocab
from core.processes import TrainingProcess
from core.training import EpochEvent, FitResult, StepEvent, train_task

# dropout on, so that a run that drew from another run's random numbers would differ
TASK = TaskConfig("sort", seq_len=4, num_digits=3, train_size=96, val_size=16, seed=3)
MODEL = ModelConfig(len(task_vocab(TASK)), [16, 24], [32, 48], [2, 3], dropout=0.2)
TRAIN = TrainConfig(epochs=3, batch_size=16, lr=1e-2, seed=3)


def comparable(history) -> tuple:
    """A history without its timing columns."""
    rows = [{k: v for k, v in row.items() if k not in ("elapsed_s", "tokens_per_s")} for row in history.to_json_rows()]
    return history.step_positions, history.step_losses, rows, history.best_epoch, history.best_val_loss


def test_a_run_in_its_own_process_gives_the_events_of_the_same_run_in_process():
    alone = list(TrainingProcess(TASK, MODEL, TRAIN, lambda: False))
    here = list(train_task(make_task(TASK), MODEL, TRAIN))
    assert [type(e) for e in alone] == [type(e) for e in here]
    steps = [(e.epoch, e.step, e.total_steps, e.loss, e.lr, e.position) for e in alone if isinstance(e, StepEvent)]
    assert steps == [(e.epoch, e.step, e.total_steps, e.loss, e.lr, e.position) for e in here
                     if isinstance(e, StepEvent)]
    end, expected = alone[-1], here[-1]
    assert isinstance(end, FitResult)
    assert (end.stop_reason, end.best_epoch) == (expected.stop_reason, expected.best_epoch)
    assert comparable(end.history) == comparable(expected.history)
    assert same_weights(snapshot(end.best_model), snapshot(expected.best_model)) and not end.best_model.training
    assert same_weights(snapshot(end.last_model), snapshot(expected.last_model))
    improved = [e for e in alone if isinstance(e, EpochEvent) and e.record.improved]
    assert improved and all(e.best_model is not None for e in alone if isinstance(e, EpochEvent))


def test_the_process_hands_back_its_task_and_an_example_prompt():
    run = TrainingProcess(TASK, MODEL, TRAIN, lambda: False)
    run.close()
    task = make_task(TASK)
    assert run.task.vocab == task.vocab and run.task.train_dataset is None
    assert run.example == task.examples(1)[0] and run.task.expected_answer(run.example) == "".join(sorted(run.example))


def test_two_runs_side_by_side_are_the_run_alone():
    """Threads in one process share torch's random generator (dropout, here 0.2): runs side by side
    drew each other's numbers. Processes don't."""
    alone = list(TrainingProcess(TASK, MODEL, TRAIN, lambda: False))[-1]
    results = [None, None]

    def train(i):
        results[i] = list(TrainingProcess(TASK, MODEL, TRAIN, lambda: False))[-1]
    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(comparable(r.history) == comparable(alone.history) for r in results)


def test_a_config_mistake_is_raised_when_the_run_is_created():
    wide = ModelConfig(MODEL.vocab_size, [64], [64], 2)
    with pytest.raises(ValueError, match="d_model 64 is above the limit of 32"):
        TrainingProcess(TASK, wide, TRAIN, lambda: False, Limits(max_d_model=32))
    with pytest.raises(ValueError, match="paste more text or lower the context length"):
        text = TaskConfig("text", seq_len=32, train_size=8, val_size=8, text="abcdefgh" * 10)
        TrainingProcess(text, ModelConfig(8, [16], [32], 2), TRAIN, lambda: False)


def test_stop_ends_the_run_with_a_model_kept():
    steps = []
    events = list(TrainingProcess(TASK, MODEL, TrainConfig(epochs=50, batch_size=16, seed=3),
                                   lambda: len(steps) >= 3 or steps.append(1)))
    end = events[-1]
    assert end.stop_reason == "stopped" and end.best_model is not None
    assert sum(isinstance(e, StepEvent) for e in events) < 50 * 6


def test_close_ends_a_running_process_at_once():
    run = TrainingProcess(TASK, MODEL, TrainConfig(epochs=50, batch_size=16, seed=3), lambda: False)
    next(run)
    run.close()
    assert not run._process.is_alive()


def test_a_process_killed_from_outside_is_an_error_that_says_so():
    run = TrainingProcess(TASK, MODEL, TrainConfig(epochs=50, batch_size=16, seed=3), lambda: False)
    next(run)
    os.kill(run._process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    with pytest.raises(MemoryError, match="out of memory: train a smaller model"):
        list(run)
    assert torch.get_num_threads() == 1  # this process is untouched
