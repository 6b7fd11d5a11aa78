"""The one training loop. The page, the command line and the tests all run `fit`.

`fit` is a generator: it yields a `StepEvent` after every optimizer step, an `EpochEvent` after
every validation, and finally a `FitResult`, so a page can draw a live curve and a terminal can
print a line per epoch from the same loop. `train_model` is the seed's API over it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from . import distributed
from .allocator import keep_freed_memory
from .config import Limits, ModelConfig, TrainConfig, as_int
from .cpu_kernels import cpu_bf16_kernels
from .data import IGNORE_INDEX, Task
from .model import build_model
from .parallel_step import forward_backward, slice_threads
from .sampling import greedy_answers

StopReason = Literal["completed", "solved", "early_stopping", "stopped", "time_limit", "diverged"]
MAX_STEP_POINTS = 10_000  # per-step points a history keeps; longer runs are thinned (pairs averaged)


@dataclass
class EpochRecord:
    """One row of history.json. `partial` marks an epoch cut short by Stop or the time limit."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float | None
    improved: bool
    elapsed_s: float
    tokens_per_s: float
    lr: float
    partial: bool = False


@dataclass
class TrainingHistory:
    """Everything a loss curve needs: per-step train loss (x in epochs) and per-epoch records."""

    step_positions: list[float] = field(default_factory=list)  # 0.5 = halfway through epoch 1
    step_losses: list[float] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float = math.inf

    def add_step(self, position: float, loss: float) -> None:
        """Record one step; past MAX_STEP_POINTS, neighbouring points are averaged in pairs.

        A visitor's session holds its curves, and a 300 s run of a tiny model can take hundreds
        of thousands of steps: thinning keeps a history under ~1 MB while the page, which draws
        at most a few hundred points, shows the same curve.
        """
        self.step_positions.append(position)
        self.step_losses.append(loss)
        if len(self.step_losses) > MAX_STEP_POINTS:
            self.step_positions[:] = _pair_means(self.step_positions)
            self.step_losses[:] = _pair_means(self.step_losses)

    def to_json_rows(self) -> list[dict]:
        return [asdict(r) for r in self.epochs]

    def thinned(self, max_points: int) -> TrainingHistory:
        """A copy whose per-step curve has at most `max_points` points (neighbours averaged in pairs);
        every epoch record is kept."""
        positions, losses = list(self.step_positions), list(self.step_losses)
        while len(losses) > max_points:
            positions, losses = _pair_means(positions), _pair_means(losses)
        return TrainingHistory(positions, losses, list(self.epochs), self.best_epoch, self.best_val_loss)


def _pair_means(values: list[float]) -> list[float]:
    """[a, b, c, d, e] -> [(a+b)/2, (c+d)/2, e]"""
    pairs = [(a + b) / 2 for a, b in zip(values[0::2], values[1::2])]
    return pairs + values[-1:] if len(values) % 2 else pairs


@dataclass
class StepEvent:
    epoch: int
    step: int  # optimizer steps done so far, over the whole run
    total_steps: int
    loss: float
    lr: float
    elapsed_s: float
    history: TrainingHistory
    position: float = 0.0  # where the step lies in epochs (0.5 = halfway through epoch 1), as the curve plots it

    @property
    def seconds_left(self) -> float:
        return self.elapsed_s / max(1, self.step) * (self.total_steps - self.step)


@dataclass
class EpochEvent:
    record: EpochRecord
    num_epochs: int
    history: TrainingHistory
    best_model: nn.Module | None  # the deep copy kept so far (the same object until it improves)
    ends_run: bool = False  # the FitResult comes next: no more steps (a stepping caller can finish)
    state: FitState | None = None  # what a run resumed from this epoch's end starts from


@dataclass
class FitState:
    """Where a run stands at the end of an epoch: what `fit` needs to go on exactly as if it had
    never stopped (`resume=`), and what the command line writes to last.safetensors.

    The optimizer's and scheduler's state dicts and the random generators' states are taken at
    the end of the epoch; `best_model` is the model kept so far. The tensors are the live ones:
    write them out before training goes on (the command line does, at each epoch's end).
    """

    epoch: int
    step: int
    best_loss: float
    best_epoch: int | None
    stale_epochs: int
    solved_count: int
    best_is_solved: bool
    history: TrainingHistory
    best_model: nn.Module | None
    model_state: dict[str, torch.Tensor]  # the weights as training left them (not the best ones)
    optimizer_state: dict
    scheduler_state: dict | None
    torch_rng: torch.Tensor  # torch's global generator: dropout
    loader_rng: torch.Tensor | None  # the training loader's generator: batch order


@dataclass
class FitResult:
    """The end of a run. `best_model` is None only if no epoch (not even a partial one) finished.

    `last_model` is the model as training left it, after its last validated epoch (None when no
    epoch finished or the loss diverged): beside the best one, it shows what keeping the best
    model bought.
    """

    best_model: nn.Module | None
    best_loss: float
    best_epoch: int | None
    history: TrainingHistory
    stop_reason: StopReason
    message: str
    last_model: nn.Module | None = None


def available_cpus(environ: Mapping[str, str] | None = None, cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: CPU_CORES when set (Hugging Face Spaces set it), else the
    container's CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`),
    else the cores it may run on. Inside a container `os.cpu_count()` is the host's count."""
    environ = os.environ if environ is None else environ
    if environ.get("CPU_CORES", "").strip():
        return as_int(environ["CPU_CORES"], "CPU_CORES", minimum=1)
    quota = _cgroup_quota(cgroup_root)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(root: Path) -> float | None:
    """CPUs a cgroup quota allows (1.5 for "150000 100000"); None when there is no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "200000 100000"
    except (OSError, ValueError):
        try:  # v1
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def configure_threads(concurrent_runs: int = 1, environ: dict[str, str] | None = None) -> int:
    """Give torch the threads `threads_per_run` chooses, and return that count."""
    threads = threads_per_run(concurrent_runs, environ)
    torch.set_num_threads(threads)
    return threads


def threads_per_run(concurrent_runs: int = 1, environ: dict[str, str] | None = None) -> int:
    """The cores a serving process can spare a run: available_cpus() // (concurrent_runs + 1), at least 1.

    A web server streams pages while it trains. On 2 cores, two torch threads whose OpenMP
    workers spin collapse as soon as anything else wants a core (training ran ~6x slower beside a
    browser), while one thread loses only ~20% against two on an idle machine (10 sort epochs:
    5.2 s vs 4.3 s). PLAYGROUND_TORCH_THREADS overrides the choice.
    """
    environ = os.environ if environ is None else environ
    override = environ.get("PLAYGROUND_TORCH_THREADS", "").strip()
    if override:
        return as_int(override, "PLAYGROUND_TORCH_THREADS", minimum=1)
    return max(1, available_cpus(environ) // (max(1, concurrent_runs) + 1))


def resolve_device(name: str | torch.device | None) -> torch.device:
    """'auto' picks CUDA when present; asking for a device this machine lacks is a clear error."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:0 or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this machine has no CUDA GPU: use cpu or auto")
    return device


def flat_loss(criterion: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The seed's flattening: (B, T, V) -> (B*T, V) logits against (B, T) -> (B*T,) targets."""
    return criterion(logits.view(-1, logits.size(-1)), targets.view(-1))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device) -> float:
    """Mean loss per counted target token over the whole loader (batches of any size weigh fairly);
    under torchrun, over every rank's share of the validation set."""
    was_training = model.training
    model.eval()
    ignore = getattr(criterion, "ignore_index", IGNORE_INDEX)
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)  # (B, T), (B, T)
        n = int((y != ignore).sum())
        if n:
            total += flat_loss(criterion, model(x), y).item() * n
            count += n
    model.train(was_training)
    total, count = distributed.total(total, count)
    return total / max(1, count)


@torch.no_grad()
def accuracy(model: nn.Module, task: Task, device: torch.device | None = None, batch_size: int = 512) -> float | None:
    """Exact-match accuracy of greedy answers on the task's held-out prompts (None for text)."""
    if task.problem is None or not task.val_prompts:
        return None
    device = device or next(model.parameters()).device
    mine = [task.val_prompts[i] for i in distributed.my_share(len(task.val_prompts))]  # all, in one process
    correct = 0
    for start in range(0, len(mine), batch_size):
        prompts = mine[start: start + batch_size]
        ids = torch.tensor([task.vocab.encode(p) for p in prompts], device=device)  # (B, P)
        answers = greedy_answers(model, ids, task.problem.answer_len)  # (B, A)
        for prompt, answer in zip(prompts, answers.tolist()):
            correct += task.vocab.decode(answer) == task.problem.solve(prompt)
    correct, asked = distributed.total(correct, len(mine))
    return correct / asked


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, optimizer: torch.optim.Optimizer,
        criterion: nn.Module, num_epochs: int, device: torch.device | str, *,
        scheduler: LRScheduler | None = None, grad_clip: float = 1.0, patience: int | None = None,
        accuracy_fn: Callable[[nn.Module], float | None] | None = None,
        should_stop: Callable[[], bool] | None = None, max_seconds: float | None = None,
        solved_epochs: int = 0, autocast_dtype: torch.dtype | None = None, resume: FitState | None = None,
        ) -> Iterator[StepEvent | EpochEvent | FitResult]:
    """Train, validate every epoch, keep a deep copy of the model whenever validation improves.

    Stop requests and the time limit are honoured between two steps: the part-epoch is then
    validated like a whole one, so even a run stopped early hands back a best model. With
    `solved_epochs`, a run ends once nothing is left to learn: the kept best model scores 100%
    on `accuracy_fn` and that many epochs have ended at 100%. (Counted, not in a row: a model
    that has solved a task can still flip one held-out answer for an epoch while its validation
    loss keeps falling, so "in a row" ran some seeds for 40 more epochs.)

    `autocast_dtype` (bfloat16) runs forward and loss in autocast; validation stays in float32
    so the best-model choice never rests on rounding. In bf16 on a CPU with several torch
    threads, each large enough batch is split over them (core/parallel_step.py).
    """
    device = torch.device(device)
    keep_freed_memory()  # each step reuses the pages the last one freed (core/allocator.py)
    state = resume or FitState(0, 0, math.inf, None, 0, 0, False, TrainingHistory(), None, {}, {}, None,
                               torch.get_rng_state(), None)
    solved_count, best_is_solved, history = state.solved_count, state.best_is_solved, state.history
    best_loss, best_model, best_epoch = state.best_loss, state.best_model, state.best_epoch
    stale_epochs, step = state.stale_epochs, state.step
    steps_per_epoch = len(train_loader)
    total_steps = num_epochs * steps_per_epoch
    start = time.perf_counter() - (history.epochs[-1].elapsed_s if history.epochs else 0.0)
    stop_reason, message = "completed", f"trained {num_epochs} epochs"

    bare = getattr(model, "module", model)  # under DistributedDataParallel, the model it wraps
    batch_loss = functools.partial(_batch_loss, model, criterion, device, autocast_dtype)
    threads = slice_threads(device, autocast_dtype, criterion, distributed.launched())
    ignore = getattr(criterion, "ignore_index", IGNORE_INDEX)
    parameters = [p for p in model.parameters() if p.requires_grad]
    for epoch in range(state.epoch + 1, num_epochs + 1):
        model.train()
        _set_epoch(train_loader, epoch)
        epoch_loss, epoch_batches, epoch_tokens = 0.0, 0, 0
        train_seconds = 0.0
        interrupted = False
        for batch_index, (x, y) in enumerate(train_loader):
            stop_asked, out_of_time = distributed.agree(  # every rank leaves at the same step
                should_stop is not None and should_stop(),
                max_seconds is not None and time.perf_counter() - start > max_seconds)
            if stop_asked:
                stop_reason, message, interrupted = "stopped", f"stopped during epoch {epoch}", True
                break
            if out_of_time:
                stop_reason, interrupted = "time_limit", True
                message = f"reached the time limit of {max_seconds:g} s during epoch {epoch}"
                break
            step_start = time.perf_counter()
            x, y = x.to(device), y.to(device)  # (B, T), (B, T)
            optimizer.zero_grad(set_to_none=True)
            loss = forward_backward(batch_loss, x, y, parameters, threads, ignore)  # on one thread or a slice per core
            (diverged,) = distributed.agree(not torch.isfinite(loss).item())
            if diverged:
                lr = optimizer.param_groups[0]["lr"]
                kept = f"the best model, from epoch {best_epoch}, is kept" if best_model is not None \
                    else "no epoch had finished, so there is no model to keep"
                yield FitResult(_finish(best_model), best_loss, best_epoch, history, "diverged",
                                f"the loss became {loss.item()} at epoch {epoch}, step {batch_index + 1}: "
                                f"training stopped; lower the learning rate (it was {lr:.3g}); {kept}")
                return
            if grad_clip and grad_clip > 0:
                clip_gradients(parameters, grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            train_seconds += time.perf_counter() - step_start
            step += 1
            # under torchrun, the mean of the ranks' batch losses: the whole global batch's loss
            loss_value = distributed.total(loss.item())[0] / distributed.world_size()
            epoch_loss += loss_value
            epoch_batches += 1
            epoch_tokens += x.numel() * distributed.world_size()  # every rank trained an equal share
            position = epoch - 1 + (batch_index + 1) / steps_per_epoch
            history.add_step(position, loss_value)
            yield StepEvent(epoch, step, total_steps, loss_value, optimizer.param_groups[0]["lr"],
                            time.perf_counter() - start, history, position)

        if epoch_batches == 0:  # stopped before this epoch took a step
            break
        val_loss = evaluate(bare, val_loader, criterion, device)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, stale_epochs = val_loss, epoch, 0
            best_model = copy.deepcopy(bare)  # only on improvement, never every epoch
        else:
            stale_epochs += 1
        record = EpochRecord(
            epoch=epoch, train_loss=epoch_loss / epoch_batches, val_loss=val_loss,
            val_accuracy=accuracy_fn(bare) if accuracy_fn is not None else None, improved=improved,
            elapsed_s=time.perf_counter() - start, tokens_per_s=epoch_tokens / max(train_seconds, 1e-9),
            lr=optimizer.param_groups[0]["lr"], partial=interrupted)
        history.epochs.append(record)
        history.best_epoch, history.best_val_loss = best_epoch, best_loss
        solved_count += record.val_accuracy == 1.0
        best_is_solved = record.val_accuracy == 1.0 if improved else best_is_solved
        early_end = None if interrupted else _early_end(
            solved_epochs and best_is_solved and solved_count >= solved_epochs,
            patience is not None and stale_epochs >= patience, solved_count, epoch, patience, best_epoch)
        state = FitState(epoch, step, best_loss, best_epoch, stale_epochs, solved_count, best_is_solved, history,
                         best_model, bare.state_dict(), optimizer.state_dict(),
                         scheduler.state_dict() if scheduler else None,
                         torch.get_rng_state(), _loader_rng(train_loader))
        yield EpochEvent(record, num_epochs, history, best_model,
                         ends_run=interrupted or early_end is not None or epoch == num_epochs, state=state)
        if interrupted:
            break
        if early_end is not None:
            stop_reason, message = early_end
            break

    if best_model is None:
        message += "; no epoch finished, so there is no model yet"
    else:
        message += f"; best model from epoch {best_epoch} (validation loss {best_loss:.4f})"
    last_model = _finish(model) if history.epochs else None
    yield FitResult(_finish(best_model), best_loss, best_epoch, history, stop_reason, message, last_model)


def _batch_loss(model: nn.Module, criterion: nn.Module, device: torch.device, autocast_dtype: torch.dtype | None,
                x: torch.Tensor, y: torch.Tensor, dropout_generator: torch.Generator | None = None) -> torch.Tensor:
    """A training batch's mean loss, in the run's precision."""
    with precision_context(device, autocast_dtype, dropout_generator):
        return flat_loss(criterion, model(x), y)  # (B, T) -> (B, T, V) -> the mean over counted targets


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float) -> None:
    """`nn.utils.clip_grad_norm_`, leaving out its multiply by 1.0 when the norm is within `max_norm`.

    clip_grad_norm_ always multiplies every gradient, by a coefficient clamped to 1, so that a GPU
    need not wait for the norm. This loop reads the loss every step anyway, and multiplying by 1
    is a pass over every gradient for nothing: config M's norms stayed under 1.0 (bench/peers.py),
    and the default sort run's did in 57% of its steps. The same coefficient decides, so the
    gradients are the same bit for bit.
    """
    parameters = list(parameters)
    total_norm = nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    if max_norm / (total_norm + 1e-6) < 1:  # the coefficient clip_grads_with_norm_ computes and clamps
        nn.utils.clip_grads_with_norm_(parameters, max_norm, total_norm)


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    """A DistributedSampler shuffles by seed + epoch: tell it which epoch this is."""
    sampler = getattr(getattr(loader, "sampler", None), "sampler", None)  # BatchSampler -> its sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _loader_rng(loader: DataLoader) -> torch.Tensor | None:
    generator = getattr(loader, "generator", None)
    return generator.get_state() if generator is not None else None


def _early_end(solved: bool, out_of_patience: bool, solved_count: int, epoch: int, patience: int | None,
               best_epoch: int | None) -> tuple[StopReason, str] | None:
    """Why a run ends before its last epoch, if it does: solved, or no improvement for `patience` epochs."""
    if solved:
        return "solved", (f"held-out exact match reached 100% in {solved_count} epochs and the best model "
                          f"scores 100%, so training stopped after epoch {epoch}")
    if out_of_patience:
        return "early_stopping", f"stopped early: no improvement for {patience} epochs after epoch {best_epoch}"
    return None


def _finish(best_model: nn.Module | None) -> nn.Module | None:
    # deepcopy keeps .training=True; the best model is for evaluation and sampling
    return best_model.eval() if best_model is not None else None


def train_model(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
                optimizer: torch.optim.Optimizer, criterion: nn.Module, num_epochs: int,
                device: torch.device | str, **fit_options) -> nn.Module | None:
    """The seed's contract: train, track best_loss / best_model by validation loss, return best_model.

    The work happens in `fit`; this drains its events and hands back the best model in eval mode.
    """
    result = None
    for event in fit(model, train_loader, val_loader, optimizer, criterion, num_epochs, device, **fit_options):
        if isinstance(event, FitResult):
            result = event
    assert result is not None
    return result.best_model


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW, with weight decay on matrices only (not on biases, norms), as nanoGPT does."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for every parameter's update instead of a few per parameter tensor
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.0,
                   warmup_steps: int | None = None) -> LRScheduler:
    """Linear warmup (`warmup_steps`, else a fraction of all steps), then cosine decay to a tenth."""
    warmup = min(warmup_steps if warmup_steps is not None else int(total_steps * warmup_fraction),
                 max(0, total_steps - 1))
    base_lr = optimizer.param_groups[0]["lr"]
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup), eta_min=base_lr * 0.1)
    if warmup == 0:
        return cosine
    return SequentialLR(optimizer, [LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup),
                                    cosine], milestones=[warmup])


def train_task(task: Task, model_config: ModelConfig, train_config: TrainConfig,
               should_stop: Callable[[], bool] | None = None, limits: Limits | None = None,
               resume: FitState | None = None) -> Iterator[StepEvent | EpochEvent | FitResult]:
    """Everything around `fit` for a task: seeding, model, loaders, optimizer, schedule, loss.

    The configs are checked against `limits` when this is called, before anything trains, so a
    caller hears of a mistake before it changes anything; training starts on the first `next`.
    Same seed and configs -> same model initialisation, batch order, dropout, and so the same losses.
    `resume` (an epoch's end, as `core.checkpoint.load_run_state` reads it back) goes on from there:
    the history then equals an uninterrupted run's.
    """
    train_config.validate(limits)
    model_config.validate(limits)
    if model_config.vocab_size != len(task.vocab):
        raise ValueError(f"the model's vocab_size {model_config.vocab_size} does not match the task's "
                         f"{len(task.vocab)} tokens")
    device = resolve_device(train_config.device)
    if distributed.launched():  # torchrun: join the other processes of this run
        world = int(os.environ["WORLD_SIZE"])
        if train_config.batch_size % world:
            raise ValueError(f"--batch-size {train_config.batch_size} is the global batch and must split evenly "
                             f"over the {world} processes: use a multiple of {world}")
        device = distributed.start(device)
    return _train_task_events(task, model_config, train_config, device, should_stop, limits or Limits(), resume)


def _train_task_events(task: Task, model_config: ModelConfig, train_config: TrainConfig, device: torch.device,
                       should_stop: Callable[[], bool] | None, limits: Limits,
                       resume: FitState | None) -> Iterator[StepEvent | EpochEvent | FitResult]:
    """The run itself, once `train_task` has checked its configs."""
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, device)
    loader_rng = torch.Generator().manual_seed(train_config.seed)
    if distributed.launched():
        train_loader, val_loader = distributed_loaders(task, train_config.batch_size, train_config.seed)
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        train_loader = batch_loader(task.train_dataset, train_config.batch_size, shuffle=True, generator=loader_rng)
        val_loader = batch_loader(task.val_dataset, max(256, train_config.batch_size))
        trained = model
    optimizer = make_optimizer(model, train_config)
    total_steps = train_config.epochs * len(train_loader)
    scheduler = make_scheduler(optimizer, total_steps, warmup_steps=train_config.warmup_for(total_steps))
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    max_seconds = train_config.max_seconds
    if limits.max_train_seconds:
        max_seconds = min(max_seconds or math.inf, limits.max_train_seconds)
    accuracy_fn = (lambda m: accuracy(m, task, device)) if task.is_algorithmic else None
    if resume is not None:
        _restore(resume, model, optimizer, scheduler, loader_rng)
    yield from fit(trained, train_loader, val_loader, optimizer, criterion, train_config.epochs, device,
                   scheduler=scheduler, grad_clip=train_config.grad_clip, patience=train_config.patience,
                   accuracy_fn=accuracy_fn, should_stop=should_stop, max_seconds=max_seconds,
                   solved_epochs=train_config.solved_epochs if task.is_algorithmic else 0,
                   autocast_dtype=autocast_dtype(train_config.precision, device, model_config), resume=resume)


def _restore(state: FitState, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
             loader_rng: torch.Generator) -> None:
    """Put the weights, the optimizer, the schedule and both random generators where `state` left them."""
    model.load_state_dict(state.model_state)
    optimizer.load_state_dict(state.optimizer_state)
    if state.scheduler_state is not None:
        scheduler.load_state_dict(state.scheduler_state)
    if state.loader_rng is not None:
        loader_rng.set_state(state.loader_rng)
    torch.set_rng_state(state.torch_rng)


BF16_MIN_WIDTH = 128  # "auto" uses bf16 from this d_model up; narrower models are op-overhead bound


def autocast_dtype(precision: str, device: torch.device, model_config: ModelConfig | None = None,
                   ) -> torch.dtype | None:
    """bfloat16 for "bf16"; for "auto", where the hardware does bf16 matrix work natively (CPUs
    with AVX-512 BF16 or AMX, CUDA GPUs that support it) and the model is wide enough to gain.

    Measured on a 2-core AVX-512 BF16 CPU (bench/peers.py, dropout 0, with `precision_context`'s
    kernels): 4 x 128 trained 1.8x faster in bf16 and 6 x 256 1.9x. The default 3 x 48 sort model
    took 14 ms a step in bf16 against 16-21 ms in fp32, but learned slower: over seeds 0-4 its
    first 100% came after a median of 224 steps and 4.0 s (seed 0: 384 steps), against 192 steps
    and 3.0 s in fp32. None means float32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    wide = model_config is None or max(model_config.d_model_configs) >= BF16_MIN_WIDTH
    return torch.bfloat16 if wide and bf16_is_native(device) else None


@contextlib.contextmanager
def precision_context(device: torch.device, dtype: torch.dtype | None,
                      dropout_generator: torch.Generator | None = None) -> Iterator[None]:
    """Autocast to `dtype` (None: plain float32); for bf16 on a CPU, `cpu_bf16_kernels` too, its
    dropout drawing from `dropout_generator` (torch's global generator when None).

    PyTorch's CPU attention and dropout kernels are slow here (core/cpu_kernels.py has the
    measurements). Plain bf16 attention made the whole training step of 4 x 128 and 6 x 256
    models 1.15-1.3x faster, and the cheaper dropout mask another 1.4-1.7x where dropout is on.
    The fp32 path keeps PyTorch's own choices.

    The mode answers every attention call the seed's encoder layers make in training, so no
    choice of PyTorch's attention kernel is made here: `sdpa_kernel` switches a process-wide
    setting, and threads entering and leaving it in turn (the slices of core/parallel_step.py,
    the page's step buttons) left it switched to the math kernel for every later float32 run.
    """
    with contextlib.ExitStack() as stack:
        if dtype is not None:
            stack.enter_context(torch.autocast(device.type, dtype=dtype))
            if device.type == "cpu" and dtype == torch.bfloat16:
                stack.enter_context(cpu_bf16_kernels(dropout_generator))
        yield


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()


def batch_loader(dataset, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader that fetches each batch with one indexing call (`dataset[list_of_indices]`).

    The default DataLoader fetches B examples one by one and stacks them: 0.22 ms per batch of
    64 sort examples against 0.05 ms here, about 1% of a 3 x 48 training step. Same sampler, so
    the same order as DataLoader(shuffle=True, generator=...) would give.
    """
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    # the loader draws a worker seed from `generator` before each epoch, as DataLoader(shuffle=True) does
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None,
                      generator=generator)


def distributed_loaders(task: Task, batch_size: int, seed: int) -> tuple[DataLoader, DataLoader]:
    """This rank's loaders under torchrun. A DistributedSampler (seeded; `fit` tells it each epoch)
    gives every rank an equal share of each global batch of `batch_size`; the validation examples
    are split over the ranks without repeats, and `evaluate` adds the shares up."""
    share = batch_size // distributed.world_size()
    sampler = DistributedSampler(task.train_dataset, shuffle=True, seed=seed)
    train = DataLoader(task.train_dataset, sampler=BatchSampler(sampler, share, drop_last=False), batch_size=None)
    mine = distributed.my_share(len(task.val_dataset))
    val = DataLoader(task.val_dataset, sampler=BatchSampler(mine, max(256, batch_size), drop_last=False),
                     batch_size=None)
    return train, val


def format_epoch(event: EpochEvent) -> str:
    """One status line per epoch, for the terminal and the page alike."""
    r, h = event.record, event.history
    accuracy_text = "" if r.val_accuracy is None else f" | val acc {r.val_accuracy:6.1%}"
    mark = " *" if r.improved else ""
    partial = " (partial)" if r.partial else ""
    return (f"epoch {r.epoch:>3}/{event.num_epochs}{partial} | train {r.train_loss:.4f} | val {r.val_loss:.4f}"
            f"{accuracy_text} | best {h.best_val_loss:.4f} @ {h.best_epoch} | {r.tokens_per_s:,.0f} tok/s"
            f" | {r.elapsed_s:.1f}s{mark}")
