"""core/parallel_step.py: a batch split over threads gives the whole batch's loss and gradients,
a sliced bf16 run repeats bit for bit, and slicing happens only where it computes the same step."""

import functools

import pytest
import torch
from helpers import model_config_for, one_torch_thread, tiny_model, tiny_task  # noqa: F401
from torch import nn

import core.parallel_step as parallel_step
from core.config import TrainConfig
from core.data import IGNORE_INDEX
from core.parallel_step import _slice_threads, forward_backward, slice_threads
from core.training import StepEvent, _batch_loss, train_task

CPU = torch.device("cpu")


@pytest.fixture
def small_slices(monkeypatch):
    """Slices of a tiny batch: two threads whatever the positions count."""
    monkeypatch.setattr(parallel_step, "MIN_SLICE_TOKENS", 1)


def gradients_of(model: nn.Module, x, y, threads: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    parameters = list(model.parameters())
    batch_loss = functools.partial(_batch_loss, model, nn.CrossEntropyLoss(), CPU, None)
    loss = forward_backward(batch_loss, x, y, parameters, threads, IGNORE_INDEX)
    return loss, [p.grad.clone() for p in parameters]


@pytest.mark.parametrize("model_type, d_models", [("configurable", (16, 24)), ("simple", (16, 16))])
def test_slices_add_up_to_the_whole_batchs_loss_and_gradients(small_slices, model_type, d_models):
    """Uneven counts of targets per slice (ignored positions, a slice with none counted), an odd
    batch: each slice weighs by its counted targets, so the mean is the whole batch's."""
    model = tiny_model(vocab_size=7, d_models=d_models, model_type=model_type).train()
    torch.manual_seed(1)
    x, y = torch.randint(7, (7, 6)), torch.randint(7, (7, 6))  # (B, T)
    y[0, :4] = IGNORE_INDEX
    # three slices of 7 rows hold 3, 2 and 2: ignoring rows 2-4 leaves the middle one nothing to count
    for threads, ignored_rows in [(2, []), (3, []), (3, [2, 3, 4])]:
        y_run = y.clone()
        y_run[ignored_rows] = IGNORE_INDEX
        whole_loss, whole_grads = gradients_of(model, x, y_run, 1)
        loss, grads = gradients_of(model, x, y_run, threads)
        torch.testing.assert_close(loss, whole_loss)
        for sliced, whole in zip(grads, whole_grads, strict=True):
            torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-6)


def test_each_slice_thread_runs_torch_on_one_thread_and_the_caller_keeps_its_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        pool = _slice_threads(2)
        counts = [f.result() for f in [pool.submit(torch.get_num_threads) for _ in range(4)]]
        assert counts == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_sliced_bf16_run_repeats_bit_for_bit_with_dropout(monkeypatch):
    """Two threads, each drawing its dropout from a generator seeded from torch's: the same seed
    gives the same losses, the steps really ran in slices, and no process-wide setting changed."""
    sliced = []
    original = parallel_step._slice_gradients
    monkeypatch.setattr(parallel_step, "_slice_gradients", lambda *args: sliced.append(1) or original(*args))
    task = tiny_task("text", seq_len=64, train_size=256, val_size=64, text="abcdefgh " * 300)
    model_config = model_config_for(task, d_models=(32, 32), dropout=0.2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runs = []
        for _ in range(2):
            config = TrainConfig(epochs=2, batch_size=64, seed=3, precision="bf16", solved_epochs=0)
            runs.append([e.loss for e in train_task(task, model_config, config) if isinstance(e, StepEvent)])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert runs[0] == runs[1]
    # threads entering and leaving PyTorch's process-wide attention-kernel switch left it on math
    assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert len(sliced) == 2 * len(runs[0]) * 2  # 4,096 positions a batch: two slices a step, in both runs
    assert runs[0][-1] < runs[0][0]


def test_only_bf16_training_on_a_cpu_with_a_mean_cross_entropy_is_sliced():
    """Float32's dropout draws from torch's one generator, in whatever order threads come; other
    losses would not add up from the slices' means."""
    mean = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    threads = torch.get_num_threads()
    assert slice_threads(CPU, torch.bfloat16, mean, distributed_run=False) == threads
    assert slice_threads(CPU, None, mean, distributed_run=False) == 1
    assert slice_threads(torch.device("cuda"), torch.bfloat16, mean, distributed_run=False) == 1
    assert slice_threads(CPU, torch.bfloat16, mean, distributed_run=True) == 1
    assert slice_threads(CPU, torch.bfloat16, nn.CrossEntropyLoss(weight=torch.ones(5)), False) == 1
    assert slice_threads(CPU, torch.bfloat16, nn.CrossEntropyLoss(reduction="sum"), False) == 1


def test_small_batches_stay_whole(monkeypatch):
    """Below MIN_SLICE_TOKENS positions a slice, the threads would queue for Python's lock."""
    monkeypatch.setattr(parallel_step, "_slice_gradients", None)  # any slicing would fail
    model = tiny_model(vocab_size=7).train()
    x = torch.randint(7, (2 * parallel_step.MIN_SLICE_TOKENS // 8 - 1, 8))  # just under two slices' worth
    loss, _ = gradients_of(model, x, torch.randint(7, x.shape), threads=2)
    assert torch.isfinite(loss)


def test_an_error_in_a_slice_reaches_the_caller_and_no_gradient_is_added(small_slices):
    """The other slice's gradients are dropped too: a step is all or nothing."""
    model = tiny_model(vocab_size=7).train()
    computed = functools.partial(_batch_loss, model, nn.CrossEntropyLoss(), CPU, None)

    def second_slice_fails(x, y, generator):
        if (y == 6).all():
            raise MemoryError(f"no memory for a slice of {x.size(0)}")
        return computed(x, y, generator)
    x, y = torch.randint(7, (4, 3)), torch.randint(6, (4, 3))
    y[2:] = 6
    with pytest.raises(MemoryError, match="no memory for a slice of 2"):
        forward_backward(second_slice_fails, x, y, list(model.parameters()), 2, IGNORE_INDEX)
    assert all(p.grad is None for p in model.parameters())
