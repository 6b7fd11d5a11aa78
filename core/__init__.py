"""Transformer Playground's engine: models, tasks, the training loop, sampling, checkpoints, figures.

Nothing here imports gradio; the page (app.py), the command line (python -m core) and the
tests all call these same functions.
"""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import Limits, ModelConfig, SampleConfig, TaskConfig, TrainConfig
from .data import IGNORE_INDEX, Task, Vocab, make_task
from .masks import generate_square_subsequent_mask
from .model import (ConfigurableTransformer, PositionalEncoding, SimpleTransformer, attention_weights,
                    build_model, parameter_counts)
from .sampling import generate, sample_text
from .training import (EpochEvent, FitResult, StepEvent, TrainingHistory, accuracy, configure_threads,
                       evaluate, fit, train_model, train_task)

__all__ = [
    "Checkpoint", "load_checkpoint", "save_checkpoint",
    "Limits", "ModelConfig", "SampleConfig", "TaskConfig", "TrainConfig",
    "IGNORE_INDEX", "Task", "Vocab", "make_task",
    "generate_square_subsequent_mask",
    "ConfigurableTransformer", "PositionalEncoding", "SimpleTransformer", "attention_weights", "build_model",
    "parameter_counts",
    "generate", "sample_text",
    "EpochEvent", "FitResult", "StepEvent", "TrainingHistory", "accuracy", "configure_threads", "evaluate", "fit",
    "train_model",
    "train_task",
]
