"""A training run in a process of its own, for a server that trains for many visitors at once.

`TrainingProcess` runs `core.training.train_task` (the one loop) in a fresh process and hands its
events back as they happen: the same `StepEvent`, `EpochEvent` and `FitResult` as in-process,
with the history rebuilt here from each step's point and a model sent only when it changes.

Why a process per run rather than a thread:
- **Reproducible runs.** Threads share torch's global random generator, so a visitor's dropout
  masks changed whenever another visitor trained: the default sort run with seed 0 took 16 epochs
  alone and 9 or 12 beside another run. A process draws from its own generator.
- **Memory goes back.** Everything a run allocated returns to the operating system when its
  process ends, however the allocator fragmented it.
- **It ends at once** when the visitor leaves, even in the middle of a long step.

Processes fork from a server process that has already imported torch and the engine
(multiprocessing's "forkserver"), so one starts in a few milliseconds; `start_server` starts that
server ahead of the first run. Where there is no fork server (Windows), each run starts a fresh
interpreter instead, which loads torch first: a few seconds more per run.

A script that trains this way must be importable without side effects, as multiprocessing asks:
each process imports the main script again, as `__mp_main__` (app.py builds no page then).
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from .config import Limits, ModelConfig, TaskConfig, TrainConfig

if TYPE_CHECKING:  # torch loads in the background while the page starts (core/__init__.py), so not here
    from .training import EpochEvent, FitResult, StepEvent

POLL_S = 0.1  # how often a waiting page checks for Stop and for a process that died
_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_CONTEXT = multiprocessing.get_context(_METHOD)
if _METHOD == "forkserver":
    # imported once by the server, for every run: torch and the engine, and torch._dynamo, which AdamW's
    # constructor imports on first use (1.4 s that each run would otherwise spend before its first step)
    _CONTEXT.set_forkserver_preload(["core.training", "torch._dynamo"])


def start_server() -> None:
    """Start the fork server now (it imports torch and the engine, about 2.5 s of its own), so that
    the first run starts as fast as the others. Needs no torch in this process."""
    if _METHOD == "forkserver":
        from multiprocessing import forkserver
        forkserver.ensure_running()


class TrainingProcess:
    """One run of `train_task` in its own process. Iterate it for the run's events; `close` ends
    the process if the run has not finished.

    Creating one waits until the process has built the task and checked every config, and raises
    their ValueError here, so a caller hears of a mistake before it changes anything.
    `should_stop` is asked here; the process finishes the run as `fit` does after Stop.
    """

    def __init__(self, task_config: TaskConfig, model_config: ModelConfig, train_config: TrainConfig,
                 should_stop: Callable[[], bool], limits: Limits | None = None, threads: int | None = None):
        import torch

        from .training import TrainingHistory

        # one socket pair: events come back on it, and a Stop goes out (no semaphore, so no /dev/shm needed)
        self._messages, child_end = _CONTEXT.Pipe()
        self._should_stop, self._stop_sent = should_stop, False
        self._process = _CONTEXT.Process(
            target=_run, name="training", daemon=True,
            args=(child_end, task_config, model_config, train_config, limits,
                  threads or torch.get_num_threads()))
        self._process.start()
        child_end.close()  # the child holds its end: when it dies, reading ends instead of waiting
        self.history = TrainingHistory()
        self._best = None
        self.finished = False
        try:
            _, self.task, self.example = self._receive()
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> TrainingProcess:
        return self

    def __next__(self) -> StepEvent | EpochEvent | FitResult:
        if self.finished:
            raise StopIteration
        kind, event = self._receive()
        if kind == "step":
            self.history.add_step(event.position, event.loss)
        elif kind == "epoch":
            self._add_epoch(event)
        else:
            self.finished = True
            self.close()
            event = replace(event, best_model=self._best)
        event.history = self.history
        return event

    def _add_epoch(self, event: EpochEvent) -> None:
        record = event.record
        self.history.epochs.append(record)
        if record.improved:
            self.history.best_epoch, self.history.best_val_loss = record.epoch, record.val_loss
            self._best = event.best_model.eval()
        event.best_model = self._best

    def _receive(self) -> tuple:
        """The next message; Stop is passed on while waiting. A process that died is an error
        that says why (the caller keeps what it had)."""
        while not self._messages.poll(POLL_S):
            self._pass_on_stop()
            if not self._process.is_alive() and not self._messages.poll():
                raise self._death()
        self._pass_on_stop()
        try:
            message = pickle.loads(self._messages.recv_bytes())
        except EOFError:
            raise self._death() from None
        if message[0] == "error":
            _, kind, text = message
            raise kind(text)
        return message

    def _pass_on_stop(self) -> None:
        if not self._stop_sent and self._should_stop():
            self._stop_sent = True
            try:
                self._messages.send_bytes(b"stop")
            except OSError:  # the process has ended: its last messages are still to be read
                pass

    def _death(self) -> Exception:
        """Why the process ended without a word: a kill, most likely the kernel's out-of-memory killer,
        is the visitor's to fix (a smaller run), so it is a MemoryError that says how."""
        self._process.join(1.0)
        code = self._process.exitcode
        if code is not None and code < 0 and -code == signal.SIGKILL:
            return MemoryError("the training process was killed, most likely because the machine ran out of memory: "
                               "train a smaller model, on fewer examples or smaller batches; what training kept "
                               "before is kept")
        return RuntimeError(f"the training process ended unexpectedly (exit code {code}); what training kept "
                            "before is kept")

    def close(self) -> None:
        """End the process now if it still runs (a visitor left, or a newer run replaced this one)."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._messages.close()


def _run(page: Connection, task_config: TaskConfig, model_config: ModelConfig, train_config: TrainConfig,
         limits: Limits | None, threads: int) -> None:
    """The training process: build the task, train, send each event in a compact form."""
    import torch

    from .data import make_task
    from .training import train_task

    torch.set_num_threads(threads)
    try:
        task = make_task(task_config, limits)
        # train_task checks the configs; Stop arrives as a message from the page
        events = train_task(task, model_config, train_config, page.poll, limits)
        _send(page, ("ready", task.without_data(), task.examples(1)[0]))
        for event in events:
            _send(page, _compact(event))
    except BrokenPipeError:  # the page closed its end: nobody is listening any more
        return
    except Exception as error:  # noqa: BLE001 - every failure goes back to the page as a message
        _send(page, ("error", _error_kind(error), str(error)))


def _error_kind(error: Exception) -> type[Exception]:
    """ValueError (a mistake in the inputs), MemoryError (a run too big for the machine; torch's allocator
    says so in a RuntimeError), or RuntimeError for anything else: what the page raises in its turn."""
    if isinstance(error, ValueError):
        return ValueError
    if isinstance(error, MemoryError) or "can't allocate memory" in str(error):
        return MemoryError
    return RuntimeError


def _compact(event: StepEvent | EpochEvent | FitResult) -> tuple:
    """An event without what the receiving side already has: its history (rebuilt there from the
    step points and epoch records), the best model unless it just improved, and the resume state."""
    from .training import EpochEvent, StepEvent

    if isinstance(event, StepEvent):
        return "step", replace(event, history=None)
    if isinstance(event, EpochEvent):
        return "epoch", replace(event, history=None, state=None,
                                best_model=event.best_model if event.record.improved else None)
    return "end", replace(event, history=None, best_model=None)


def _send(sender: Connection, message: tuple) -> None:
    sender.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

