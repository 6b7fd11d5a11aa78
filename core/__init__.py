"""Transformer Playground's engine: models, the task registry, the training loop, sampling, checkpoints, figures.

Nothing here imports gradio; the page (app.py), the command line (python -m core) and the
tests all call these same functions.

Names are imported on first use (PEP 562), so `import core.config` does not import torch:
the page answers its first request without waiting ~1 s for torch, and loads the rest of the
engine right after. `from core import make_task` works as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "checkpoint": ["Checkpoint", "load_checkpoint", "save_checkpoint"],
    "config": ["Limits", "ModelConfig", "SampleConfig", "TaskConfig", "TrainConfig"],
    "data": ["IGNORE_INDEX", "Task", "Vocab", "make_task"],
    "masks": ["generate_square_subsequent_mask"],
    "model": ["ConfigurableTransformer", "PositionalEncoding", "SimpleTransformer", "attention_weights",
              "build_model", "parameter_counts"],
    "sampling": ["attention_on_example", "generate", "sample_text"],
    "tasks": ["TASKS", "task_kind"],
    "training": ["EpochEvent", "FitResult", "StepEvent", "TrainingHistory", "accuracy", "configure_threads",
                 "evaluate", "fit", "train_model", "train_task"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
_SUBMODULES = {"benchmark", "checkpoint", "cli", "config", "data", "export", "figures", "kv_cache", "masks", "model",
               "probes", "processes", "sampling", "tasks", "training"}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | _SUBMODULES)
