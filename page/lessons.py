"""Lessons: presets that set the whole page (model, task, training, the mask) for one idea, with a
few sentences on what to notice. They live in assets/lessons.json; picking one is `/lesson`."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import gradio as gr

from core.tasks import task_kind

from .inputs import ASSETS, task_number_update, user_errors

LESSONS: dict[str, dict[str, Any]] = json.loads((ASSETS / "lessons.json").read_text())
PICK_ONE = "Pick a lesson to set up the page for it, or build your own below."
# the widgets a lesson sets, in the order `apply_lesson` returns them (then the text box's
# visibility, the task's help and the lesson's notice)
SETTINGS = ("layers", "model_type", "dropout", "kind", "seq_len", "num_digits", "train_size", "val_size",
            "epochs", "batch_size", "lr", "seed", "patience", "stop_when_solved", "causal")


@user_errors
def apply_lesson(name):
    """Every setting of the lesson, the task widgets labelled for its task, and what to notice."""
    if name not in LESSONS:
        raise ValueError(f"there is no lesson called {name!r}; choose one of: {', '.join(LESSONS)}")
    lesson = LESSONS[name]
    settings = dict(lesson["settings"])
    kind = task_kind(settings["kind"])
    updates = {key: gr.update(value=value) for key, value in settings.items()}  # every setting a lesson has
    for key in ("seq_len", "num_digits"):
        updates[key] = task_number_update(kind, key, settings.get(key))
    return (*(updates[key] for key in SETTINGS), gr.update(visible=kind.needs_text), kind.help,
            f"**{name}.** {lesson['notice']}")


def widgets() -> SimpleNamespace:
    with gr.Row(elem_id="lesson-row"):
        lesson = gr.Dropdown(list(LESSONS), value=None, label="lesson", elem_id="lesson", scale=1)
        notice = gr.Markdown(PICK_ONE, elem_id="lesson-notice")
    return SimpleNamespace(lesson=lesson, notice=notice)


def wire(lessons: SimpleNamespace, build: SimpleNamespace, train: SimpleNamespace) -> None:
    targets = {"layers": build.layers, "model_type": build.model_type, "dropout": build.dropout,
               **{key: getattr(train, key) for key in SETTINGS[3:]}}
    outputs = [targets[key] for key in SETTINGS] + [train.text, train.task_help, lessons.notice]
    lessons.lesson.input(apply_lesson, [lessons.lesson], outputs, api_name="lesson")
