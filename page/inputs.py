"""Widget values -> core configs, and every handler's errors -> messages on the page.

Values arrive raw (the Train event skips Gradio's preprocessing, and API callers send anything),
so core's checks (`core.config`) turn each into a typed value or a message that says what to fix.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from core.config import Limits, ModelConfig, TaskConfig, as_float, as_text, parse_layer_rows
from core.tasks import task_kind

ASSETS = Path(__file__).resolve().parent.parent / "assets"
PRESETS: dict[str, dict[str, Any]] = json.loads((ASSETS / "presets.json").read_text())
DEFAULT_PRESET = next(iter(PRESETS))
SAMPLE_TEXT = (ASSETS / "sample_text.txt").read_text()
LAYER_HEADERS = ["d_model", "dim_feedforward", "nhead"]

log = logging.getLogger("transformer_playground")


OUT_OF_MEMORY = ("the machine ran out of memory: try a smaller model, fewer examples, a smaller batch or "
                 "shorter sequences; your model and curves are kept")


def _as_gradio_error(error: Exception) -> gr.Error:
    """A user's mistake (ValueError) or a run too big for the machine (MemoryError) as its own message;
    anything else as a message that names it.

    The page never shows Gradio's generic "upstream app has raised an exception": a bug still
    reaches the visitor as what it is, and its traceback goes to the server log.
    """
    if isinstance(error, ValueError):
        return gr.Error(str(error), print_exception=False)
    if isinstance(error, MemoryError):  # the run was too big for the machine: the visitor can make it smaller
        return gr.Error(str(error) or OUT_OF_MEMORY, print_exception=False)
    log.exception("unexpected error in a page handler")
    return gr.Error(f"Something went wrong on the server ({type(error).__name__}: {error}). Your model and "
                    "curves are kept; please report this.", print_exception=False)


def user_errors(handler):
    """Turn every exception a handler raises into a message on the page (see _as_gradio_error)."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def wrapped_gen(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:
                raise _as_gradio_error(error) from None
        return wrapped_gen

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            raise _as_gradio_error(error) from None
    return wrapped


def with_limits(handler, limits: Limits):
    """`handler` with the page's limits bound; Gradio reads its other parameters as the event's inputs."""
    return functools.partial(handler, limits=limits)


def table_rows(table: Any) -> list[Any]:
    """A Dataframe value (rows from the page, a dict or rows from the API) as a list of rows."""
    if table is None:
        return []
    if isinstance(table, dict):
        table = table.get("data", [])
    if not isinstance(table, list):
        raise ValueError("the layer table must be rows of d_model, dim_feedforward and nhead")
    return [list(r) if isinstance(r, tuple) else r for r in table]


def task_config_from(kind, seq_len, num_digits, train_size, val_size, text, seed) -> TaskConfig:
    """The task widgets' values (TaskConfig checks and converts them, naming each as its task does);
    the numbers a task doesn't read are left to its default, whatever their hidden widgets hold."""
    kind = task_kind(kind)
    return TaskConfig(kind.name, seq_len if kind.field("seq_len") else None,
                      num_digits if kind.field("num_digits") else None, train_size, val_size, seed,
                      as_text(text, "the text") if kind.needs_text else None)


def task_number_update(kind, name: str, value=None):
    """A task number widget (`seq_len` or `num_digits`) as task `kind` shows it: hidden if the task
    doesn't read it, else labelled for it and set to `value` (default: the task's own)."""
    field = kind.field(name)
    if field is None:
        return gr.update(visible=False)
    return gr.update(visible=True, label=field.label, value=field.default if value is None else value)


def model_config_from(table, model_type, dropout, vocab_size: int, causal: bool = True) -> ModelConfig:
    """The layer table and model widgets as a config; checked against the limits where it is used."""
    d_models, ffs, heads = parse_layer_rows(table_rows(table))
    return ModelConfig(vocab_size, d_models, ffs, heads, as_float(dropout, "dropout"), model_type, causal)
