"""Checkpoints: one .safetensors file holding the weights and, as JSON metadata, everything needed
to rebuild the model and its vocabulary. Never a pickle: loading a checkpoint runs no code."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from .config import ModelConfig, TaskConfig
from .data import Task, task_for_checkpoint
from .model import build_model

FORMAT_NAME = "transformer-playground-checkpoint"
FORMAT_VERSION = "1"
MAX_STORED_PROMPTS = 64


@dataclass
class Checkpoint:
    model: nn.Module  # in eval mode
    model_config: ModelConfig
    task: Task  # vocabulary and answers; no datasets
    summary: dict[str, Any]


def library_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, model_config: ModelConfig, task: Task,
                    summary: dict[str, Any] | None = None) -> Path:
    """Write atomically: a temporary file beside the target, then os.replace, so a crash mid-write
    never leaves a half-written best.safetensors behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors metadata values must be strings: each piece is JSON text
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_config": json.dumps(model_config.to_dict()),
        "task_config": json.dumps(task.config.to_dict()),  # without any pasted text
        "vocab": json.dumps(task.vocab.tokens),
        "block_size": str(task.block_size),
        # held-out prompts travel with the model, so examples shown after loading are still unseen
        "val_prompts": json.dumps((task.val_prompts or [])[:MAX_STORED_PROMPTS]),
        "summary": json.dumps({**(summary or {}), "versions": library_versions()}),
    }
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        safetensors.torch.save_file(tensors, tmp_name, metadata=metadata)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> Checkpoint:
    """Rebuild model and vocabulary from the file alone; a file that isn't one of ours says so."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {name}")
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:  # safetensors raises its own error types for bad headers/truncation
        raise ValueError(f"{name} is not a readable .safetensors checkpoint (is it truncated or another "
                         f"kind of file?): {error}") from None
    if metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{name} is a safetensors file but not a Transformer Playground checkpoint "
                         "(its metadata has no model config)")
    try:
        model_config = ModelConfig.from_dict(json.loads(metadata["model_config"]))
        task_config = TaskConfig.from_dict(json.loads(metadata["task_config"]))
        tokens = json.loads(metadata["vocab"])
        block_size = int(metadata["block_size"])
        val_prompts = json.loads(metadata.get("val_prompts", "[]"))
        summary = json.loads(metadata.get("summary", "{}"))
        model_config.validate()
        if len(tokens) != model_config.vocab_size:
            raise ValueError(f"its vocabulary has {len(tokens)} tokens but the model has "
                             f"{model_config.vocab_size}")
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{name} has damaged metadata: {error}") from None
    model = build_model(model_config, device)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first_line[:3])
        raise ValueError(f"{name}: its tensors don't fit its model config ({detail})") from None
    return Checkpoint(model.eval(), model_config, task_for_checkpoint(task_config, tokens, block_size, val_prompts),
                      summary)
