"""Transformer Playground: the web page.

Thin wiring only. Each tab has a small builder; handlers turn widget values into core configs,
call core, and return figures and text. A core ValueError becomes a message on the page and
leaves the visitor's session (best model, curves) untouched. Everything a visitor owns lives in
one `Session` inside `gr.State`, so two browsers never see each other's models.
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls to outside hosts, ever

import gradio as gr  # noqa: E402

import core  # noqa: E402  (the engine loads on first use; see warm_up_engine)
from core.config import (Limits, ModelConfig, SampleConfig, TaskConfig, TrainConfig,  # noqa: E402
                         as_float, as_int, as_seed, as_switch, as_text, parse_layer_rows)

ASSETS = Path(__file__).parent / "assets"
PRESETS: dict[str, dict[str, Any]] = json.loads((ASSETS / "presets.json").read_text())
DEFAULT_PRESET = next(iter(PRESETS))
SAMPLE_TEXT = (ASSETS / "sample_text.txt").read_text()
LAYER_HEADERS = ["d_model", "dim_feedforward", "nhead"]
TASK_HELP = {
    "sort": "Sort the digits: `210120` → `001122` (minGPT's demo).",
    "copy": "Repeat the digits: `2101` → `2101`.",
    "reverse": "Reverse the digits: `2101` → `1012`.",
    "addition": "Add two zero-padded numbers: `47+85=` → `132`.",
    "text": "Predict the next character of your own text (the last 10% is held out).",
}


@dataclass(frozen=True)
class BestModel:
    """The model a visitor samples from, with everything that must change together with it.

    Replaced whole, never edited field by field: Save always writes the weights with the config
    and task they were trained under, and a failed upload can't leave a half-switched model.
    """

    model: Any
    config: ModelConfig
    task: core.data.Task  # data-less (Task.without_data): a session never keeps datasets
    epoch: int | None
    val_loss: float | None
    val_accuracy: float | None
    source: str

    def summary(self) -> str:
        """'epoch 12, validation loss 0.0123', saying 'unknown' for what an uploaded file left out."""
        loss = self.val_loss
        loss_text = f"{loss:.4f}" if isinstance(loss, (int, float)) and math.isfinite(loss) else "unknown"
        return f"epoch {self.epoch if self.epoch is not None else 'unknown'}, validation loss {loss_text}"


@dataclass
class Session:
    """One visitor's models and curves. Mutated in place; gr.State keeps it per browser session.

    Runs are counted when queued (`runs_queued`, by the Train event's validator, which Gradio
    calls as the request joins the queue) and when they start (`runs_started`); Stop stops every
    run queued so far, so a run still waiting in the queue when Stop is pressed never trains.
    """

    table_config: ModelConfig | None = None  # the layer table's last valid shape, shown on Build
    best: BestModel | None = None
    history: core.training.TrainingHistory | None = None
    previous_history: core.training.TrainingHistory | None = None
    runs_queued: int = 0
    runs_started: int = 0
    stopped_through: int = 0  # runs numbered up to this one are to stop (or never start)

    def start_run(self) -> int:
        """Number a run as it starts; an older run still going in this session is superseded."""
        self.runs_started += 1
        self.runs_queued = max(self.runs_queued, self.runs_started)  # a run that bypassed the queue
        if self.history is not None and self.history.step_losses:
            self.previous_history = self.history
        self.history = core.training.TrainingHistory()
        return self.runs_started

    def should_stop(self, run: int) -> bool:
        return run <= self.stopped_through or run != self.runs_started

    def stop(self) -> None:
        self.stopped_through = self.runs_queued

    def adopt(self, best: BestModel) -> None:
        self.best = best


log = logging.getLogger("transformer_playground")


def _as_gradio_error(error: Exception) -> gr.Error:
    """A user's mistake (ValueError) as its own message; anything else as a message that names it.

    The page never shows Gradio's generic "upstream app has raised an exception": a bug still
    reaches the visitor as what it is, and its traceback goes to the server log.
    """
    if isinstance(error, ValueError):
        return gr.Error(str(error), print_exception=False)
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


# ---------------------------------------------------------------------------------------------
# Widget values -> core configs
# ---------------------------------------------------------------------------------------------

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
    return TaskConfig(kind, as_int(seq_len, "sequence length"), as_int(num_digits, "digits"),
                      as_int(train_size, "train size"), as_int(val_size, "validation size"),
                      as_seed(seed), as_text(text, "the text") if kind == "text" else None)


def model_config_from(table, model_type, dropout, vocab_size: int, limits: Limits) -> ModelConfig:
    d_models, ffs, heads = parse_layer_rows(table_rows(table))
    return ModelConfig(vocab_size, d_models, ffs, heads, as_float(dropout, "dropout"), model_type).validate(limits)


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

class PageHandlers:
    """The page's event handlers, each a short method that reads the hosting limits.

    Plain methods, so tests call them without a server (`make_handlers(limits)["train"](...)`).
    """

    def __init__(self, limits: Limits):
        self.limits = limits

    @user_errors
    def describe_model(self, table, model_type, dropout, kind, seq_len, num_digits, text, session: Session):
        """Parameter table, total and width figure for the layer table; the last valid model stays."""
        try:
            task_config = TaskConfig(kind, seq_len, num_digits,
                                     text=as_text(text, "the text") if kind == "text" else None)
            vocab = core.data.task_vocab(task_config.validate(self.limits))
            config = model_config_from(table, model_type, dropout, len(vocab), self.limits)
        except ValueError as error:
            kept = ""
            if session.table_config is not None:
                kept = (f" The last valid model ({session.table_config.num_layers} layers, "
                        f"{session.table_config.num_parameters():,} parameters) is still shown.")
            message = f"<span class='tp-error'>⚠ {html.escape(str(error))}</span>{kept}"
            return gr.skip(), gr.skip(), gr.skip(), message, session
        session.table_config = config
        rows = [[part, count] for part, count in config.parameter_breakdown()]
        projections = config.projection_positions()
        where = ", ".join(f"between layers {i} and {i + 1}" for i in projections) or "none (all widths equal)"
        total = (f"**{config.num_parameters():,} parameters** in {config.num_layers} layers "
                 f"(vocabulary of {config.vocab_size} for the {kind} task). Projections: {where}.")
        return rows, total, core.figures.architecture_figure(config), "<span class='tp-ok'>✓ valid model</span>", session

    @user_errors
    def add_layer(self, table):
        rows = table_rows(table)
        if len(rows) >= self.limits.max_layers:
            raise ValueError(f"the model already has {len(rows)} layers, the most this page allows")
        return rows + [list(rows[-1]) if rows and isinstance(rows[-1], list) else [48, 192, 3]]

    @user_errors
    def remove_layer(self, table):
        rows = table_rows(table)
        return rows[:-1] if len(rows) > 1 else rows

    @user_errors
    def apply_preset(self, name):
        if name not in PRESETS:
            raise ValueError(f"there is no preset called {name!r}; choose one of: {', '.join(PRESETS)}")
        preset = PRESETS[name]
        return [list(r) for r in preset["layers"]], preset["model_type"]

    @user_errors
    def show_mask(self, length):
        return core.figures.mask_figure(as_int(length, "mask length", minimum=1, maximum=64))

    @user_errors
    def task_changed(self, kind):
        """Labels and visibility that follow the task; defaults that fit it."""
        is_text = kind == "text"
        seq_default = {"text": 32, "addition": 6}.get(kind, 6)
        return (gr.update(label="context length (characters)" if is_text else "sequence length (digits)",
                          value=seq_default, visible=kind != "addition"),
                gr.update(label="digits per number" if kind == "addition" else "distinct digits",
                          value=2 if kind == "addition" else 3, visible=not is_text),
                gr.update(visible=is_text), TASK_HELP.get(kind, ""))

    def note_queued_run(self, *inputs):
        """The Train event's validator: Gradio calls it as a run joins the queue (see Session)."""
        for session in inputs:
            if isinstance(session, Session):
                session.runs_queued += 1
        return inputs

    @user_errors
    def train(self, table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
              epochs, batch_size, lr, seed, patience, session: Session, stop_when_solved=True,
              progress=gr.Progress()):
        """Stream the loss curve and a status line while core's loop trains."""
        this_run = session.start_run()
        if session.should_stop(this_run):
            yield core.figures.loss_figure(session.history, session.previous_history), \
                "**■ Stopped** before it started: Stop was pressed while this run waited in the queue."
            return
        # Everything that can be wrong is checked before the session's model is touched.
        task = core.data.make_task(task_config_from(kind, seq_len, num_digits, train_size, val_size, text, seed), self.limits)
        model_config = model_config_from(table, model_type, dropout, len(task.vocab), self.limits)
        patience_value = as_int(patience, "patience", minimum=0)
        train_config = TrainConfig(epochs=as_int(epochs, "epochs"), batch_size=as_int(batch_size, "batch size"),
                                   lr=as_float(lr, "learning rate"), seed=as_seed(seed),
                                   patience=patience_value or None,
                                   solved_epochs=TrainConfig.solved_epochs if as_switch(
                                       stop_when_solved, "stop once solved") else 0).validate(self.limits)
        session.table_config = model_config
        kept_task = task.without_data()  # what the session keeps once the run ends
        try:
            yield from self._stream_run(task, kept_task, model_config, train_config, session, this_run, progress)
        finally:
            del task  # the datasets go with it; then the memory they and the run used goes back
            core.training.release_free_memory()

    @user_errors
    def stop(self, session: Session):
        session.stop()

    def _stream_run(self, task, kept_task, model_config, train_config, session, this_run, progress):
        last_yield = 0.0
        status = "Starting…"
        for event in core.training.train_task(task, model_config, train_config, lambda: session.should_stop(this_run), self.limits):
            if isinstance(event, core.training.StepEvent):
                session.history = event.history
                if time.monotonic() - last_yield < 1 / core.figures.STREAM_UPDATES_PER_SECOND:
                    continue
                progress((event.step, event.total_steps), desc="training", unit="steps")
                status = _status_line(event, session)
            elif isinstance(event, core.training.EpochEvent):
                record = event.record
                if record.improved:
                    session.adopt(BestModel(event.best_model, model_config, kept_task, record.epoch,
                                            record.val_loss, record.val_accuracy, "this session's training"))
                status = core.training.format_epoch(event)
            elif isinstance(event, core.training.FitResult):
                status = _final_status(event, session)
            last_yield = time.monotonic()
            yield core.figures.loss_figure(session.history, session.previous_history), status

    @user_errors
    def sample_tab(self, session: Session):
        """What the Sample and Look-inside tabs show for the session's best model."""
        best = session.best
        if best is None:
            return ("No model yet: train one (tab 3) or upload a checkpoint below.", gr.update(choices=[]),
                    gr.skip(), gr.skip())
        task = best.task
        accuracy = "" if best.val_accuracy is None else f", held-out exact match {best.val_accuracy:.1%}"
        info = (f"Best model: **{best.summary()}**{accuracy} — from {html.escape(best.source)}. "
                f"Task: **{task.name}**, vocabulary `{task.vocab.describe()}`.")
        examples = task.examples(8)
        max_new = task.problem.answer_len if task.problem is not None else 120
        return info, gr.update(choices=examples, value=examples[0]), gr.update(value=max_new), examples[0]

    @user_errors
    def sample(self, prompt, greedy, temperature, top_k, top_p, max_new_tokens, seed, session: Session):
        best = session.best
        if best is None:
            raise ValueError("there is no model to sample from yet: train one (tab 3) or upload a checkpoint")
        prompt = as_text(prompt, "the prompt")
        top_k_value = as_int(top_k, "top-k", minimum=0)
        top_p_value = as_float(top_p, "top-p")
        seed_text = (str(seed) if isinstance(seed, (int, float)) else as_text(seed, "the seed")).strip()
        config = SampleConfig(max_new_tokens=as_int(max_new_tokens, "max new tokens"),
                              temperature=as_float(temperature, "temperature"),
                              top_k=top_k_value or None, top_p=None if top_p_value >= 1 else top_p_value,
                              greedy=bool(greedy), seed=as_seed(seed_text) if seed_text else None)
        answer = core.sampling.sample_text(best.model, best.task, prompt, config.validate(self.limits), self.limits)
        origin = f"from the best model ({best.summary()})"
        expected = best.task.expected_answer(prompt)
        if expected is None:
            shown = [html.escape(t).replace("\n", "<br>") for t in (prompt, answer)]
            return f"**{shown[0]}**{shown[1]}\n\n<span class='tp-step-hint'>{origin}</span>"
        verdict = "✓ correct" if answer[: len(expected)] == expected else f"✗ expected `{expected}`"
        return (f"`{prompt}` → **`{answer}`** &nbsp; {verdict}\n\n"
                f"<span class='tp-step-hint'>{origin}</span>")

    @user_errors
    def save(self, session: Session):
        best = session.best
        if best is None:
            raise ValueError("there is no best model to save yet: train one first")
        folder = Path(tempfile.mkdtemp(prefix="tp-checkpoint-"))
        path = folder / f"{best.task.name}-best-epoch{best.epoch}.safetensors"
        # the summary keys the CLI writes and `core.checkpoint.load_checkpoint` reads back
        core.checkpoint.save_checkpoint(path, best.model, best.config, best.task,
                        {"best_epoch": best.epoch, "best_val_loss": best.val_loss,
                         "val_accuracy": best.val_accuracy})
        return str(path)

    @user_errors
    def upload(self, file, session: Session):
        if file is None:
            return (gr.skip(),) * 4 + (session,)
        name = Path(str(file)).name
        checkpoint = core.checkpoint.load_checkpoint(str(file), limits=self.limits)  # checks everything before building
        summary = checkpoint.summary
        session.adopt(BestModel(checkpoint.model, checkpoint.model_config, checkpoint.task,
                                summary["best_epoch"], summary["best_val_loss"], summary["val_accuracy"],
                                f"the uploaded file {name}"))
        return (*self.sample_tab(session), session)

    @user_errors
    def look_inside(self, text, session: Session):
        best = session.best
        if best is None:
            raise ValueError("there is no model to look inside yet: train one first")
        figure, length = core.figures.attention_figure_for(best.model, best.task, as_text(text, "the example"))
        return figure, core.figures.mask_figure(length)


HANDLER_NAMES = ("describe_model", "add_layer", "remove_layer", "apply_preset", "show_mask", "task_changed",
                 "train", "note_queued_run", "stop", "sample_tab", "sample", "save", "upload", "look_inside")


def make_handlers(limits: Limits) -> dict[str, Any]:
    """The page's event handlers for the hosting limits, by name."""
    handlers = PageHandlers(limits)
    return {name: getattr(handlers, name) for name in HANDLER_NAMES}


def _status_line(event: core.training.StepEvent, session: Session) -> str:
    best = session.best if event.history.best_epoch is not None else None  # this run's best only
    best_text = "" if best is None else f" · best val loss {best.val_loss:.4f} (epoch {best.epoch})"
    accuracy = "" if best is None or best.val_accuracy is None else f" · val accuracy {best.val_accuracy:.1%}"
    epochs = event.history.epochs
    speed = f" · {epochs[-1].tokens_per_s:,.0f} tokens/s" if epochs else ""
    return (f"Epoch {event.epoch} · step {event.step}/{event.total_steps} · loss {event.loss:.4f}{best_text}"
            f"{accuracy}{speed} · ~{event.seconds_left:.0f} s left")


def _final_status(result: core.training.FitResult, session: Session) -> str:
    marks = {"completed": "✓ Done", "solved": "✓ Solved", "early_stopping": "✓ Early stop", "stopped": "■ Stopped",
             "time_limit": "⏱ Time limit", "diverged": "⚠ Diverged"}
    text = f"**{marks[result.stop_reason]}**: {result.message}."
    if result.best_model is not None and session.best.val_accuracy is not None:
        text += f" Held-out exact match of the best model: **{session.best.val_accuracy:.1%}**."
    if result.best_model is not None:
        text += " Sample from it in tab 4."
    if result.stop_reason == "diverged":
        gr.Warning(result.message)
    return text


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------

def build_demo(limits: Limits | None = None) -> gr.Blocks:
    """The whole page. Limits come from PLAYGROUND_* environment variables over public-Space defaults."""
    limits = limits or Limits.from_env(Limits.public())
    handlers = make_handlers(limits)
    train_concurrency = _train_concurrency()
    warm_up_engine(train_concurrency)
    with gr.Blocks(title="Transformer Playground", delete_cache=(3600, 3600)) as demo:
        session = gr.State(Session())
        gr.Markdown("# Transformer Playground\nBuild a causal Transformer layer by layer, see its causal mask, "
                    "train it on a toy task while the loss curve draws itself, then sample from the best model.",
                    elem_id="tp-title")
        with gr.Tabs(elem_id="tabs"):
            build, mask, train = _build_tab(), _mask_tab(), _train_tab()
            sample, inside = _sample_tab(limits), _inside_tab()
        _wire_build(demo, handlers, build, mask, train, session)
        train_event = _wire_train(handlers, build, train, session, train_concurrency)
        _wire_sample(demo, handlers, train_event, sample, inside, session)
    demo.queue(default_concurrency_limit=8)
    return demo


def _train_concurrency() -> int:
    # 2 runs at once, one torch thread each on 2 vCPUs: one at a time left a core idle, and a
    # class of 30 pressing Train together finished in 218 s instead of 321 s (bench/classroom.py)
    return as_int(os.environ.get("PLAYGROUND_TRAIN_CONCURRENCY", "2"), "PLAYGROUND_TRAIN_CONCURRENCY", minimum=1)


def _build_tab() -> SimpleNamespace:
    with gr.Tab("1 · Build", id="build", elem_id="tab-build"), gr.Row():
        with gr.Column(scale=3):
            preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="preset", elem_id="preset")
            layers = gr.Dataframe(value=PRESETS[DEFAULT_PRESET]["layers"], headers=LAYER_HEADERS,
                                  datatype="number", column_count=(3, "fixed"), interactive=True, type="array",
                                  label="layers (one row per encoder layer, input at the top)",
                                  elem_id="layers-df")
            with gr.Row():
                add_btn = gr.Button("+ add layer", size="sm", elem_id="add-layer-btn")
                remove_btn = gr.Button("− remove last layer", size="sm", elem_id="remove-layer-btn")
            with gr.Row():
                model_type = gr.Radio(["configurable", "simple"], value="configurable", label="model",
                                      elem_id="model-type", info="simple = the seed's uniform SimpleTransformer")
                dropout = gr.Slider(0, 0.5, value=ModelConfig.dropout, step=0.05, label="dropout",
                                    elem_id="dropout")
            build_msg = gr.Markdown(elem_id="build-msg")
        with gr.Column(scale=4):
            param_total = gr.Markdown(elem_id="param-total")
            params = gr.Dataframe(headers=["part", "parameters"], interactive=False,
                                  label="parameters per part, in the order the input flows", elem_id="param-table")
            arch_plot = gr.Plot(label="widths through the stack", elem_id="arch-plot")
    return SimpleNamespace(preset=preset, layers=layers, add_btn=add_btn, remove_btn=remove_btn,
                           model_type=model_type, dropout=dropout, build_msg=build_msg, param_total=param_total,
                           params=params, arch_plot=arch_plot)


def _mask_tab() -> SimpleNamespace:
    with gr.Tab("2 · Mask", id="mask", elem_id="tab-mask"):
        gr.Markdown(
            "Row *i* is the token at position *i* predicting the next one; it may look at column *j* "
            "only if *j* ≤ *i*. `generate_square_subsequent_mask` puts `0` on and below the diagonal and "
            "`-inf` above it; added to the attention scores, `-inf` becomes a weight of exactly 0, so "
            "no token can read the future it is asked to predict.")
        length = gr.Slider(1, 32, value=11, step=1, label="sequence length", elem_id="mask-len")
        plot = gr.Plot(elem_id="mask-plot")
    return SimpleNamespace(length=length, plot=plot)


def _train_tab() -> SimpleNamespace:
    with gr.Tab("3 · Train", id="train", elem_id="tab-train"), gr.Row():
        with gr.Column(scale=2):
            tab = _task_widgets()
            with gr.Row():
                tab.epochs = gr.Number(TrainConfig.epochs, label="epochs (at most)", elem_id="epochs")
                tab.batch_size = gr.Number(TrainConfig.batch_size, label="batch size", elem_id="batch-size")
            with gr.Row():
                tab.lr = gr.Number(TrainConfig.lr, label="learning rate", elem_id="lr")
                tab.seed = gr.Number(0, label="seed", elem_id="seed")
                tab.patience = gr.Number(0, label="patience (0 = off)", elem_id="patience")
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
    kind = gr.Dropdown(list(TASK_HELP), value="sort", label="task", elem_id="task")
    task_help = gr.Markdown(TASK_HELP["sort"], elem_id="task-help")
    with gr.Row():
        seq_len = gr.Number(6, label="sequence length (digits)", elem_id="seq-len")
        num_digits = gr.Number(3, label="distinct digits", elem_id="num-digits")
    with gr.Row():
        train_size = gr.Number(2000, label="training examples per epoch", elem_id="train-size")
        val_size = gr.Number(200, label="held-out examples", elem_id="val-size")
    text = gr.Textbox(SAMPLE_TEXT, lines=6, max_lines=12, visible=False, label="your text (paste anything)",
                      elem_id="text")
    return SimpleNamespace(kind=kind, task_help=task_help, seq_len=seq_len, num_digits=num_digits,
                           train_size=train_size, val_size=val_size, text=text)


def _sample_tab(limits: Limits) -> SimpleNamespace:
    with gr.Tab("4 · Sample", id="sample", elem_id="tab-sample"):
        info = gr.Markdown("No model yet: train one (tab 3) or upload a checkpoint below.", elem_id="sample-info")
        with gr.Row():
            with gr.Column(scale=3):
                examples = gr.Dropdown([], label="held-out examples (pick one)", elem_id="examples",
                                       allow_custom_value=True)
                prompt = gr.Textbox(label="prompt", elem_id="prompt", placeholder="e.g. 210120")
                sample_btn = gr.Button("Sample", variant="primary", elem_id="sample-btn")
                output = gr.Markdown(elem_id="sample-output")
            with gr.Column(scale=2):
                settings = [
                    gr.Checkbox(True, label="greedy (always the likeliest token)", elem_id="greedy"),
                    gr.Slider(0, 2, value=1.0, step=0.05, label="temperature (0 = greedy)", elem_id="temperature"),
                    gr.Number(0, label="top-k (0 = off)", elem_id="top-k"),
                    gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (1 = off)", elem_id="top-p"),
                    gr.Slider(1, limits.max_new_tokens, value=6, step=1, label="max new tokens", elem_id="max-new"),
                    gr.Textbox("", label="sampling seed (empty = random)", elem_id="sample-seed"),
                ]
        with gr.Row():
            save_btn = gr.Button("Save best checkpoint (.safetensors)", elem_id="save-btn")
            checkpoint_file = gr.File(label="checkpoint to download", interactive=False, elem_id="checkpoint-file")
            upload_file = gr.File(label="upload a checkpoint to sample from", file_types=[".safetensors"],
                                  elem_id="upload-file")
    return SimpleNamespace(info=info, examples=examples, prompt=prompt, sample_btn=sample_btn, output=output,
                           settings=settings, max_new=settings[4], save_btn=save_btn,
                           checkpoint_file=checkpoint_file, upload_file=upload_file)


def _inside_tab() -> SimpleNamespace:
    with gr.Tab("5 · Look inside", id="inside", elem_id="tab-inside"):
        gr.Markdown("The best model's attention weights on one example, per layer and head. Every map is "
                    "zero above the diagonal: that is the causal mask at work.")
        with gr.Row():
            text = gr.Textbox(label="example (the model's own answer is appended)", elem_id="inside-text")
            button = gr.Button("Show attention", variant="primary", elem_id="inside-btn")
        with gr.Row():
            attention_plot = gr.Plot(elem_id="attention-plot", scale=3)
            mask_plot = gr.Plot(elem_id="inside-mask", scale=1)
    return SimpleNamespace(text=text, button=button, attention_plot=attention_plot, mask_plot=mask_plot)


def _wire_build(demo, h, build, mask, train, session) -> None:
    """The Build and Mask tabs: the parameter count follows every edit of the model or the task."""
    describe_inputs = [build.layers, build.model_type, build.dropout, train.kind, train.seq_len, train.num_digits,
                       train.text, session]
    describe_outputs = [build.params, build.param_total, build.arch_plot, build.build_msg, session]
    for component in (build.layers, build.model_type, build.dropout, train.kind, train.seq_len, train.num_digits):
        component.change(h["describe_model"], describe_inputs, describe_outputs, api_name=False,
                         show_progress="hidden", queue=False)
    train.text.blur(h["describe_model"], describe_inputs, describe_outputs, api_name=False, queue=False)
    demo.load(h["describe_model"], describe_inputs, describe_outputs, api_name="describe_model")
    demo.load(h["show_mask"], [mask.length], [mask.plot], api_name="mask")
    demo.load(lambda: core.figures.loss_figure(None), None, [train.loss_plot], api_name=False)
    build.add_btn.click(h["add_layer"], [build.layers], [build.layers], api_name="add_layer")
    build.remove_btn.click(h["remove_layer"], [build.layers], [build.layers], api_name="remove_layer")
    build.preset.input(h["apply_preset"], [build.preset], [build.layers, build.model_type], api_name="preset")
    mask.length.change(h["show_mask"], [mask.length], [mask.plot], api_name=False, show_progress="hidden")
    train.kind.input(h["task_changed"], [train.kind], [train.seq_len, train.num_digits, train.text, train.task_help],
                     api_name=False)


def _wire_train(h, build, train, session, train_concurrency: int):
    """Train streams into its own queue (a validator counts queued runs, so Stop reaches them); Stop
    shares no output with the stream."""
    inputs = [build.layers, build.model_type, build.dropout, train.kind, train.seq_len, train.num_digits,
              train.train_size, train.val_size, train.text, train.epochs, train.batch_size, train.lr, train.seed,
              train.patience, session, train.stop_when_solved]
    train_event = train.train_btn.click(
        h["train"], inputs, [train.loss_plot, train.status], api_name="train", concurrency_limit=train_concurrency,
        concurrency_id="train", validator=h["note_queued_run"], preprocess=False)  # raw values: core checks all
    train.stop_btn.click(h["stop"], [session], None, api_name="stop", concurrency_limit=None, queue=False)
    return train_event


def _wire_sample(demo, h, train_event, sample, inside, session) -> None:
    """The Sample and Look-inside tabs follow the session's best model, trained or uploaded."""
    sample_tab_outputs = [sample.info, sample.examples, sample.max_new, inside.text]
    train_event.then(h["sample_tab"], [session], sample_tab_outputs, api_name=False)
    sample.examples.change(lambda example: example, [sample.examples], [sample.prompt], api_name=False)
    sample_inputs = [sample.prompt, *sample.settings, session]
    sample.sample_btn.click(h["sample"], sample_inputs, [sample.output], api_name="sample")
    sample.prompt.submit(h["sample"], sample_inputs, [sample.output], api_name=False)
    sample.save_btn.click(h["save"], [session], [sample.checkpoint_file], api_name="save_checkpoint")
    sample.upload_file.upload(h["upload"], [sample.upload_file, session], [*sample_tab_outputs, session],
                              api_name="upload_checkpoint")
    inside.button.click(h["look_inside"], [inside.text, session], [inside.attention_plot, inside.mask_plot],
                        api_name="look_inside")
    demo.load(lambda: core.figures.empty_figure("Train a model, then press “Show attention”."), None,
              [inside.attention_plot], api_name=False)


def warm_up_engine(train_concurrency: int) -> None:
    """Load torch and the engine in the background, then give torch its threads.

    The page answers its first request before torch (~1 s of the start) is loaded; a request
    that needs the engine in that second waits for it on Python's import lock.
    """
    threading.Thread(target=lambda: core.training.configure_threads(train_concurrency),
                     name="engine-warm-up", daemon=True).start()


def launch_options() -> dict[str, Any]:
    """How the page is served; the tests launch with these too, so they see what visitors see.

    Each visitor's state holds models (up to ~12 MB at the public limits); Gradio frees it an hour
    after they leave, and keeps at most PLAYGROUND_MAX_SESSIONS (oldest evicted first).
    """
    sessions = as_int(os.environ.get("PLAYGROUND_MAX_SESSIONS", "500"), "PLAYGROUND_MAX_SESSIONS", minimum=1)
    return dict(css=(ASSETS / "style.css").read_text(), footer_links=["gradio"], run_history=False, show_error=True,
                state_session_capacity=sessions, max_file_size="64mb")


demo = build_demo()

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), **launch_options())
