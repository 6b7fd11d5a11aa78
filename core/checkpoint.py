"""Checkpoints: one .safetensors file holding the weights and, as JSON metadata, everything needed
to rebuild the model and its vocabulary. Never a pickle: loading a checkpoint runs no code."""

from __future__ import annotations

import json
import os
import platform
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from .config import Limits, ModelConfig, TaskConfig, as_float, as_int
from .data import Task, task_for_checkpoint
from .model import build_model
from .training import EpochRecord, FitState, TrainingHistory

FORMAT_NAME = "transformer-playground-checkpoint"
FORMAT_VERSION = "1"
MAX_STORED_PROMPTS = 64
# A checkpoint of ours has a header of a few kB (64 prompts, a text vocabulary, ~300 tensor
# entries at most); safetensors itself would parse up to 100 MB of JSON.
MAX_HEADER_BYTES = 1 << 20


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
    """Write atomically (see atomic_write): a crash mid-write never leaves a half-written
    best.safetensors behind."""
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
    atomic_write(path, lambda tmp_name: safetensors.torch.save_file(tensors, tmp_name, metadata=metadata))
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """`write(temporary_name)` beside `path`, then os.replace: a reader (or a kill -9 mid-write)
    sees the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; these are ordinary files
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu",
                    limits: Limits | None = None) -> Checkpoint:
    """Rebuild model and vocabulary from the file alone, checking everything before building.

    Only the header is read first (its size bounded): every metadata field is type-checked, the
    claimed model, task and lengths are checked against `limits` (the page passes its own), and
    each tensor's name, dtype and shape is compared with the model the config describes, built
    on the meta device so a file that claims a huge model costs nothing. Then the weights are
    read and must be finite. A file that isn't one of ours, or was tampered with, says so.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {name}")
    entries = _read_header(path)
    metadata = entries.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{name} is a safetensors file but not a Transformer Playground checkpoint "
                         "(its metadata has no model config)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{name} is a checkpoint of format version {str(metadata.get('format_version'))[:20]!r}; "
                         f"this version of the playground reads version {FORMAT_VERSION}")
    try:
        model_config, task, summary = _parse_metadata(metadata)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{name} has damaged metadata: {error}") from None
    try:
        model_config.validate(limits or Limits())
        task.config.validate(limits or Limits(), need_text=False)
    except ValueError as error:
        raise ValueError(f"{name} holds a model or task larger than this place allows: {error}") from None
    expected = _expected_tensors(model_config)
    problem = _tensor_mismatch(entries, expected)
    if problem:
        raise ValueError(f"{name}: its tensors don't fit its model config ({problem})")
    tensors = _read_tensors(path)
    not_finite = [key for key, t in tensors.items() if not torch.isfinite(t).all()]
    if not_finite:
        raise ValueError(f"{name} has weights that are NaN or infinite (in {', '.join(not_finite[:3])}): "
                         "it came from a run that diverged; save the best model of a run that didn't")
    model = build_model(model_config, device)
    model.load_state_dict(tensors, strict=True)
    return Checkpoint(model.eval(), model_config, task, summary)


def _read_header(path: Path) -> dict[str, Any]:
    """The safetensors header (8-byte length, then JSON), read without reading any weight."""
    unreadable = _unreadable(path)
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise ValueError(unreadable)
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES and length <= size - 8:
            raise ValueError(f"{path.name} has a header of {length:,} bytes, far above the "
                             f"{MAX_HEADER_BYTES:,} a checkpoint of ours needs: it was made by something else "
                             "or tampered with")
        if length > size - 8:
            raise ValueError(unreadable)
        raw = file.read(length)
    try:
        header = json.loads(raw)
    except ValueError:
        raise ValueError(unreadable) from None
    if not isinstance(header, dict):
        raise ValueError(unreadable)
    return header


def _parse_metadata(metadata: dict[str, Any]) -> tuple[ModelConfig, Task, dict[str, Any]]:
    """Each metadata entry as the type it must have; KeyError, TypeError or ValueError if not."""
    model_config = ModelConfig.from_dict(_json_field(metadata, "model_config", dict))
    task_config = TaskConfig.from_dict(_json_field(metadata, "task_config", dict))
    tokens = _json_field(metadata, "vocab", list)
    block_size = as_int(_json_field(metadata, "block_size", int), "its block size", minimum=1)
    val_prompts = _json_field(metadata, "val_prompts", list, default="[]")
    summary = _clean_summary(_json_field(metadata, "summary", dict, default="{}"))
    if len(val_prompts) > MAX_STORED_PROMPTS:
        raise ValueError(f"it lists {len(val_prompts)} held-out prompts; a checkpoint keeps at most "
                         f"{MAX_STORED_PROMPTS}")
    model_config.validate()  # its shape makes sense at all (the caller's limits come next)
    task_config.validate(need_text=False)
    if len(tokens) != model_config.vocab_size:
        raise ValueError(f"its vocabulary has {len(tokens)} tokens but the model has {model_config.vocab_size}")
    task = task_for_checkpoint(task_config, tokens, block_size, val_prompts)
    return model_config, task, summary


def _json_field(metadata: dict[str, Any], key: str, kind: type, default: str | None = None) -> Any:
    raw = metadata.get(key, default)
    if raw is None:
        raise KeyError(f"it has no {key}")
    if not isinstance(raw, str):
        raise TypeError(f"its {key} is not text")
    value = json.loads(raw)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"its {key} should be a JSON {_JSON_NAMES[kind]}, got {type(value).__name__}")
    return value


_JSON_NAMES = {dict: "object", list: "list", int: "whole number"}


def _clean_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The training summary with the three numbers the page shows checked (None where absent)."""
    epoch, loss, accuracy = (summary.get(k) for k in ("best_epoch", "best_val_loss", "val_accuracy"))
    clean = {
        "best_epoch": None if epoch is None else as_int(epoch, "its best epoch", minimum=1),
        "best_val_loss": None if loss is None else as_float(loss, "its best validation loss"),
        "val_accuracy": None if accuracy is None else as_float(accuracy, "its accuracy"),
    }
    if clean["best_val_loss"] is not None and clean["best_val_loss"] < 0:
        raise ValueError(f"its best validation loss must not be negative, got {loss}")
    if clean["val_accuracy"] is not None and not 0 <= clean["val_accuracy"] <= 1:
        raise ValueError(f"its accuracy must be between 0 and 1, got {accuracy}")
    versions = summary.get("versions")
    if isinstance(versions, dict):
        clean["versions"] = {str(k): str(v)[:40] for k, v in list(versions.items())[:8]}
    return clean


def _expected_tensors(config: ModelConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) of the model `config` describes; allocates nothing."""
    with torch.device("meta"):
        model = build_model(config)
    return {key: ("F32", tuple(t.shape)) for key, t in model.state_dict().items()}


def _tensor_mismatch(entries: dict[str, Any], expected: dict[str, tuple[str, tuple[int, ...]]]) -> str:
    """What differs between the header's tensors and the expected ones ('' when nothing does)."""
    missing = sorted(expected.keys() - entries.keys())
    unexpected = sorted(entries.keys() - expected.keys())
    if missing or unexpected:
        parts = [f"missing: {', '.join(missing[:5])}" if missing else "",
                 f"unexpected: {', '.join(map(str, unexpected[:5]))}" if unexpected else ""]
        return "; ".join(p for p in parts if p)
    for key, (dtype, shape) in expected.items():
        entry = entries[key]
        got = (entry.get("dtype"), tuple(entry.get("shape") or ())) if isinstance(entry, dict) else None
        if got != (dtype, shape):
            return f"{key} is {got}, the config needs {(dtype, shape)}"
    return ""


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as file:
            return {key: file.get_tensor(key) for key in file.keys()}
    except Exception as error:  # safetensors raises its own error types for bad offsets/truncation
        raise ValueError(f"{_unreadable(path)}: {error}") from None


def _unreadable(path: Path) -> str:
    return f"{path.name} is not a readable .safetensors checkpoint (is it truncated or another kind of file?)"


# ---------------------------------------------------------------------------------------------
# The state of a run, to resume it (last.safetensors)
# ---------------------------------------------------------------------------------------------

RUN_FORMAT_NAME = "transformer-playground-run"


def save_run_state(path: str | os.PathLike, state: FitState) -> Path:
    """An epoch's end as one safetensors file: weights, optimizer moments and generator states as
    tensors; counters, the schedule, optimizer settings and the history as JSON. No pickle."""
    tensors = {f"model.{name}": t for name, t in state.model_state.items()}
    for index, param_state in state.optimizer_state["state"].items():
        tensors.update({f"optimizer.{index}.{key}": t for key, t in param_state.items()})
    tensors["rng.torch"] = state.torch_rng
    if state.loader_rng is not None:
        tensors["rng.loader"] = state.loader_rng
    history = state.history
    metadata = {
        "format": RUN_FORMAT_NAME, "format_version": FORMAT_VERSION,
        "counters": json.dumps({"epoch": state.epoch, "step": state.step, "best_loss": state.best_loss,
                                "best_epoch": state.best_epoch, "stale_epochs": state.stale_epochs,
                                "solved_count": state.solved_count, "best_is_solved": state.best_is_solved}),
        "optimizer_groups": json.dumps(state.optimizer_state["param_groups"]),
        "scheduler": json.dumps(state.scheduler_state),
        "history": json.dumps({"step_positions": history.step_positions, "step_losses": history.step_losses,
                               "epochs": history.to_json_rows()}),
    }
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write(path, lambda tmp_name: safetensors.torch.save_file(tensors, tmp_name, metadata=metadata))
    return Path(path)


def load_run_state(path: str | os.PathLike, best_model: nn.Module | None) -> FitState:
    """What `save_run_state` wrote, for `train_task(..., resume=)`; `best_model` comes from best.safetensors."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != RUN_FORMAT_NAME:
            raise ValueError(f"{Path(path).name} is not the state of a Transformer Playground run")
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    counters = json.loads(metadata["counters"])
    optimizer_state: dict[str, Any] = {"state": {}, "param_groups": json.loads(metadata["optimizer_groups"])}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[key] = tensor
    saved = json.loads(metadata["history"])
    history = TrainingHistory(saved["step_positions"], saved["step_losses"],
                              [EpochRecord(**row) for row in saved["epochs"]],
                              counters["best_epoch"], counters["best_loss"])
    return FitState(counters["epoch"], counters["step"], counters["best_loss"], counters["best_epoch"],
                    counters["stale_epochs"], counters["solved_count"], counters["best_is_solved"], history,
                    best_model, {name[len("model."):]: t for name, t in tensors.items() if name.startswith("model.")},
                    optimizer_state, json.loads(metadata["scheduler"]), tensors["rng.torch"], tensors.get("rng.loader"))
