"""Transformer Playground's engine: models, tasks, the training loop, sampling, checkpoints, figures.

Nothing here imports gradio; the page (app.py), the command line (python -m core) and the
tests all call these same functions.
"""

import os

# OpenMP threads that spin while waiting stall badly when anything else wants a core (a web
# server streaming pages, a browser, a second run): measured on 2 cores, 16 training steps took
# 12.3 s with spinning threads and 2.1 s with passive ones. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import Limits, ModelConfig, SampleConfig, TaskConfig, TrainConfig
from .data import IGNORE_INDEX, Task, Vocab, make_task
from .masks import generate_square_subsequent_mask
from .model import (ConfigurableTransformer, PositionalEncoding, SimpleTransformer, attention_weights,
                    build_model, parameter_counts)
from .sampling import generate, sample_text
from .training import (EpochEvent, FitResult, StepEvent, TrainingHistory, accuracy, evaluate, fit,
                       train_model, train_task)

__all__ = [
    "Checkpoint", "load_checkpoint", "save_checkpoint",
    "Limits", "ModelConfig", "SampleConfig", "TaskConfig", "TrainConfig",
    "IGNORE_INDEX", "Task", "Vocab", "make_task",
    "generate_square_subsequent_mask",
    "ConfigurableTransformer", "PositionalEncoding", "SimpleTransformer", "attention_weights", "build_model",
    "parameter_counts",
    "generate", "sample_text",
    "EpochEvent", "FitResult", "StepEvent", "TrainingHistory", "accuracy", "evaluate", "fit", "train_model",
    "train_task",
]
