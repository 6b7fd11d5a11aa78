"""What one visitor owns. Gradio keeps a `Session` per browser session in `gr.State`, so two
visitors never see each other's models."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import core
from core.config import ModelConfig

if TYPE_CHECKING:
    from .run import PageRun


@dataclass(frozen=True)
class KeptModel:
    """A model a visitor keeps (the best one, or the last), with everything that must change with it.

    Replaced whole, never edited field by field: Save always writes the weights with the config
    and task they were trained under, and a failed upload can't leave a half-switched model.
    """

    model: Any
    config: ModelConfig
    task: core.data.Task  # data-less (Task.without_data): a session never keeps datasets
    epoch: int | None
    val_loss: float | None
    val_accuracy: float | None
    source: str

    def summary(self) -> str:
        """'epoch 12, validation loss 0.0123', saying 'unknown' for what an uploaded file left out."""
        loss = self.val_loss
        loss_text = f"{loss:.4f}" if isinstance(loss, (int, float)) and math.isfinite(loss) else "unknown"
        return f"epoch {self.epoch if self.epoch is not None else 'unknown'}, validation loss {loss_text}"

    def exact_match(self) -> str:
        return "not scored (text)" if self.val_accuracy is None else f"{self.val_accuracy:.1%}"


MAX_RUNS = 20  # runs a session keeps in its table (oldest dropped)
RUN_CURVE_POINTS = 1000  # a kept run's per-step curve, thinned to at most this (the overlay draws fewer)
# Attention snapshots a session keeps of its latest run, and the largest example they are taken
# on: the maps are (heads, T, T) per layer, so at the page's limits (8 layers, inputs of 256) one
# snapshot of everything would be megabytes. Past the cap, every other snapshot goes.
MAX_SNAPSHOTS, SNAPSHOT_MAX_TOKENS, SNAPSHOT_MAX_HEADS = 12, 64, 8


@dataclass(frozen=True)
class RunRecord:
    """One finished run, as the runs table shows it and its downloads hold it."""

    number: int
    setup: str  # widths, task, learning rate, seed, mask
    best_epoch: int | None
    best_val_loss: float | None
    exact_match: float | None
    seconds: float
    ended: str  # the stop reason
    history: core.training.TrainingHistory

    @property
    def name(self) -> str:
        return f"run {self.number}"

    def row(self) -> list:
        loss = None if self.best_val_loss is None else round(self.best_val_loss, 4)
        match = None if self.exact_match is None else f"{self.exact_match:.1%}"
        return [self.name, self.setup, self.best_epoch, loss, match, round(self.seconds, 1), self.ended]


RUN_COLUMNS = ["run", "setup", "best epoch", "best val loss", "held-out exact match", "seconds", "ended"]


@dataclass
class Session:
    """One visitor's models, curves and runs; its methods change related fields together.

    Runs are counted when queued (`note_queued_run`, called by the Train event's validator as the
    request joins the queue) and when they start (`start_run`); Stop stops every run queued so
    far, so a run still waiting in the queue when Stop is pressed never trains.
    """

    table_config: ModelConfig | None = None  # the layer table's last valid shape, shown on Build
    best: KeptModel | None = None
    last: KeptModel | None = None  # the model as the last run left it (None for an upload)
    # the best model of the latest run with the causal mask (True) and without it (False)
    best_by_mask: dict[bool, KeptModel] = field(default_factory=dict)
    # (epoch, per-layer attention maps (H, T, T), tokens) of one example, each time the model improved
    attention_over_training: list[tuple[int, list, list[str]]] = field(default_factory=list)
    paused: PageRun | None = None  # a run the step buttons advance, waiting between two clicks
    runs: list[RunRecord] = field(default_factory=list)  # every finished run, oldest first
    # what a teacher's link locked (control name -> value) and the hosting limits it lowered
    locks: dict[str, Any] = field(default_factory=dict)
    limit_caps: dict[str, int] = field(default_factory=dict)
    history: core.training.TrainingHistory | None = None
    previous_history: core.training.TrainingHistory | None = None
    runs_queued: int = 0
    runs_started: int = 0
    stopped_through: int = 0  # runs numbered up to this one are to stop (or never start)

    def note_queued_run(self) -> None:
        self.runs_queued += 1

    def start_run(self) -> int:
        """Number a run as it starts; an older run still going in this session is superseded."""
        self.runs_started += 1
        self.runs_queued = max(self.runs_queued, self.runs_started)  # a run that bypassed the queue
        return self.runs_started

    def begin_training(self, table_config: ModelConfig) -> None:
        """A run whose inputs all checked out starts training: the last run's curve becomes the
        faint previous one, and what belonged to the last run's models goes."""
        self.table_config = table_config
        if self.history is not None and self.history.step_losses:
            self.previous_history = self.history
        self.history = core.training.TrainingHistory()
        self.last, self.attention_over_training = None, []

    def should_stop(self, run: int) -> bool:
        return run <= self.stopped_through or run != self.runs_started

    def stop(self) -> None:
        self.stopped_through = self.runs_queued

    def adopt(self, best: KeptModel) -> None:
        """A new best model of this session's training, with its config, task and summary at once."""
        self.best = best
        self.best_by_mask[best.config.causal] = best

    def adopt_upload(self, uploaded: KeptModel) -> None:
        """An uploaded model replaces the best one; the last model and the run's maps were another model's."""
        self.best, self.last = uploaded, None
        self.attention_over_training = []

    def finish_run(self, last: KeptModel | None, record: RunRecord) -> None:
        """A run ended: keep its last model, and its row in the runs table."""
        self.last = last
        self.runs = [*self.runs, record][-MAX_RUNS:]

    def keep_snapshot(self, epoch: int, maps: list, tokens: list[str]) -> None:
        """Attention maps of the example at an improvement, as float16, at most SNAPSHOT_MAX_HEADS
        heads a layer (what the figure draws) and MAX_SNAPSHOTS in all (the first and last stay)."""
        small = [layer[:SNAPSHOT_MAX_HEADS].astype("float16") for layer in maps]
        self.attention_over_training.append((epoch, small, tokens))
        if len(self.attention_over_training) > MAX_SNAPSHOTS:
            kept = self.attention_over_training
            self.attention_over_training = kept[:-1:2] + kept[-1:]
