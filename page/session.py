"""What one visitor owns. Gradio keeps a `Session` per browser session in `gr.State`, so two
visitors never see each other's models."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import core
from core.config import ModelConfig


@dataclass(frozen=True)
class BestModel:
    """The model a visitor samples from, with everything that must change together with it.

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


@dataclass
class Session:
    """One visitor's models, curves and runs; its methods change related fields together.

    Runs are counted when queued (`note_queued_run`, called by the Train event's validator as the
    request joins the queue) and when they start (`start_run`); Stop stops every run queued so
    far, so a run still waiting in the queue when Stop is pressed never trains.
    """

    table_config: ModelConfig | None = None  # the layer table's last valid shape, shown on Build
    best: BestModel | None = None
    history: core.training.TrainingHistory | None = None
    previous_history: core.training.TrainingHistory | None = None
    runs_queued: int = 0
    runs_started: int = 0
    stopped_through: int = 0  # runs numbered up to this one are to stop (or never start)

    def note_queued_run(self) -> None:
        self.runs_queued += 1

    def start_run(self) -> int:
        """Number a run as it starts; an older run still going in this session is superseded.

        The last run's curve becomes the faint previous one, and the new run starts an empty one.
        """
        self.runs_started += 1
        self.runs_queued = max(self.runs_queued, self.runs_started)  # a run that bypassed the queue
        if self.history is not None and self.history.step_losses:
            self.previous_history = self.history
        self.history = core.training.TrainingHistory()
        return self.runs_started

    def should_stop(self, run: int) -> bool:
        return run <= self.stopped_through or run != self.runs_started

    def stop(self) -> None:
        self.stopped_through = self.runs_queued

    def adopt(self, best: BestModel) -> None:
        """A new best model, trained here or uploaded, with its config, task and summary at once."""
        self.best = best
