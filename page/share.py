"""Links that restore a setup, and a teacher's links that lock or hide controls and lower limits.

"Copy link" writes every setting into the page's URL (`?layers=48x192x3,...&task=sort&epochs=60...`,
pasted text only up to MAX_LINK_TEXT characters); opening the link restores them field by field.
A field that does not parse keeps its default and the page says which and why; nothing in a link
can break the page. A teacher's link can also carry `lock=epochs,lr` and `hide=text` (control
names as in the link) and any hosting limit, lowered, never raised (`max_epochs=20`). The locks
hold on the server too: a run whose locked settings differ is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import gradio as gr

from core.config import (
    MODEL_TYPES,
    Limits,
    as_float,
    as_int,
    as_seed,
    check_text,
    parse_layer_rows,
)
from core.tasks import task_kind

from .inputs import table_rows, user_errors
from .session import Session

MAX_LINK_TEXT = 2000  # characters of pasted text a link carries; longer text is left out


def _switch(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be 1 or 0, got {text[:20]!r}")


def _layers(text: str) -> list[list[int]]:
    rows = [row.split("x") for row in text.split(",")]
    if any(len(row) != 3 for row in rows):
        raise ValueError("must be layers like 48x192x3,48x192x3 (d_model x dim_feedforward x nhead)")
    d_models, ffs, heads = parse_layer_rows(rows)
    return [list(layer) for layer in zip(d_models, ffs, heads)]


def _model_type(text: str) -> str:
    if text not in MODEL_TYPES:
        raise ValueError(f"must be one of {', '.join(MODEL_TYPES)}")
    return text


def _fraction(text: str) -> float:
    value = as_float(text, "it")
    if not 0 <= value < 1:
        raise ValueError("must be at least 0 and below 1")
    return value


def _text(text: str) -> str:
    if len(text) > MAX_LINK_TEXT:
        raise ValueError(f"is longer than the {MAX_LINK_TEXT} characters a link carries")
    check_text(text)
    return text


def _sample_seed(text: str) -> str:
    return str(as_seed(text)) if text.strip() else ""


# name in the link -> how its text becomes the widget's value; the page's widgets in this order
PARSERS: dict[str, Callable[[str], Any]] = {
    "layers": _layers, "model_type": _model_type, "dropout": _fraction,
    "kind": lambda text: task_kind(text).name, "seq_len": lambda text: as_int(text, "it", minimum=1),
    "num_digits": lambda text: as_int(text, "it", minimum=1), "train_size": lambda text: as_int(text, "it", minimum=1),
    "val_size": lambda text: as_int(text, "it", minimum=1), "text": _text,
    "epochs": lambda text: as_int(text, "it", minimum=1), "batch_size": lambda text: as_int(text, "it", minimum=1),
    "lr": lambda text: as_float(text, "it"), "seed": lambda text: as_seed(text, "it"),
    "patience": lambda text: as_int(text, "it", minimum=0), "stop_when_solved": _switch, "causal": _switch,
    "greedy": _switch, "temperature": lambda text: as_float(text, "it"),
    "top_k": lambda text: as_int(text, "it", minimum=0), "top_p": lambda text: as_float(text, "it"),
    "new_tokens": lambda text: as_int(text, "it", minimum=1), "sample_seed": _sample_seed,
}
SETTINGS = tuple(PARSERS)
LIMIT_NAMES = tuple(f.name for f in fields(Limits))


def encode(name: str, value: Any) -> str:
    """A widget's value as its text in a link."""
    if name == "layers":
        return ",".join("x".join(str(as_int(cell, "a layer's number")) for cell in row)
                        for row in table_rows(value) if any(str(cell).strip() for cell in row))
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer() and name not in ("lr", "dropout", "temperature", "top_p"):
        return str(int(value))
    return "" if value is None else str(value)


@user_errors
def share_query(*values):
    """`?name=value&...` for the page's current settings (`values` in SETTINGS' order), then the
    teacher's `lock` and `hide` lists (the last two values)."""
    *settings, lock, hide = values
    query = {name: encode(name, value) for name, value in zip(SETTINGS, settings)}
    if len(query["text"]) > MAX_LINK_TEXT or query["kind"] != "text":
        query.pop("text")  # a link carries pasted text only when it is short and the task uses it
    for key, names in (("lock", lock), ("hide", hide)):
        unknown = [name for name in names or [] if name not in SETTINGS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a control a link can {key}; choose from: {', '.join(SETTINGS)}")
        if names:
            query[key] = ",".join(names)
    return "?" + urlencode(query)


def restore(request: gr.Request, session: Session):
    """The settings, locks, hidden controls and lowered limits a link carries, field by field."""
    params = dict(request.query_params) if request is not None else {}
    values, problems = {}, []
    for name, text in params.items():
        if name in PARSERS:
            try:
                values[name] = PARSERS[name](text)
            except ValueError as error:
                problems.append(f"`{name}` {str(error).removeprefix('it ')}; the default is kept")
    ignored = sorted(set(params) - set(PARSERS) - set(LIMIT_NAMES) - {"lock", "hide", "__theme"})
    problems += [f"`{name}` is not a setting a link carries and was ignored" for name in ignored]
    locks = _names(params.get("lock", ""), "lock", problems)
    hidden = _names(params.get("hide", ""), "hide", problems)
    session.limit_caps = _limit_caps(params, problems)
    session.locks = {name: values[name] for name in locks if name in values}
    problems += [f"`{name}` is locked but the link does not set it: it stays free" for name in locks
                 if name not in values]
    updates = [_update(name, values, locks, hidden) for name in SETTINGS]
    lowered = [f"{name.removeprefix('max_').replace('_', ' ')} {value}" for name, value in session.limit_caps.items()]
    return (*updates, _notice(session.locks, hidden, lowered, problems), session)


def _names(text: str, what: str, problems: list[str]) -> list[str]:
    names = [name for name in text.split(",") if name]
    problems += [f"`{name}` in `{what}` is not a control's name" for name in names if name not in SETTINGS]
    return [name for name in names if name in SETTINGS]


def _limit_caps(params: dict[str, str], problems: list[str]) -> dict[str, int]:
    """The hosting limits a link lowers (`max_epochs=20`); `page_limits` never lets one rise."""
    caps: dict[str, int] = {}
    for name in LIMIT_NAMES:
        if name in params:
            try:
                caps[name] = as_int(params[name], name, minimum=1)
            except ValueError as error:
                problems.append(f"{error}; the server's limit stays")
    return caps


def _update(name: str, values: dict, locks: list[str], hidden: list[str]):
    update: dict[str, Any] = {}
    if name in values:
        update["value"] = values[name]
    if name in locks and name in values:
        update["interactive"] = False
    if name in hidden:
        update["visible"] = False
    return gr.update(**update) if update else gr.skip()


def _notice(locks: dict, hidden: list[str], lowered: list[str], problems: list[str]) -> str:
    lines = []
    if locks or hidden or lowered:
        parts = [f"{what}: {', '.join(names)}" for what, names in
                 (("locked", list(locks)), ("hidden", hidden), ("at most", lowered)) if names]
        lines.append(f"🔒 **This page was opened from a teacher's link** ({'; '.join(parts)}).")
    if problems:
        lines.append("⚠ The link had problems: " + "; ".join(problems) + ".")
    return "\n\n".join(lines)


def page_limits(session: Session, limits: Limits) -> Limits:
    """The server's limits, lowered wherever this session's link lowered them (never raised)."""
    return replace(limits, **{name: min(getattr(limits, name), cap) for name, cap in session.limit_caps.items()})


def check_locks(session: Session, settings: dict[str, Any]) -> None:
    """Refuse settings that differ from what this session's link locked (an API call can send anything)."""
    for name, locked in session.locks.items():
        if name in settings and encode(name, settings[name]) != encode(name, locked):
            raise ValueError(f"{name} is locked to {encode(name, locked)} by this page's link; "
                             "open the page without the link to change it")


def widgets() -> SimpleNamespace:
    with gr.Row(elem_id="share-row"):
        copy_btn = gr.Button("Copy link to this setup", size="sm", elem_id="share-btn", scale=0)
        lock = gr.Dropdown(list(SETTINGS), multiselect=True, label="teacher: lock in the link", elem_id="share-lock")
        hide = gr.Dropdown(list(SETTINGS), multiselect=True, label="teacher: hide in the link", elem_id="share-hide")
    link = gr.Textbox(label="link to this setup", buttons=["copy"], visible=False, elem_id="share-link")
    notice = gr.Markdown(elem_id="link-notice")
    return SimpleNamespace(copy_btn=copy_btn, lock=lock, hide=hide, link=link, notice=notice)


def wire(demo: gr.Blocks, share: SimpleNamespace, targets: list, session: gr.State) -> None:
    """`targets`: the page's widgets for SETTINGS, in that order."""
    demo.load(restore, [session], [*targets, share.notice, session], api_visibility="private")
    share.copy_btn.click(share_query, [*targets, share.lock, share.hide], [share.link], api_name="share_link",
                         queue=False).then(
        None, [share.link], [share.link], js="(query) => window.location.origin + window.location.pathname + query",
        api_visibility="private").then(lambda: gr.update(visible=True), None, [share.link], api_visibility="private")
