"""The one training loop: best model by validation loss, seeded runs, stop, early stop, divergence."""

import copy
import math
import os
import types

import pytest
import torch
from helpers import (  # noqa: F401
    AlwaysToken,
    CopyOracle,
    attention_kernels_run,
    model_config_for,
    one_torch_thread,
    same_weights,
    snapshot,
    tiny_task,
)
from torch import nn
from torch.utils.data import DataLoader

import core.training as training
from core.config import Limits, ModelConfig, SampleConfig, TaskConfig, TrainConfig
from core.data import IGNORE_INDEX, make_task
from core.model import build_model
from core.sampling import sample_text
from core.training import (
    EpochEvent,
    EpochRecord,
    FitResult,
    StepEvent,
    TrainingHistory,
    accuracy,
    evaluate,
    fit,
    flat_loss,
    format_epoch,
    make_optimizer,
    make_scheduler,
    resolve_device,
    train_model,
    train_task,
)


def criterion():
    return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)


def seed_setup(seed=0, lr=1e-2):
    """The seed's workflow: a model, loaders, optimizer and loss, built by hand."""
    task = tiny_task("sort", seq_len=4, train_size=48, val_size=16)
    torch.manual_seed(seed)
    model = build_model(model_config_for(task, [16], dropout=0.0))
    train_loader = DataLoader(task.train_dataset, batch_size=16, shuffle=True,
                              generator=torch.Generator().manual_seed(seed))
    val_loader = DataLoader(task.val_dataset, batch_size=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    return task, model, train_loader, val_loader, optimizer


def run(events):
    """Drain a fit/train_task generator: (steps, epochs, result)."""
    steps, epochs, result = [], [], None
    for event in events:
        if isinstance(event, StepEvent):
            steps.append(event)
        elif isinstance(event, EpochEvent):
            epochs.append(event)
        else:
            assert isinstance(event, FitResult) and result is None
            result = event
    assert result is not None
    return steps, epochs, result


def scripted_evaluate(monkeypatch, losses, record=None):
    """Replace core.training.evaluate: run the real one (mode handling), report scripted losses."""
    script = iter(losses)
    real = training.evaluate

    def fake(model, loader, crit, device):
        real(model, loader, crit, device)
        if record is not None:
            record.append(snapshot(model))
        return next(script)

    monkeypatch.setattr(training, "evaluate", fake)


def count_deepcopies(monkeypatch):
    """Route core.training's copy.deepcopy through a counter (only fit's own calls are counted)."""
    calls = []

    def counting(obj, *args, **kwargs):
        calls.append(obj)
        return copy.deepcopy(obj, *args, **kwargs)

    monkeypatch.setattr(training, "copy", types.SimpleNamespace(deepcopy=counting))
    return calls


# --- loss -----------------------------------------------------------------------------------

def test_flat_loss_is_cross_entropy_on_flattened_tensors():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)  # (B, T, V)
    targets = torch.randint(0, 7, (3, 5))  # (B, T)
    targets[0, :2] = IGNORE_INDEX
    targets[2, 4] = IGNORE_INDEX
    ours = flat_loss(criterion(), logits, targets)
    reference = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)(logits.reshape(15, 7), targets.reshape(15))
    torch.testing.assert_close(ours, reference)
    # and by hand: mean negative log-likelihood over the counted targets only
    logp = logits.log_softmax(-1)
    counted = [(b, t) for b in range(3) for t in range(5) if targets[b, t] != IGNORE_INDEX]
    by_hand = -sum(logp[b, t, targets[b, t]] for b, t in counted) / len(counted)
    torch.testing.assert_close(ours, by_hand)


def test_flat_loss_ignores_ignored_positions():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 5)
    targets = torch.randint(0, 5, (2, 4))
    targets[:, :2] = IGNORE_INDEX
    changed = logits.clone()
    changed[:, :2] = torch.randn(2, 2, 5) * 100  # only the ignored positions change
    assert flat_loss(criterion(), logits, targets) == flat_loss(criterion(), changed, targets)
    changed[:, 3] += torch.randn(2, 5)
    assert flat_loss(criterion(), logits, targets) != flat_loss(criterion(), changed, targets)


def test_evaluate_weighs_every_token_equally_whatever_the_batch_size():
    task, model, _, _, _ = seed_setup()
    small = evaluate(model, DataLoader(task.val_dataset, batch_size=3), criterion(), torch.device("cpu"))
    whole = evaluate(model, DataLoader(task.val_dataset, batch_size=100), criterion(), torch.device("cpu"))
    assert math.isclose(small, whole, rel_tol=1e-5)
    x, y = task.val_dataset.tensors
    model.eval()
    with torch.no_grad():
        direct = flat_loss(criterion(), model(x), y).item()
    assert math.isclose(whole, direct, rel_tol=1e-5)


def test_evaluate_restores_training_mode():
    task, model, _, val_loader, _ = seed_setup()
    model.train()
    evaluate(model, val_loader, criterion(), torch.device("cpu"))
    assert model.training


# --- the seed's train_model -----------------------------------------------------------------

def test_train_model_returns_a_separate_best_model_in_eval_mode(monkeypatch):
    task, model, train_loader, val_loader, optimizer = seed_setup()
    val_losses = []
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate",
                        lambda *a: val_losses.append(real(*a)) or val_losses[-1])
    copies = count_deepcopies(monkeypatch)

    best = train_model(model, train_loader, val_loader, optimizer, criterion(), 6, "cpu")

    assert best is not None and best is not model
    assert not best.training
    assert len(val_losses) == 6
    # its validation loss is the lowest over the epochs
    assert math.isclose(evaluate(best, val_loader, criterion(), torch.device("cpu")), min(val_losses),
                        rel_tol=1e-6)
    # one deep copy per improvement, never one per epoch
    improvements = sum(v < min(val_losses[:i], default=math.inf) for i, v in enumerate(val_losses))
    assert len(copies) == improvements
    assert all(c is model for c in copies)


def test_train_model_keeps_the_epoch_with_the_lowest_validation_loss(monkeypatch):
    task, model, train_loader, val_loader, optimizer = seed_setup()
    states = []
    scripted_evaluate(monkeypatch, [3.0, 1.0, 2.0, 0.5, 4.0], record=states)
    copies = count_deepcopies(monkeypatch)

    best = train_model(model, train_loader, val_loader, optimizer, criterion(), 5, "cpu")

    assert len(copies) == 3  # epochs 1, 2 and 4 improved
    assert same_weights(snapshot(best), states[3])  # the model as it was after epoch 4
    assert not same_weights(snapshot(best), snapshot(model))  # training went on after it


def test_train_model_returns_none_when_no_epoch_finished():
    task, model, train_loader, val_loader, optimizer = seed_setup()
    assert train_model(model, train_loader, val_loader, optimizer, criterion(), 3, "cpu",
                       should_stop=lambda: True) is None


# --- fit through train_task -----------------------------------------------------------------

TASK = None


def small_task():
    global TASK
    if TASK is None:
        TASK = tiny_task("sort", seq_len=4, num_digits=3, train_size=64, val_size=16)
    return TASK


def train_small(epochs=2, seed=0, dropout=0.1, **kw):
    task = small_task()
    train_config = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, seed=seed,
                               **{k: v for k, v in kw.items() if k in ("patience", "max_seconds")})
    return run(train_task(task, model_config_for(task, [16], dropout=dropout), train_config,
                          should_stop=kw.get("should_stop"), limits=kw.get("limits")))


def test_same_seed_same_losses_other_seed_other_losses():
    steps_a, epochs_a, _ = train_small(epochs=2, seed=5)
    steps_b, epochs_b, _ = train_small(epochs=2, seed=5)
    steps_c, _, _ = train_small(epochs=2, seed=6)
    assert [s.loss for s in steps_a] == [s.loss for s in steps_b]
    assert [e.record.val_loss for e in epochs_a] == [e.record.val_loss for e in epochs_b]
    assert [s.loss for s in steps_a] != [s.loss for s in steps_c]


def test_events_carry_what_the_page_needs():
    steps, epochs, result = train_small(epochs=3)
    steps_per_epoch = 64 // 16
    assert [s.step for s in steps] == list(range(1, 3 * steps_per_epoch + 1))
    assert {s.total_steps for s in steps} == {3 * steps_per_epoch}
    assert [s.epoch for s in steps] == [e for e in (1, 2, 3) for _ in range(steps_per_epoch)]
    for s in steps:
        assert math.isfinite(s.loss) and s.loss > 0
        assert s.lr > 0 and s.elapsed_s >= 0 and s.seconds_left >= 0
    assert [s.elapsed_s for s in steps] == sorted(s.elapsed_s for s in steps)
    assert steps[-1].seconds_left == 0
    history = result.history
    assert history.step_losses == [s.loss for s in steps]
    assert history.step_positions[steps_per_epoch - 1] == pytest.approx(1.0)
    assert history.step_positions[-1] == pytest.approx(3.0)

    assert [e.record.epoch for e in epochs] == [1, 2, 3]
    running_best = math.inf
    for e in epochs:
        r = e.record
        assert e.num_epochs == 3
        assert r.tokens_per_s > 0 and r.elapsed_s > 0 and r.lr > 0
        assert 0.0 <= r.val_accuracy <= 1.0
        assert not r.partial
        epoch_losses = [s.loss for s in steps if s.epoch == r.epoch]
        assert r.train_loss == pytest.approx(sum(epoch_losses) / len(epoch_losses))
        assert r.improved == (r.val_loss < running_best)
        running_best = min(running_best, r.val_loss)
        assert e.best_model is not None
    assert result.stop_reason == "completed"
    assert result.message.startswith("trained 3 epochs")
    assert result.best_loss == min(e.record.val_loss for e in epochs) == history.best_val_loss
    assert history.epochs[result.best_epoch - 1].val_loss == result.best_loss
    assert [r["epoch"] for r in history.to_json_rows()] == [1, 2, 3]


def test_best_model_passed_with_each_epoch_is_the_returned_one():
    _, epochs, result = train_small(epochs=3)
    best_epoch_event = epochs[result.best_epoch - 1]
    assert result.best_model is best_epoch_event.best_model
    assert not result.best_model.training


def test_the_last_model_is_the_one_training_left_and_scores_the_last_epoch():
    """Overfit on purpose (8 examples, many epochs): the last model differs from the best one,
    and re-evaluating each reproduces its own epoch's validation loss."""
    task = tiny_task("sort", seq_len=4, num_digits=3, train_size=8, val_size=16)
    train_config = TrainConfig(epochs=40, batch_size=8, lr=1e-2, seed=0, solved_epochs=0)
    *_, result = run(train_task(task, model_config_for(task, [16], dropout=0.0), train_config))
    assert result.best_epoch < len(result.history.epochs), "this run was meant to overfit"
    assert result.last_model is not result.best_model and not result.last_model.training
    val = training.batch_loader(task.val_dataset, 64)
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    last_loss = evaluate(result.last_model, val, criterion, torch.device("cpu"))
    assert last_loss == pytest.approx(result.history.epochs[-1].val_loss, rel=1e-6)
    assert evaluate(result.best_model, val, criterion, torch.device("cpu")) == pytest.approx(result.best_loss, rel=1e-6)


def test_should_stop_ends_between_steps_and_still_returns_a_best_model():
    # drive the generator by hand so the stop flag follows the steps we have seen
    seen = []
    task = small_task()
    events = train_task(task, model_config_for(task, [16]), TrainConfig(epochs=3, batch_size=16),
                        should_stop=lambda: len(seen) >= 6)
    steps, epochs, result = [], [], None
    for event in events:
        if isinstance(event, StepEvent):
            seen.append(event)
            steps.append(event)
        elif isinstance(event, EpochEvent):
            epochs.append(event)
        else:
            result = event
    assert len(steps) == 6  # 4 steps in epoch 1, 2 in epoch 2
    assert result.stop_reason == "stopped"
    assert "stopped during epoch 2" in result.message
    assert [e.record.partial for e in epochs] == [False, True]  # the part-epoch was validated
    assert result.best_model is not None and not result.best_model.training
    assert result.best_epoch in (1, 2)


def test_stop_during_the_first_epoch_validates_the_part_epoch():
    task = small_task()
    count = []
    events = train_task(task, model_config_for(task, [16]), TrainConfig(epochs=3, batch_size=16),
                        should_stop=lambda: len(count) >= 1)
    for event in events:
        if isinstance(event, StepEvent):
            count.append(event)
        last = event
    assert last.stop_reason == "stopped"
    assert len(last.history.epochs) == 1 and last.history.epochs[0].partial
    assert last.best_model is not None and last.best_epoch == 1


def test_stop_before_any_step_leaves_no_model():
    _, epochs, result = train_small(epochs=3, should_stop=lambda: True)
    assert epochs == []
    assert result.best_model is None and result.best_epoch is None
    assert result.stop_reason == "stopped"
    assert "no epoch finished, so there is no model yet" in result.message


def test_patience_stops_early(monkeypatch):
    scripted_evaluate(monkeypatch, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    _, epochs, result = train_small(epochs=6, patience=2)
    assert [e.record.epoch for e in epochs] == [1, 2, 3]
    assert result.stop_reason == "early_stopping"
    assert "no improvement for 2 epochs after epoch 1" in result.message
    assert result.best_epoch == 1 and result.best_loss == 1.0


def test_patience_does_not_stop_while_improving(monkeypatch):
    scripted_evaluate(monkeypatch, [4.0, 3.0, 3.5, 2.0])
    _, epochs, result = train_small(epochs=4, patience=2)
    assert len(epochs) == 4 and result.stop_reason == "completed" and result.best_epoch == 4


class PoisonableLoss(nn.Module):
    """Cross-entropy that returns `value` for every training batch once poisoned."""

    def __init__(self, value):
        super().__init__()
        self.inner = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.ignore_index = IGNORE_INDEX
        self.value, self.poisoned = value, False

    def forward(self, logits, targets):
        loss = self.inner(logits, targets)
        return loss * self.value if self.poisoned and torch.is_grad_enabled() else loss


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_loss_ends_the_run_and_keeps_the_earlier_best(value):
    task, model, train_loader, val_loader, optimizer = seed_setup()
    loss = PoisonableLoss(value)
    epochs, result = [], None
    for event in fit(model, train_loader, val_loader, optimizer, loss, 5, "cpu"):
        if isinstance(event, EpochEvent):
            epochs.append((event, snapshot(event.best_model)))
            loss.poisoned = True  # the next training step diverges
        elif isinstance(event, FitResult):
            result = event
    assert len(epochs) == 1
    assert result.stop_reason == "diverged"
    assert f"the loss became {value} at epoch 2, step 1" in result.message
    assert "lower the learning rate (it was 0.01)" in result.message
    assert "the best model, from epoch 1, is kept" in result.message
    first_event, first_weights = epochs[0]
    assert result.best_model is first_event.best_model
    assert same_weights(snapshot(result.best_model), first_weights)  # untouched by the bad step
    assert not result.best_model.training
    assert result.best_epoch == 1 and result.best_loss == first_event.record.val_loss
    assert len(result.history.epochs) == 1


def test_divergence_before_any_epoch_says_there_is_no_model():
    task, model, train_loader, val_loader, optimizer = seed_setup()
    loss = PoisonableLoss(math.nan)
    loss.poisoned = True
    _, epochs, result = run(fit(model, train_loader, val_loader, optimizer, loss, 3, "cpu"))
    assert epochs == [] and result.best_model is None
    assert result.stop_reason == "diverged"
    assert "no epoch had finished, so there is no model to keep" in result.message


class FakeClock:
    """Each call to perf_counter moves time on by one second."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


@pytest.mark.parametrize("where", ["train_config", "limits"])
def test_time_limit_stops_and_keeps_a_model(monkeypatch, where):
    monkeypatch.setattr(training, "time", FakeClock())
    options = {"max_seconds": 6.0} if where == "train_config" else {"limits": Limits(max_train_seconds=6.0)}
    steps, epochs, result = train_small(epochs=3, **options)
    assert result.stop_reason == "time_limit"
    assert "reached the time limit of 6 s during epoch 1" in result.message
    assert 0 < len(steps) < 4  # cut short inside the first epoch
    assert [e.record.partial for e in epochs] == [True]
    assert result.best_model is not None and result.best_epoch == 1


def test_no_time_limit_by_default(monkeypatch):
    monkeypatch.setattr(training, "time", FakeClock())  # hours pass: nothing stops
    _, epochs, result = train_small(epochs=2)
    assert result.stop_reason == "completed" and len(epochs) == 2


# --- pieces around fit ----------------------------------------------------------------------

def test_schedule_warms_up_then_decays_to_a_tenth():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = make_scheduler(optimizer, total_steps=40, warmup_fraction=0.25)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(40):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    peak = lrs.index(max(lrs))
    assert peak == 10 and lrs[peak] == pytest.approx(1.0)
    assert lrs[0] < 0.2
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_schedule_without_warmup_starts_at_the_peak():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    make_scheduler(optimizer, total_steps=10, warmup_fraction=0.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


@pytest.mark.parametrize("norm", [1e-3, 0.9999, 1.0, 10.0])
def test_clip_gradients_gives_clip_grad_norms_gradients_bit_for_bit(norm):
    torch.manual_seed(0)
    shapes = [(7, 5), (5,), (3,)]
    grads = [torch.randn(shape) for shape in shapes]
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    grads = [g / total * norm for g in grads]  # a total norm of `norm`, around the max norm of 1.0
    ours, reference = ([nn.Parameter(torch.zeros(shape)) for shape in shapes] for _ in range(2))
    for p, q, g in zip(ours, reference, grads):
        p.grad, q.grad = g.clone(), g.clone()
    training.clip_gradients(iter(ours), 1.0)  # a generator, as model.parameters() is
    nn.utils.clip_grad_norm_(reference, 1.0)
    for p, q, g in zip(ours, reference, grads):
        assert torch.equal(p.grad, q.grad)
        assert torch.equal(p.grad, g) == (norm < 1.0)  # 1.0 itself is clipped: 1e-6 is added to the norm


def test_weight_decay_only_on_matrices():
    model = build_model(ModelConfig(5, [8, 16], [16, 16], 2))
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.1, lr=0.01))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert model.embedding.weight in [p for p in decay["params"]]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'potato'"):
        resolve_device("potato")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="this machine has no CUDA GPU: use cpu or auto"):
            resolve_device("cuda")


def test_train_task_checks_the_vocabulary_size():
    task = small_task()
    with pytest.raises(ValueError, match="the model's vocab_size 9 does not match the task's 3 tokens"):
        next(train_task(task, ModelConfig(9, [16], [32], 2), TrainConfig(epochs=1)))


def test_train_task_validates_its_configs():
    task = small_task()
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        next(train_task(task, model_config_for(task), TrainConfig(epochs=0)))
    with pytest.raises(ValueError, match="above the limit of 2"):
        next(train_task(task, model_config_for(task, [16] * 3), TrainConfig(epochs=1),
                        limits=Limits(max_layers=2)))


def test_accuracy_is_exact_match_of_greedy_answers():
    task = tiny_task("copy", seq_len=4, num_digits=3, train_size=8, val_size=20)
    assert accuracy(CopyOracle(4, len(task.vocab)), task) == 1.0
    zeros = accuracy(AlwaysToken(0, len(task.vocab)), task)
    assert zeros == sum(p == "0000" for p in task.val_prompts) / len(task.val_prompts)
    assert accuracy(CopyOracle(4, len(task.vocab)), task, batch_size=3) == 1.0


def test_accuracy_is_none_for_text():
    task = make_task(TaskConfig("text", seq_len=4, train_size=8, val_size=4, text="abcd efgh " * 20))
    model = build_model(model_config_for(task, [8]))
    assert accuracy(model, task) is None
    _, epochs, result = run(train_task(task, model_config_for(task, [8]),
                                       TrainConfig(epochs=1, batch_size=8)))
    assert epochs[0].record.val_accuracy is None and result.best_model is not None


def test_format_epoch_line():
    _, epochs, _ = train_small(epochs=2)
    line = format_epoch(epochs[0])
    assert line.startswith("epoch   1/2 | train ")
    assert "val acc" in line and "tok/s" in line
    assert line.endswith(" *")  # the first epoch always improves


# --- it learns ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sort", "copy", "reverse"])
def test_the_default_run_solves_the_task_and_stops(kind):
    """minGPT's 3-layer, 48-wide model with every default: every held-out prompt right within
    the 300 steps that issue 7 set, then stop.

    Seed 0 is the page's default: its first epoch at 100% ends after 224 (sort), 192 (copy) and
    160 (reverse) steps, at one thread and at two, and at one thread (this module's, and each of
    the page's two runs at a time) the run ends after 9, 9 and 7 epochs. A change to the model,
    the optimizer or the random stream that slows learning shows here as a count of steps or
    epochs, which no neighbour on the machine can move: a cheaper dropout mask, once tried, made
    the sort run end after 15 epochs, and only the class of 30's time (bench/classroom.py) showed it.
    """
    task = make_task(TaskConfig(kind))
    model_config = ModelConfig(len(task.vocab), [48, 48, 48], [192, 192, 192], nhead=3)
    result = [e for e in train_task(task, model_config, TrainConfig()) if isinstance(e, FitResult)][0]
    assert result.stop_reason == "solved", result.message
    assert len(result.history.epochs) <= 12, f"ended after {len(result.history.epochs)} epochs"
    first_solved = next(r.epoch for r in result.history.epochs if r.val_accuracy == 1.0)
    steps_by_then = sum(position <= first_solved for position in result.history.step_positions)
    assert steps_by_then <= 300, f"first 100% after {steps_by_then} steps (epoch {first_solved})"
    assert len(task.val_prompts) == 145
    assert accuracy(result.best_model, task) == 1.0  # exact match on every held-out prompt
    for prompt in task.val_prompts[:5]:
        answer = sample_text(result.best_model, task, prompt, SampleConfig(max_new_tokens=6, greedy=True))
        assert answer == task.expected_answer(prompt)


def test_a_solved_run_stops_once_the_best_model_is_solved():
    """Scripted held-out accuracies: the run ends at the first epoch where the best model scores
    100% and three epochs have ended at 100% (not necessarily in a row)."""
    scripted = iter([0.5, 1.0, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    task = small_task()
    events = list(fit(*fit_parts(task, epochs=10), accuracy_fn=lambda m: next(scripted), solved_epochs=3))
    result = events[-1]
    records = result.history.epochs
    accuracies = [r.val_accuracy for r in records]
    best_accuracy = records[result.best_epoch - 1].val_accuracy
    assert result.stop_reason == "solved" and best_accuracy == 1.0
    assert accuracies.count(1.0) >= 3
    stop = len(records)
    earlier = [accuracies[:e].count(1.0) >= 3 and records[max(r.epoch for r in records[:e] if r.improved) - 1]
               .val_accuracy == 1.0 for e in range(1, stop)]
    assert not any(earlier), "it stopped at the first epoch the rule allows"


def test_solved_epochs_zero_trains_every_epoch():
    task = small_task()
    events = list(fit(*fit_parts(task, epochs=4), accuracy_fn=lambda m: 1.0, solved_epochs=0))
    assert events[-1].stop_reason == "completed" and len(events[-1].history.epochs) == 4


def fit_parts(task, epochs):
    torch.manual_seed(0)
    model = build_model(model_config_for(task, [16], dropout=0.0))
    loader = training.batch_loader(task.train_dataset, 16, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = training.batch_loader(task.val_dataset, 64)
    optimizer = make_optimizer(model, TrainConfig())
    return model, loader, val, optimizer, nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX), epochs, "cpu"


def test_bf16_and_fp32_loss_curves_agree():
    """bfloat16 autocast changes rounding, not what is learned: per-epoch losses within 5%."""
    task = make_task(TaskConfig("reverse", seq_len=4, num_digits=3, train_size=256, val_size=32))
    model_config = ModelConfig(len(task.vocab), [32], [64], 2, 0.0)
    curves = {}
    for precision in ("fp32", "bf16"):
        train_config = TrainConfig(epochs=4, batch_size=32, seed=0, precision=precision, solved_epochs=0)
        result = [e for e in train_task(task, model_config, train_config) if isinstance(e, FitResult)][0]
        curves[precision] = [(r.train_loss, r.val_loss) for r in result.history.epochs]
    for (train32, val32), (train16, val16) in zip(curves["fp32"], curves["bf16"]):
        assert train16 == pytest.approx(train32, rel=0.05) and val16 == pytest.approx(val32, rel=0.05)
    assert curves["fp32"] != curves["bf16"], "bf16 really ran"


def test_cpu_bf16_attention_runs_as_plain_matmuls_and_float32_keeps_flash():
    """bf16 on a CPU runs attention as plain matmuls, forward and backward (PyTorch's kernels are
    slow there, see core/cpu_kernels.py); float32 keeps PyTorch's default choice, the flash kernel."""
    bf16 = attention_kernels_run(torch.bfloat16)
    fp32 = attention_kernels_run(None)
    assert bf16 == set(), bf16
    assert any("flash" in name for name in fp32), fp32


def test_auto_precision_uses_bf16_only_where_it_pays(monkeypatch):
    cpu = torch.device("cpu")
    wide, narrow = ModelConfig(5, [128, 128], [256, 256], 4), ModelConfig(5, [48], [192], 3)
    monkeypatch.setattr(training, "bf16_is_native", lambda device: True)
    assert training.autocast_dtype("auto", cpu, wide) == torch.bfloat16
    assert training.autocast_dtype("auto", cpu, narrow) is None
    assert training.autocast_dtype("fp32", cpu, wide) is None
    assert training.autocast_dtype("bf16", cpu, narrow) == torch.bfloat16
    monkeypatch.setattr(training, "bf16_is_native", lambda device: False)
    assert training.autocast_dtype("auto", cpu, wide) is None


@pytest.mark.parametrize("kind", ["sort", "text"])
def test_batch_loader_gives_the_batches_dataloader_would(kind):
    text = "the quick brown fox jumps over the lazy dog\n" * 20
    task = make_task(TaskConfig(kind, seq_len=8 if kind == "text" else 4, train_size=50, val_size=8,
                                text=text if kind == "text" else None))
    ours = training.batch_loader(task.train_dataset, 16, shuffle=True, generator=torch.Generator().manual_seed(3))
    theirs = DataLoader(task.train_dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert len(ours) == len(theirs) == 4
    for (x1, y1), (x2, y2) in zip(ours, theirs):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_configure_threads_leaves_a_core_for_the_server(monkeypatch):
    before = torch.get_num_threads()
    try:
        eight, two = {"CPU_CORES": "8"}, {"CPU_CORES": "2"}  # the cores available_cpus finds
        assert training.configure_threads(1, environ=eight) == 4 == torch.get_num_threads()
        assert training.configure_threads(3, environ=eight) == 2
        assert training.configure_threads(1, environ=two) == 1
        assert training.configure_threads(4, environ=two) == 1  # never zero
        assert training.configure_threads(1, environ={"PLAYGROUND_TORCH_THREADS": "3"}) == 3
        with pytest.raises(ValueError, match="PLAYGROUND_TORCH_THREADS"):
            training.configure_threads(1, environ={"PLAYGROUND_TORCH_THREADS": "lots"})
    finally:
        torch.set_num_threads(before)


def test_a_long_history_is_thinned_not_dropped():
    from core.training import MAX_STEP_POINTS, TrainingHistory

    history = TrainingHistory()
    steps = 3 * MAX_STEP_POINTS + 1
    for i in range(steps):
        history.add_step(i / 100, 1.0)
    assert len(history.step_losses) <= MAX_STEP_POINTS
    assert len(history.step_positions) == len(history.step_losses)
    span = steps / 100
    assert history.step_positions[0] < 0.01 * span and history.step_positions[-1] > 0.99 * span
    assert history.step_positions == sorted(history.step_positions)
    assert set(history.step_losses) == {1.0}


@pytest.mark.parametrize("files, environ, expected", [
    ({"cpu.max": "max 100000"}, {}, "all"),  # cgroup v2, no quota: every core we may run on
    ({"cpu.max": "150000 100000"}, {}, 2),  # 1.5 CPUs: round up
    ({"cpu.max": "100000 100000"}, {}, 1),
    ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, {}, 3),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, {}, "all"),
    ({"cpu.max": "100000 100000"}, {"CPU_CORES": "2"}, 2),  # Spaces' own setting wins
    ({}, {}, "all"),  # no cgroup files at all
])
def test_available_cpus_follow_cpu_cores_then_the_cgroup_quota_then_the_cores(tmp_path, files, environ, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cores = len(os.sched_getaffinity(0))
    want = cores if expected == "all" else min(expected, cores) if not environ else expected
    assert training.available_cpus(environ, cgroup_root=tmp_path) == want



def test_a_thinned_history_keeps_its_epochs_and_the_shape_of_its_curve():
    history = TrainingHistory()
    for i in range(5000):
        history.add_step(i / 1000, 1.0 / (1 + i))
    history.epochs.append(EpochRecord(1, 0.5, 0.4, None, True, 1.0, 10.0, 1e-3))
    thin = history.thinned(1000)
    assert len(thin.step_losses) <= 1000 and len(thin.step_positions) == len(thin.step_losses)
    assert thin.epochs == history.epochs and len(history.step_losses) == 5000  # the original is untouched
    assert thin.step_losses == sorted(thin.step_losses, reverse=True)
