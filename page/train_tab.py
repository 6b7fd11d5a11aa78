"""Tab 3, Train: the task, the training numbers, and the loss curve streaming as the model learns.

Train runs in its own queue with a validator that counts queued runs, so Stop reaches a run still
waiting; Stop shares no output with the stream (the order in which they arrive is not fixed).
"""

from __future__ import annotations

import functools
import os
import shlex
import time
from types import SimpleNamespace

import gradio as gr

import core
from core.config import Limits, TaskConfig, TrainConfig, as_int, as_switch, parse_layer_rows
from core.tasks import TASKS, task_kind

from . import runs
from .inputs import SAMPLE_TEXT, table_rows, task_number_update, user_errors, with_limits
from .run import PageRun
from .session import Session

STREAM_UPDATES_PER_SECOND = 4  # each update resends the whole figure: a few per second stays smooth


def train_concurrency() -> int:
    """Runs at once (PLAYGROUND_TRAIN_CONCURRENCY). Two, each in a process of its own with one torch
    thread, on 2 vCPUs: one at a time left a core idle (a class of 30 pressing Train together: 321 s
    against 218 s, both in the server's process); in processes of their own, two at a time: 109 s
    (bench/classroom.py)."""
    return as_int(os.environ.get("PLAYGROUND_TRAIN_CONCURRENCY", "2"), "PLAYGROUND_TRAIN_CONCURRENCY", minimum=1)


@user_errors
def task_changed(kind):
    """Labels, visibility and defaults of the task widgets, from the task's registry entry."""
    entry = task_kind(kind)
    return (task_number_update(entry, "seq_len"), task_number_update(entry, "num_digits"),
            gr.update(visible=entry.needs_text), entry.help)


def note_queued_run(*inputs):
    """The Train event's validator: Gradio calls it as a run joins the queue (see Session)."""
    for value in inputs:
        if isinstance(value, Session):
            value.note_queued_run()
    return inputs


@user_errors
def train(table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
          epochs, batch_size, lr, seed, patience, session: Session, stop_when_solved=True, causal=True,
          progress=gr.Progress(), *, limits: Limits):
    """Stream the loss curve and a status line while core's loop trains."""
    this_run = session.start_run()
    session.paused = None  # a run paused by the step buttons is superseded
    if session.should_stop(this_run):
        yield core.figures.loss_figure(session.history, session.previous_history), \
            "**■ Stopped** before it started: Stop was pressed while this run waited in the queue."
        return
    inputs = (table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
              epochs, batch_size, lr, seed, patience, stop_when_solved, causal)
    # checks everything before the session changes; the thread count is chosen here rather than read off
    # torch, which still has its default (all cores) when a Train comes before the warm-up configured it
    run = PageRun.start(inputs, session, this_run, limits,
                        process_threads=core.training.threads_per_run(train_concurrency()))
    try:
        last_yield = 0.0
        for event in run.events:
            status = run.apply(event, session)
            if isinstance(event, core.training.StepEvent):
                if time.monotonic() - last_yield < 1 / STREAM_UPDATES_PER_SECOND:
                    continue
                progress((event.step, event.total_steps), desc="training", unit="steps")
            last_yield = time.monotonic()
            yield core.figures.loss_figure(session.history, session.previous_history), status
    finally:
        run.events.close()  # a visitor who left, or an error: the run's process ends now


@user_errors
def train_some(table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text, epochs,
               batch_size, lr, seed, patience, session: Session, stop_when_solved=True, causal=True, *,
               until: str, limits: Limits):
    """Train exactly one optimizer step (`until="step"`) or to the end of the epoch and its validation
    (`until="epoch"`), then show where the run is.

    The run waits in the session between clicks and goes on while the settings stay the same;
    changed settings, or a finished run, start a new one.
    """
    inputs = (table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
              epochs, batch_size, lr, seed, patience, stop_when_solved, causal)
    stop_at = {"step": core.training.StepEvent, "epoch": core.training.EpochEvent}[until]
    run = session.paused
    if run is None or run.finished or run.inputs != inputs:
        run = session.paused = PageRun.start(inputs, session, session.start_run(), limits, process_threads=None)
    if not run.lock.acquire(blocking=False):
        raise ValueError("the previous step is still training: wait for it, then press again")
    try:
        for event in run.events:
            status = run.apply(event, session)
            ends_run = isinstance(event, core.training.EpochEvent) and event.ends_run
            if isinstance(event, (stop_at, core.training.FitResult)) and not ends_run:
                break
    finally:
        run.lock.release()
    return core.figures.loss_figure(session.history, session.previous_history), status


def run_numbers(session: Session) -> dict:
    """The latest run as numbers, for scripts (`/run_numbers`, which a client may call while its
    /train streams): its latest step and loss, and a row per validated epoch (history.json's columns).

    A separate endpoint rather than a third /train output: clients unpack /train's two outputs."""
    history = session.history
    if history is None:
        return {}
    latest = {"step_position": history.step_positions[-1], "loss": history.step_losses[-1]} \
        if history.step_losses else {}
    return {**latest, "best_epoch": history.best_epoch, "epochs": history.to_json_rows()}


@user_errors
def command_line(table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text, epochs,
                 batch_size, lr, seed, patience, session: Session, stop_when_solved=True, causal=True):
    """The `python -m core train` command that runs this page's setup from a terminal."""
    entry = task_kind(kind)
    d_models, ffs, heads = parse_layer_rows(table_rows(table))
    flags = [("--task", entry.name)]
    flags += [(flag, value) for name, flag, value in (("seq_len", "--seq-len", seq_len),
                                                       ("num_digits", "--num-digits", num_digits))
              if entry.field(name) is not None]
    flags += [("--text-file", "your_text.txt")] if entry.needs_text else []
    flags += [("--train-size", train_size), ("--val-size", val_size), ("--model", model_type),
              ("--d-model", ",".join(map(str, d_models))), ("--dim-feedforward", ",".join(map(str, ffs))),
              ("--nhead", ",".join(map(str, heads))), ("--dropout", dropout), ("--epochs", epochs),
              ("--batch-size", batch_size), ("--lr", lr), ("--seed", seed)]
    flags += [("--patience", patience)] if as_int(patience, "patience", minimum=0) else []
    flags += [] if as_switch(stop_when_solved, "stop once solved") else [("--stop-when-solved", 0)]
    words = ["python", "-m", "core", "train", *(str(w) for flag in flags for w in flag)]
    words += [] if as_switch(causal, "causal mask") else ["--no-causal"]
    return "```bash\n" + " ".join(shlex.quote(w) for w in words) + " --out runs/mine\n```"


@user_errors
def stop(session: Session):
    session.stop()


NOTICE = ("**What to notice.** The training loss falls step by step; the validation loss, on examples the "
          "model never trains on, is measured after each epoch, and the star marks the epoch whose model is "
          "kept. The green diamonds are held-out exact match: whole answers right, from the model's own "
          "generation. Epochs after the best one are shaded.")


def widgets() -> SimpleNamespace:
    with gr.Tab("3 · Train", id="train", elem_id="tab-train"):
        gr.Markdown(NOTICE, elem_id="train-notice")
        return _widgets()


def _widgets() -> SimpleNamespace:
    with gr.Row():
        with gr.Column(scale=2):
            tab = _task_widgets()
            with gr.Row():
                tab.epochs = gr.Number(TrainConfig.epochs, label="epochs (at most)", elem_id="epochs")
                tab.batch_size = gr.Number(TrainConfig.batch_size, label="batch size", elem_id="batch-size")
            with gr.Row():
                tab.lr = gr.Number(TrainConfig.lr, label="learning rate", elem_id="lr")
                tab.seed = gr.Number(TrainConfig.seed, label="seed", elem_id="seed")
                tab.patience = gr.Number(0, label="patience (0 = off)", elem_id="patience")
            tab.causal = gr.Checkbox(
                True, label="causal mask", elem_id="causal",
                info="untick to train the same model without it, as an experiment (see what it changes)")
            tab.stop_when_solved = gr.Checkbox(
                True, label="stop once solved", elem_id="stop-when-solved",
                info=f"ends the run when the best model gets every held-out prompt right and "
                     f"{TrainConfig.solved_epochs} epochs have ended at 100% (not for text)")
            with gr.Row():
                tab.train_btn = gr.Button("Train", variant="primary", elem_id="train-btn")
                tab.stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
            with gr.Row():
                tab.step_btn = gr.Button("1 step", size="sm", elem_id="step-btn")
                tab.epoch_btn = gr.Button("1 epoch", size="sm", elem_id="epoch-btn")
                tab.command_btn = gr.Button("command line", size="sm", elem_id="command-btn")
            tab.command = gr.Markdown(elem_id="command")
        with gr.Column(scale=3):
            tab.status = gr.Markdown("Press **Train**. The loss curve draws itself as the model learns.",
                                     elem_id="train-status")
            tab.loss_plot = gr.Plot(elem_id="loss-plot")
            with gr.Accordion("this run in numbers (JSON)", open=False):
                tab.numbers_btn = gr.Button("refresh", size="sm", elem_id="run-numbers-btn")
                tab.numbers = gr.JSON(elem_id="run-numbers")
            tab.runs = runs.widgets()
    return tab


def _task_widgets() -> SimpleNamespace:
    default = task_kind(TaskConfig.kind)
    seq_len, num_digits = default.field("seq_len"), default.field("num_digits")
    kind = gr.Dropdown(list(TASKS), value=default.name, label="task", elem_id="task")
    task_help = gr.Markdown(default.help, elem_id="task-help")
    with gr.Row():
        seq_len = gr.Number(seq_len.default, label=seq_len.label, elem_id="seq-len")
        num_digits = gr.Number(num_digits.default, label=num_digits.label, elem_id="num-digits")
    with gr.Row():
        train_size = gr.Number(TaskConfig.train_size, label="training examples per epoch", elem_id="train-size")
        val_size = gr.Number(TaskConfig.val_size, label="held-out examples", elem_id="val-size")
    text = gr.Textbox(SAMPLE_TEXT, lines=6, max_lines=12, visible=False, label="your text (paste anything)",
                      elem_id="text")
    return SimpleNamespace(kind=kind, task_help=task_help, seq_len=seq_len, num_digits=num_digits,
                           train_size=train_size, val_size=val_size, text=text)


def wire(demo: gr.Blocks, build: SimpleNamespace, tab: SimpleNamespace, session: gr.State, limits: Limits) -> list:
    """Train, the step buttons, Stop and the task widgets; returns the events that train, which the
    Sample and Look-inside tabs follow."""
    demo.load(lambda: core.figures.loss_figure(None), None, [tab.loss_plot], api_visibility="private")
    tab.kind.input(task_changed, [tab.kind], [tab.seq_len, tab.num_digits, tab.text, tab.task_help],
                   api_visibility="private")
    inputs = [build.layers, build.model_type, build.dropout, tab.kind, tab.seq_len, tab.num_digits,
              tab.train_size, tab.val_size, tab.text, tab.epochs, tab.batch_size, tab.lr, tab.seed,
              tab.patience, session, tab.stop_when_solved, tab.causal]
    train_event = tab.train_btn.click(
        with_limits(train, limits), inputs, [tab.loss_plot, tab.status], api_name="train",
        concurrency_limit=train_concurrency(), concurrency_id="train", validator=note_queued_run,
        preprocess=False)  # raw values: core checks all
    steps = [button.click(with_limits(functools.partial(train_some, until=unit), limits), inputs,
                          [tab.loss_plot, tab.status], api_name=f"train_{unit}", concurrency_id="train",
                          preprocess=False)
             for button, unit in ((tab.step_btn, "step"), (tab.epoch_btn, "epoch"))]
    tab.stop_btn.click(stop, [session], None, api_name="stop", concurrency_limit=None, queue=False)
    tab.command_btn.click(command_line, inputs, [tab.command], api_name="command_line", queue=False)
    tab.numbers_btn.click(run_numbers, [session], [tab.numbers], api_name="run_numbers", queue=False)
    for event in (train_event, *steps):
        event.then(run_numbers, [session], [tab.numbers], api_visibility="private")
    return [train_event, *steps]
