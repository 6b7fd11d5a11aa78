"""One training run as the page follows it: core's stream of events, and what each one changes in
the visitor's session. Train consumes a run to its end; the step buttons advance one a little at
a time, so a run can wait, paused, in the session between two clicks."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import gradio as gr

import core
from core.config import Limits, ModelConfig, TrainConfig, as_int, as_switch

from . import share
from .inputs import model_config_from, task_config_from
from .session import RUN_CURVE_POINTS, SNAPSHOT_MAX_TOKENS, KeptModel, RunRecord, Session


def train_config_from(epochs, batch_size, lr, seed, patience, stop_when_solved) -> TrainConfig:
    """The training widgets (TrainConfig checks and converts them); patience 0 and an unticked
    "stop once solved" mean off."""
    solved_epochs = TrainConfig.solved_epochs if as_switch(stop_when_solved, "stop once solved") else 0
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       patience=as_int(patience, "patience", minimum=0) or None, solved_epochs=solved_epochs)


@dataclass(eq=False)
class PageRun:
    """A run of `core.training.train_task` and the session it trains for."""

    events: Iterator  # a core.processes.TrainingProcess, or train_task's generator
    model_config: ModelConfig
    train_config: TrainConfig
    kept_task: core.data.Task  # data-less: what the session keeps of the task
    example: str  # the prompt whose attention maps are kept each time the model improves
    inputs: tuple  # the widget values it started from: stepping goes on only while they stay the same
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False

    def __deepcopy__(self, memo) -> PageRun:
        return self  # a session may be copied; a running generator cannot be, and needn't be

    @classmethod
    def start(cls, inputs: tuple, session: Session, number: int, limits: Limits, *,
              process_threads: int | None) -> PageRun:
        """Check every input (nothing in the session changes if one is wrong), then start training:
        in a process of its own with `process_threads` torch threads (`core.processes`: Train), or,
        with None, in this one (the step buttons, whose run waits in the session between clicks).

        `inputs`: the Train event's values from the layer table to `causal`, session left out.
        """
        share.check_locks(session, dict(zip(share.SETTINGS, inputs)))  # the inputs are SETTINGS' first 16
        limits = share.page_limits(session, limits)
        (table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
         epochs, batch_size, lr, seed, patience, stop_when_solved, causal) = inputs
        task_config = task_config_from(kind, seq_len, num_digits, train_size, val_size, text, seed)
        train_config = train_config_from(epochs, batch_size, lr, seed, patience, stop_when_solved)
        causal = as_switch(causal, "causal mask")
        should_stop = functools.partial(session.should_stop, number)
        if process_threads is not None:
            vocab = core.data.task_vocab(task_config.validate(limits))
            model_config = model_config_from(table, model_type, dropout, len(vocab), causal)
            events = core.processes.TrainingProcess(task_config, model_config, train_config, should_stop, limits,
                                                    process_threads)
            task, example = events.task, events.example
        else:
            full_task = core.data.make_task(task_config, limits)
            model_config = model_config_from(table, model_type, dropout, len(full_task.vocab), causal)
            events = core.training.train_task(full_task, model_config, train_config, should_stop, limits)
            task, example = full_task.without_data(), full_task.examples(1)[0]
        session.begin_training(model_config)
        return cls(events, model_config, train_config, task, example, inputs)

    def apply(self, event, session: Session) -> str:
        """What one event changes in the session; the status line it calls for."""
        if isinstance(event, core.training.StepEvent):
            session.history = event.history
            return step_status(event, session)
        if isinstance(event, core.training.EpochEvent):
            record = event.record
            if record.improved:
                session.adopt(KeptModel(event.best_model, self.model_config, self.kept_task, record.epoch,
                                        record.val_loss, record.val_accuracy, "this session's training"))
                if self.kept_task.block_size <= SNAPSHOT_MAX_TOKENS:
                    session.keep_snapshot(record.epoch, *core.sampling.attention_on_example(
                        event.best_model, self.kept_task, self.example))
            return core.training.format_epoch(event)
        self.finished = True
        session.finish_run(self._last_model(event), self._record(event, session))
        return final_status(event, session)

    def _record(self, result, session: Session) -> RunRecord:
        best = result.history.epochs[result.best_epoch - 1] if result.best_epoch else None
        elapsed = result.history.epochs[-1].elapsed_s if result.history.epochs else 0.0
        return RunRecord(session.runs[-1].number + 1 if session.runs else 1, self.setup, result.best_epoch,
                         None if best is None else best.val_loss, None if best is None else best.val_accuracy,
                         elapsed, result.stop_reason, result.history.thinned(RUN_CURVE_POINTS))

    @property
    def setup(self) -> str:
        """A short line naming what this run trained, for the runs table."""
        config, task = self.model_config, self.kept_task.config
        widths = "-".join(map(str, config.d_model_configs))
        fields = core.tasks.task_kind(task.kind).fields
        numbers = ", ".join(f"{field.what} {getattr(task, field.name)}" for field in fields)
        return (f"{widths} {config.model_type}; {task.kind} ({numbers}); lr {self.train_config.lr}, "
                f"seed {self.train_config.seed}"
                f"{'' if config.causal else '; no mask'}")

    def _last_model(self, result) -> KeptModel | None:
        if result.last_model is None:
            return None
        record = result.history.epochs[-1]
        return KeptModel(result.last_model, self.model_config, self.kept_task, record.epoch, record.val_loss,
                         record.val_accuracy, "this session's training (its last epoch)")


FINAL_MARKS = {"completed": "✓ Done", "solved": "✓ Solved", "early_stopping": "✓ Early stop",
               "stopped": "■ Stopped", "time_limit": "⏱ Time limit", "diverged": "⚠ Diverged"}
WHY_THE_MASK = (
    "Without the mask every position also reads the tokens after it, so in training the token it must "
    "predict is right there in its input: copying it drives the validation loss (measured the same way, "
    "the right answer in the input) far down. Generating, the next token does not exist yet, so there is "
    "nothing to copy, and the held-out exact match of its answers collapses.")


def mask_lesson(session: Session) -> str:
    """The latest runs with and without the causal mask side by side, once a run went without it
    (the end of every later run's status shows it, so a student can train with it next and compare)."""
    without = session.best_by_mask.get(False)
    if without is None:
        return ""
    columns = [session.best_by_mask.get(True), without]

    def cells(value) -> str:
        return " | ".join("train once with the mask to compare" if kept is None else value(kept) for kept in columns)
    return ("| best model of the latest run | with the causal mask | without it |\n|---|---|---|\n"
            f"| validation loss | {cells(lambda kept: f'{kept.val_loss:.4f}')} |\n"
            f"| held-out exact match | {cells(KeptModel.exact_match)} |\n\n{WHY_THE_MASK}")


def final_status(result, session: Session) -> str:
    text = f"**{FINAL_MARKS[result.stop_reason]}**: {result.message}."
    if result.best_model is not None and session.best.val_accuracy is not None:
        text += f" Held-out exact match of the best model: **{session.best.val_accuracy:.1%}**."
    if result.best_model is not None:
        text += " Sample from it in tab 4."
    if result.stop_reason == "diverged":
        gr.Warning(result.message)
    lesson = mask_lesson(session)
    return f"{text}\n\n{lesson}" if lesson else text


def step_status(event, session: Session) -> str:
    best = session.best if event.history.best_epoch is not None else None  # this run's best only
    best_text = "" if best is None else f" · best val loss {best.val_loss:.4f} (epoch {best.epoch})"
    accuracy = "" if best is None or best.val_accuracy is None else f" · val accuracy {best.val_accuracy:.1%}"
    epochs = event.history.epochs
    speed = f" · {epochs[-1].tokens_per_s:,.0f} tokens/s" if epochs else ""
    return (f"Epoch {event.epoch} · step {event.step}/{event.total_steps} · loss {event.loss:.4f}{best_text}"
            f"{accuracy}{speed} · ~{event.seconds_left:.0f} s left")
