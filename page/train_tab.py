"""Tab 3, Train: the task, the training numbers, and the loss curve streaming as the model learns.

Train runs in its own queue with a validator that counts queued runs, so Stop reaches a run still
waiting; Stop shares no output with the stream (the order in which they arrive is not fixed).
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import gradio as gr

import core
from core.config import Limits, TaskConfig, TrainConfig, as_float, as_int, as_seed, as_switch
from core.tasks import TASKS, task_kind

from .inputs import SAMPLE_TEXT, model_config_from, task_config_from, user_errors, with_limits
from .session import KeptModel, Session

STREAM_UPDATES_PER_SECOND = 4  # each update resends the whole figure: a few per second stays smooth
FINAL_MARKS = {"completed": "✓ Done", "solved": "✓ Solved", "early_stopping": "✓ Early stop",
               "stopped": "■ Stopped", "time_limit": "⏱ Time limit", "diverged": "⚠ Diverged"}


def train_concurrency() -> int:
    """Runs at once (PLAYGROUND_TRAIN_CONCURRENCY). Two, one torch thread each on 2 vCPUs: one at a
    time left a core idle, and a class of 30 pressing Train together finished in 218 s instead of
    321 s (bench/classroom.py)."""
    return as_int(os.environ.get("PLAYGROUND_TRAIN_CONCURRENCY", "2"), "PLAYGROUND_TRAIN_CONCURRENCY", minimum=1)


@user_errors
def task_changed(kind):
    """Labels, visibility and defaults of the task widgets, from the task's registry entry."""
    entry = task_kind(kind)

    def number_widget(name: str):
        field = entry.field(name)
        return gr.update(visible=False) if field is None else \
            gr.update(visible=True, label=field.label, value=field.default)
    return number_widget("seq_len"), number_widget("num_digits"), gr.update(visible=entry.needs_text), entry.help


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
    if session.should_stop(this_run):
        yield core.figures.loss_figure(session.history, session.previous_history), \
            "**■ Stopped** before it started: Stop was pressed while this run waited in the queue."
        return
    # Everything that can be wrong is checked before the session's model is touched.
    task = core.data.make_task(task_config_from(kind, seq_len, num_digits, train_size, val_size, text, seed), limits)
    model_config = model_config_from(table, model_type, dropout, len(task.vocab), limits,
                                     as_switch(causal, "causal mask"))
    train_config = train_config_from(epochs, batch_size, lr, seed, patience, stop_when_solved).validate(limits)
    session.begin_training(model_config)
    try:
        yield from _stream_run(task, model_config, train_config, session, this_run, progress, limits)
    finally:
        del task  # the datasets go with it; then the memory they and the run used goes back
        core.training.release_free_memory()


def train_config_from(epochs, batch_size, lr, seed, patience, stop_when_solved) -> TrainConfig:
    solved_epochs = TrainConfig.solved_epochs if as_switch(stop_when_solved, "stop once solved") else 0
    return TrainConfig(epochs=as_int(epochs, "epochs"), batch_size=as_int(batch_size, "batch size"),
                       lr=as_float(lr, "learning rate"), seed=as_seed(seed),
                       patience=as_int(patience, "patience", minimum=0) or None, solved_epochs=solved_epochs)


def _stream_run(task, model_config, train_config, session: Session, this_run: int, progress, limits: Limits):
    """The loop's events as figure and status updates, a few per second; each new best is adopted."""
    kept_task = task.without_data()  # what the session keeps once the run ends
    example = task.examples(1)[0]  # the one whose attention maps are kept as the model improves
    last_yield, status = 0.0, "Starting…"
    events = core.training.train_task(task, model_config, train_config, lambda: session.should_stop(this_run), limits)
    for event in events:
        if isinstance(event, core.training.StepEvent):
            session.history = event.history
            if time.monotonic() - last_yield < 1 / STREAM_UPDATES_PER_SECOND:
                continue
            progress((event.step, event.total_steps), desc="training", unit="steps")
            status = _status_line(event, session)
        elif isinstance(event, core.training.EpochEvent):
            record = event.record
            if record.improved:
                session.adopt(KeptModel(event.best_model, model_config, kept_task, record.epoch,
                                        record.val_loss, record.val_accuracy, "this session's training"))
                session.attention_over_training.append(
                    (record.epoch, *core.sampling.attention_on_example(event.best_model, kept_task, example)))
            status = core.training.format_epoch(event)
        elif isinstance(event, core.training.FitResult):
            session.finish_run(_last_model(event, model_config, kept_task))
            status = _final_status(event, session)
        last_yield = time.monotonic()
        yield core.figures.loss_figure(session.history, session.previous_history), status


def _last_model(result, model_config, kept_task) -> KeptModel | None:
    if result.last_model is None:
        return None
    record = result.history.epochs[-1]
    return KeptModel(result.last_model, model_config, kept_task, record.epoch, record.val_loss,
                     record.val_accuracy, "this session's training (its last epoch)")


WHY_THE_MASK = (
    "Without the mask every position also reads the tokens after it, so in training the token it must "
    "predict is right there in its input: copying it drives the validation loss (measured the same way, "
    "the right answer in the input) far down. Generating, the next token does not exist yet, so there is "
    "nothing to copy, and the held-out exact match of its answers collapses.")


def mask_lesson(session: Session) -> str:
    """The latest runs with and without the causal mask side by side, once a run went without it
    (the end of every later run's status shows it, so a student can train with it next and compare)."""
    without = session.best_by_mask.get(False)
    if without is None:
        return ""
    columns = [session.best_by_mask.get(True), without]

    def cells(value) -> str:
        return " | ".join("train once with the mask to compare" if kept is None else value(kept) for kept in columns)
    return ("| best model of the latest run | with the causal mask | without it |\n|---|---|---|\n"
            f"| validation loss | {cells(lambda kept: f'{kept.val_loss:.4f}')} |\n"
            f"| held-out exact match | {cells(KeptModel.exact_match)} |\n\n{WHY_THE_MASK}")


@user_errors
def stop(session: Session):
    session.stop()


def _status_line(event, session: Session) -> str:
    best = session.best if event.history.best_epoch is not None else None  # this run's best only
    best_text = "" if best is None else f" · best val loss {best.val_loss:.4f} (epoch {best.epoch})"
    accuracy = "" if best is None or best.val_accuracy is None else f" · val accuracy {best.val_accuracy:.1%}"
    epochs = event.history.epochs
    speed = f" · {epochs[-1].tokens_per_s:,.0f} tokens/s" if epochs else ""
    return (f"Epoch {event.epoch} · step {event.step}/{event.total_steps} · loss {event.loss:.4f}{best_text}"
            f"{accuracy}{speed} · ~{event.seconds_left:.0f} s left")


def _final_status(result, session: Session) -> str:
    text = f"**{FINAL_MARKS[result.stop_reason]}**: {result.message}."
    if result.best_model is not None and session.best.val_accuracy is not None:
        text += f" Held-out exact match of the best model: **{session.best.val_accuracy:.1%}**."
    if result.best_model is not None:
        text += " Sample from it in tab 4."
    if result.stop_reason == "diverged":
        gr.Warning(result.message)
    lesson = mask_lesson(session)
    return f"{text}\n\n{lesson}" if lesson else text


def widgets() -> SimpleNamespace:
    with gr.Tab("3 · Train", id="train", elem_id="tab-train"), gr.Row():
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
        with gr.Column(scale=3):
            tab.status = gr.Markdown("Press **Train**. The loss curve draws itself as the model learns.",
                                     elem_id="train-status")
            tab.loss_plot = gr.Plot(elem_id="loss-plot")
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


def wire(demo: gr.Blocks, build: SimpleNamespace, tab: SimpleNamespace, session: gr.State, limits: Limits):
    """Train, Stop and the task widgets; returns the Train event, which the Sample tab follows."""
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
    tab.stop_btn.click(stop, [session], None, api_name="stop", concurrency_limit=None, queue=False)
    return train_event
