"""Transformer Playground: the web page.

Thin wiring only. Each tab has a small builder; handlers turn widget values into core configs,
call core, and return figures and text. A core ValueError becomes a message on the page and
leaves the visitor's session (best model, curves) untouched. Everything a visitor owns lives in
one `Session` inside `gr.State`, so two browsers never see each other's models.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls to outside hosts, ever

import gradio as gr  # noqa: E402

from core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from core.config import (Limits, ModelConfig, SampleConfig, TaskConfig, TrainConfig,  # noqa: E402
                         as_float, as_int, parse_layer_rows)
from core.data import Task, make_task, task_vocab  # noqa: E402
from core.figures import (STREAM_UPDATES_PER_SECOND, architecture_figure,  # noqa: E402
                          attention_figure_for, empty_figure, loss_figure, mask_figure)
from core.sampling import sample_text  # noqa: E402
from core.training import (EpochEvent, FitResult, StepEvent, TrainingHistory,  # noqa: E402
                           configure_threads, format_epoch, train_task)

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


@dataclass
class Session:
    """One visitor's models and curves. Mutated in place; gr.State keeps it per browser session."""

    table_config: ModelConfig | None = None  # the layer table's last valid shape, shown on Build
    # The best model, its config and its task change together, never by editing the table, so
    # Save always writes the weights with the config they were trained under.
    best_model: Any = None
    best_config: ModelConfig | None = None
    task: Task | None = None
    best: dict[str, Any] = field(default_factory=dict)  # epoch, val_loss, val_accuracy, source
    history: TrainingHistory | None = None
    previous_history: TrainingHistory | None = None
    stop_requested: bool = False
    run_id: int = 0  # a new Train supersedes a run still going in this session


def user_errors(handler):
    """Show a core ValueError as a readable message on the page instead of a server error."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def wrapped_gen(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except ValueError as error:
                raise gr.Error(str(error), print_exception=False) from None
        return wrapped_gen

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None
    return wrapped


# ---------------------------------------------------------------------------------------------
# Widget values -> core configs
# ---------------------------------------------------------------------------------------------

def table_rows(table: Any) -> list[list[Any]]:
    """A Dataframe value (pandas from the page, dict or lists from the API) as plain rows."""
    if table is None:
        return []
    if isinstance(table, dict):
        return [list(r) for r in table.get("data", [])]
    if hasattr(table, "values") and hasattr(table, "columns"):
        return table.values.tolist()
    return [list(r) for r in table]


def task_config_from(kind, seq_len, num_digits, train_size, val_size, text, seed) -> TaskConfig:
    return TaskConfig(kind, as_int(seq_len, "sequence length"), as_int(num_digits, "digits"),
                      as_int(train_size, "train size"), as_int(val_size, "validation size"),
                      as_int(seed, "seed", minimum=0), text if kind == "text" else None)


def model_config_from(table, model_type, dropout, vocab_size: int, limits: Limits) -> ModelConfig:
    d_models, ffs, heads = parse_layer_rows(table_rows(table))
    return ModelConfig(vocab_size, d_models, ffs, heads, as_float(dropout, "dropout"), model_type).validate(limits)


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

def make_handlers(limits: Limits) -> dict[str, Any]:
    """The page's event handlers, closed over the hosting limits."""

    def describe_model(table, model_type, dropout, kind, seq_len, num_digits, text, session: Session):
        """Parameter table, total and width figure for the layer table; the last valid model stays."""
        try:
            vocab = task_vocab(TaskConfig(kind, as_int(seq_len, "sequence length"),
                                          as_int(num_digits, "digits"), text=text if kind == "text" else None))
            config = model_config_from(table, model_type, dropout, len(vocab), limits)
        except ValueError as error:
            kept = ""
            if session.table_config is not None:
                kept = (f" The last valid model ({session.table_config.num_layers} layers, "
                        f"{session.table_config.num_parameters():,} parameters) is still shown.")
            message = f"<span class='tp-error'>⚠ {error}</span>{kept}"
            return gr.skip(), gr.skip(), gr.skip(), message, session
        session.table_config = config
        rows = [[part, count] for part, count in config.parameter_breakdown()]
        projections = config.projection_positions()
        where = ", ".join(f"between layers {i} and {i + 1}" for i in projections) or "none (all widths equal)"
        total = (f"**{config.num_parameters():,} parameters** in {config.num_layers} layers "
                 f"(vocabulary of {config.vocab_size} for the {kind} task). Projections: {where}.")
        return rows, total, architecture_figure(config), "<span class='tp-ok'>✓ valid model</span>", session

    def add_layer(table):
        rows = table_rows(table)
        return rows + [list(rows[-1]) if rows else [48, 192, 3]]

    def remove_layer(table):
        rows = table_rows(table)
        return rows[:-1] if len(rows) > 1 else rows

    def apply_preset(name):
        preset = PRESETS[name]
        return [list(r) for r in preset["layers"]], preset["model_type"]

    def show_mask(length):
        return mask_figure(as_int(length, "mask length", minimum=1, maximum=64))

    def task_changed(kind):
        """Labels and visibility that follow the task; defaults that fit it."""
        is_text = kind == "text"
        seq_default = {"text": 32, "addition": 6}.get(kind, 6)
        return (gr.update(label="context length (characters)" if is_text else "sequence length (digits)",
                          value=seq_default, visible=kind != "addition"),
                gr.update(label="digits per number" if kind == "addition" else "distinct digits",
                          value=2 if kind == "addition" else 3, visible=not is_text),
                gr.update(visible=is_text), TASK_HELP[kind])

    @user_errors
    def train(table, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
              epochs, batch_size, lr, seed, patience, session: Session, progress=gr.Progress()):
        """Stream the loss curve and a status line while core's loop trains."""
        # Everything that can be wrong is checked before the session is touched.
        task = make_task(task_config_from(kind, seq_len, num_digits, train_size, val_size, text, seed), limits)
        model_config = model_config_from(table, model_type, dropout, len(task.vocab), limits)
        patience_value = as_int(patience, "patience", minimum=0)
        train_config = TrainConfig(epochs=as_int(epochs, "epochs"), batch_size=as_int(batch_size, "batch size"),
                                   lr=as_float(lr, "learning rate"), seed=as_int(seed, "seed", minimum=0),
                                   patience=patience_value or None).validate(limits)
        session.table_config = model_config
        if session.history is not None and session.history.step_losses:
            session.previous_history = session.history
        session.history = TrainingHistory()
        session.stop_requested = False
        session.run_id += 1
        this_run = session.run_id
        last_yield = 0.0
        status = "Starting…"
        should_stop = lambda: session.stop_requested or session.run_id != this_run  # noqa: E731
        for event in train_task(task, model_config, train_config, should_stop, limits):
            if isinstance(event, StepEvent):
                session.history = event.history
                if time.monotonic() - last_yield < 1 / STREAM_UPDATES_PER_SECOND:
                    continue
                progress((event.step, event.total_steps), desc="training", unit="steps")
                status = _status_line(event, session)
            elif isinstance(event, EpochEvent):
                if event.record.improved:
                    session.best_model, session.task, session.best_config = event.best_model, task, model_config
                    session.best = {"epoch": event.record.epoch, "val_loss": event.record.val_loss,
                                    "val_accuracy": event.record.val_accuracy, "source": "this session's training"}
                status = format_epoch(event)
            elif isinstance(event, FitResult):
                status = _final_status(event, session)
            last_yield = time.monotonic()
            yield loss_figure(session.history, session.previous_history), status

    def stop(session: Session):
        session.stop_requested = True

    def sample_tab(session: Session):
        """What the Sample and Look-inside tabs show for the session's best model."""
        if session.best_model is None:
            return ("No model yet: train one (tab 3) or upload a checkpoint below.", gr.update(choices=[]),
                    gr.skip(), gr.skip())
        task, best = session.task, session.best
        accuracy = "" if best.get("val_accuracy") is None else f", held-out exact match {best['val_accuracy']:.1%}"
        info = (f"Best model: **{_best_summary(best)}**{accuracy} — from {best.get('source')}. "
                f"Task: **{task.name}**, vocabulary `{task.vocab.describe()}`.")
        examples = task.examples(8)
        max_new = task.problem.answer_len if task.problem is not None else 120
        return info, gr.update(choices=examples, value=examples[0]), gr.update(value=max_new), examples[0]

    @user_errors
    def sample(prompt, greedy, temperature, top_k, top_p, max_new_tokens, seed, session: Session):
        if session.best_model is None:
            raise ValueError("there is no model to sample from yet: train one (tab 3) or upload a checkpoint")
        task = session.task
        top_k_value = as_int(top_k, "top-k", minimum=0)
        top_p_value = as_float(top_p, "top-p")
        seed_text = str(seed).strip() if seed is not None else ""
        config = SampleConfig(max_new_tokens=as_int(max_new_tokens, "max new tokens"),
                              temperature=as_float(temperature, "temperature"),
                              top_k=top_k_value or None, top_p=None if top_p_value >= 1 else top_p_value,
                              greedy=bool(greedy), seed=as_int(seed_text, "seed", minimum=0) if seed_text else None)
        answer = sample_text(session.best_model, task, prompt, config.validate(limits), limits)
        origin = f"from the best model ({_best_summary(session.best)})"
        expected = task.expected_answer(prompt)
        if expected is None:
            return f"**{_escape(prompt)}**{_escape(answer)}\n\n<span class='tp-step-hint'>{origin}</span>"
        verdict = "✓ correct" if answer[: len(expected)] == expected else f"✗ expected `{expected}`"
        return (f"`{prompt}` → **`{answer}`** &nbsp; {verdict}\n\n"
                f"<span class='tp-step-hint'>{origin}</span>")

    @user_errors
    def save(session: Session):
        if session.best_model is None:
            raise ValueError("there is no best model to save yet: train one first")
        folder = Path(tempfile.mkdtemp(prefix="tp-checkpoint-"))
        path = folder / f"{session.task.name}-best-epoch{session.best.get('epoch')}.safetensors"
        best = session.best  # the summary keys the CLI writes and `upload` reads back
        save_checkpoint(path, session.best_model, session.best_config, session.task,
                        {"best_epoch": best.get("epoch"), "best_val_loss": best.get("val_loss"),
                         "val_accuracy": best.get("val_accuracy")})
        return str(path)

    @user_errors
    def upload(file, session: Session):
        if file is None:
            return (gr.skip(),) * 4 + (session,)
        name = Path(str(file)).name
        checkpoint = load_checkpoint(str(file))
        session.best_model, session.task, session.best_config = checkpoint.model, checkpoint.task, checkpoint.model_config
        summary = checkpoint.summary
        session.best = {"epoch": summary.get("best_epoch"), "val_loss": summary.get("best_val_loss"),
                        "val_accuracy": summary.get("val_accuracy"), "source": f"the uploaded file {name}"}
        return (*sample_tab(session), session)

    @user_errors
    def look_inside(text, session: Session):
        if session.best_model is None:
            raise ValueError("there is no model to look inside yet: train one first")
        figure, length = attention_figure_for(session.best_model, session.task, text)
        return figure, mask_figure(length)

    return dict(describe_model=describe_model, add_layer=add_layer, remove_layer=remove_layer,
                apply_preset=apply_preset, show_mask=show_mask, task_changed=task_changed, train=train,
                stop=stop, sample_tab=sample_tab, sample=sample, save=save, upload=upload, look_inside=look_inside)


def _best_summary(best: dict[str, Any]) -> str:
    """'epoch 12, validation loss 0.0123', saying 'unknown' for what an uploaded file left out."""
    epoch = best.get("epoch")
    loss = best.get("val_loss")
    loss_text = f"{loss:.4f}" if isinstance(loss, (int, float)) and math.isfinite(loss) else "unknown"
    return f"epoch {epoch if epoch is not None else 'unknown'}, validation loss {loss_text}"


def _status_line(event: StepEvent, session: Session) -> str:
    best = session.best
    best_text = "" if session.best_model is None or "epoch" not in best else \
        f" · best val loss {best['val_loss']:.4f} (epoch {best['epoch']})"
    accuracy = "" if best.get("val_accuracy") is None else f" · val accuracy {best['val_accuracy']:.1%}"
    epochs = event.history.epochs
    speed = f" · {epochs[-1].tokens_per_s:,.0f} tokens/s" if epochs else ""
    return (f"Epoch {event.epoch} · step {event.step}/{event.total_steps} · loss {event.loss:.4f}{best_text}"
            f"{accuracy}{speed} · ~{event.seconds_left:.0f} s left")


def _final_status(result: FitResult, session: Session) -> str:
    marks = {"completed": "✓ Done", "early_stopping": "✓ Early stop", "stopped": "■ Stopped",
             "time_limit": "⏱ Time limit", "diverged": "⚠ Diverged"}
    text = f"**{marks[result.stop_reason]}**: {result.message}."
    if session.best.get("val_accuracy") is not None and result.best_model is not None:
        text += f" Held-out exact match of the best model: **{session.best['val_accuracy']:.1%}**."
    if result.best_model is not None:
        text += " Sample from it in tab 4."
    if result.stop_reason == "diverged":
        gr.Warning(result.message)
    return text


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------

def build_demo(limits: Limits | None = None) -> gr.Blocks:
    """The whole page. Limits come from PLAYGROUND_* environment variables over public-Space defaults."""
    limits = limits or Limits.from_env(Limits.public())
    h = make_handlers(limits)
    train_concurrency = as_int(os.environ.get("PLAYGROUND_TRAIN_CONCURRENCY", "1"),
                               "PLAYGROUND_TRAIN_CONCURRENCY", minimum=1)
    configure_threads(train_concurrency)  # leave a core for serving pages
    with gr.Blocks(title="Transformer Playground", delete_cache=(3600, 3600)) as demo:
        session = gr.State(Session())
        gr.Markdown("# Transformer Playground\nBuild a causal Transformer layer by layer, see its causal mask, "
                    "train it on a toy task while the loss curve draws itself, then sample from the best model.",
                    elem_id="tp-title")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("1 · Build", id="build", elem_id="tab-build"):
                with gr.Row():
                    with gr.Column(scale=3):
                        preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="preset", elem_id="preset")
                        layers = gr.Dataframe(value=PRESETS[DEFAULT_PRESET]["layers"], headers=LAYER_HEADERS,
                                              datatype="number", column_count=(3, "fixed"), interactive=True,
                                              label="layers (one row per encoder layer, input at the top)",
                                              elem_id="layers-df")
                        with gr.Row():
                            add_btn = gr.Button("+ add layer", size="sm", elem_id="add-layer-btn")
                            remove_btn = gr.Button("− remove last layer", size="sm", elem_id="remove-layer-btn")
                        with gr.Row():
                            model_type = gr.Radio(["configurable", "simple"], value="configurable",
                                                  label="model", elem_id="model-type",
                                                  info="simple = the seed's uniform SimpleTransformer")
                            dropout = gr.Slider(0, 0.5, value=0.1, step=0.05, label="dropout", elem_id="dropout")
                        build_msg = gr.Markdown(elem_id="build-msg")
                    with gr.Column(scale=4):
                        param_total = gr.Markdown(elem_id="param-total")
                        params = gr.Dataframe(headers=["part", "parameters"], interactive=False,
                                              label="parameters per part, in the order the input flows",
                                              elem_id="param-table")
                        arch_plot = gr.Plot(label="widths through the stack", elem_id="arch-plot")
            with gr.Tab("2 · Mask", id="mask", elem_id="tab-mask"):
                gr.Markdown(
                    "Row *i* is the token at position *i* predicting the next one; it may look at column *j* "
                    "only if *j* ≤ *i*. `generate_square_subsequent_mask` puts `0` on and below the diagonal and "
                    "`-inf` above it; added to the attention scores, `-inf` becomes a weight of exactly 0, so "
                    "no token can read the future it is asked to predict.")
                mask_len = gr.Slider(1, 32, value=11, step=1, label="sequence length", elem_id="mask-len")
                mask_plot = gr.Plot(elem_id="mask-plot")
            with gr.Tab("3 · Train", id="train", elem_id="tab-train"):
                with gr.Row():
                    with gr.Column(scale=2):
                        kind = gr.Dropdown(list(TASK_HELP), value="sort", label="task", elem_id="task")
                        task_help = gr.Markdown(TASK_HELP["sort"], elem_id="task-help")
                        with gr.Row():
                            seq_len = gr.Number(6, precision=0, label="sequence length (digits)", elem_id="seq-len")
                            num_digits = gr.Number(3, precision=0, label="distinct digits", elem_id="num-digits")
                        with gr.Row():
                            train_size = gr.Number(2000, precision=0, label="training examples per epoch",
                                                   elem_id="train-size")
                            val_size = gr.Number(200, precision=0, label="held-out examples", elem_id="val-size")
                        text = gr.Textbox(SAMPLE_TEXT, lines=6, max_lines=12, visible=False,
                                          label="your text (paste anything)", elem_id="text")
                        with gr.Row():
                            epochs = gr.Number(60, precision=0, label="epochs", elem_id="epochs")
                            batch_size = gr.Number(64, precision=0, label="batch size", elem_id="batch-size")
                        with gr.Row():
                            lr = gr.Number(3e-3, label="learning rate", elem_id="lr")
                            seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
                            patience = gr.Number(0, precision=0, label="patience (0 = off)", elem_id="patience")
                        with gr.Row():
                            train_btn = gr.Button("Train", variant="primary", elem_id="train-btn")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
                    with gr.Column(scale=3):
                        status = gr.Markdown("Press **Train**. The loss curve draws itself as the model learns.",
                                             elem_id="train-status")
                        loss_plot = gr.Plot(elem_id="loss-plot")
            with gr.Tab("4 · Sample", id="sample", elem_id="tab-sample"):
                sample_info = gr.Markdown("No model yet: train one (tab 3) or upload a checkpoint below.",
                                          elem_id="sample-info")
                with gr.Row():
                    with gr.Column(scale=3):
                        examples = gr.Dropdown([], label="held-out examples (pick one)", elem_id="examples",
                                               allow_custom_value=True)
                        prompt = gr.Textbox(label="prompt", elem_id="prompt", placeholder="e.g. 210120")
                        sample_btn = gr.Button("Sample", variant="primary", elem_id="sample-btn")
                        sample_out = gr.Markdown(elem_id="sample-output")
                    with gr.Column(scale=2):
                        greedy = gr.Checkbox(True, label="greedy (always the likeliest token)", elem_id="greedy")
                        temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature (0 = greedy)",
                                                elem_id="temperature")
                        top_k = gr.Number(0, precision=0, label="top-k (0 = off)", elem_id="top-k")
                        top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (1 = off)", elem_id="top-p")
                        max_new = gr.Slider(1, limits.max_new_tokens, value=6, step=1, label="max new tokens",
                                            elem_id="max-new")
                        sample_seed = gr.Textbox("", label="sampling seed (empty = random)", elem_id="sample-seed")
                with gr.Row():
                    save_btn = gr.Button("Save best checkpoint (.safetensors)", elem_id="save-btn")
                    checkpoint_file = gr.File(label="checkpoint to download", interactive=False,
                                              elem_id="checkpoint-file")
                    upload_file = gr.File(label="upload a checkpoint to sample from", file_types=[".safetensors"],
                                          elem_id="upload-file")
            with gr.Tab("5 · Look inside", id="inside", elem_id="tab-inside"):
                gr.Markdown("The best model's attention weights on one example, per layer and head. Every map is "
                            "zero above the diagonal: that is the causal mask at work.")
                with gr.Row():
                    inside_text = gr.Textbox(label="example (the model's own answer is appended)", elem_id="inside-text")
                    inside_btn = gr.Button("Show attention", variant="primary", elem_id="inside-btn")
                with gr.Row():
                    attention_plot = gr.Plot(elem_id="attention-plot", scale=3)
                    inside_mask = gr.Plot(elem_id="inside-mask", scale=1)

        # ---- wiring ------------------------------------------------------------------------
        describe_inputs = [layers, model_type, dropout, kind, seq_len, num_digits, text, session]
        describe_outputs = [params, param_total, arch_plot, build_msg, session]
        for component in (layers, model_type, dropout, kind, seq_len, num_digits):
            component.change(h["describe_model"], describe_inputs, describe_outputs, api_name=False,
                             show_progress="hidden", queue=False)
        text.blur(h["describe_model"], describe_inputs, describe_outputs, api_name=False, queue=False)
        demo.load(h["describe_model"], describe_inputs, describe_outputs, api_name="describe_model")
        demo.load(h["show_mask"], [mask_len], [mask_plot], api_name="mask")
        demo.load(lambda: loss_figure(None), None, [loss_plot], api_name=False)
        add_btn.click(h["add_layer"], [layers], [layers], api_name="add_layer")
        remove_btn.click(h["remove_layer"], [layers], [layers], api_name="remove_layer")
        preset.input(h["apply_preset"], [preset], [layers, model_type], api_name="preset")
        mask_len.change(h["show_mask"], [mask_len], [mask_plot], api_name=False, show_progress="hidden")
        kind.input(h["task_changed"], [kind], [seq_len, num_digits, text, task_help], api_name=False)

        train_event = train_btn.click(
            h["train"], [layers, model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
                         epochs, batch_size, lr, seed, patience, session],
            [loss_plot, status], api_name="train", concurrency_limit=train_concurrency, concurrency_id="train")
        stop_btn.click(h["stop"], [session], None, api_name="stop", concurrency_limit=None, queue=False)
        sample_tab_outputs = [sample_info, examples, max_new, inside_text]
        train_event.then(h["sample_tab"], [session], sample_tab_outputs, api_name=False)
        examples.change(lambda example: example, [examples], [prompt], api_name=False)
        sample_btn.click(h["sample"], [prompt, greedy, temperature, top_k, top_p, max_new, sample_seed, session],
                         [sample_out], api_name="sample")
        prompt.submit(h["sample"], [prompt, greedy, temperature, top_k, top_p, max_new, sample_seed, session],
                      [sample_out], api_name=False)
        save_btn.click(h["save"], [session], [checkpoint_file], api_name="save_checkpoint")
        upload_file.upload(h["upload"], [upload_file, session], [*sample_tab_outputs, session],
                           api_name="upload_checkpoint")
        inside_btn.click(h["look_inside"], [inside_text, session], [attention_plot, inside_mask],
                         api_name="look_inside")
        demo.load(lambda: empty_figure("Train a model, then press “Show attention”."), None, [attention_plot],
                  api_name=False)
    demo.queue(default_concurrency_limit=8)
    return demo


def launch_options() -> dict[str, Any]:
    """How the page is served; the tests launch with these too, so they see what visitors see.

    Each visitor's state holds models (up to ~12 MB at the public limits); Gradio frees it an hour
    after they leave, and keeps at most PLAYGROUND_MAX_SESSIONS (oldest evicted first).
    """
    sessions = as_int(os.environ.get("PLAYGROUND_MAX_SESSIONS", "500"), "PLAYGROUND_MAX_SESSIONS", minimum=1)
    return dict(css=(ASSETS / "style.css").read_text(), footer_links=["gradio"], run_history=False,
                state_session_capacity=sessions, max_file_size="64mb")


demo = build_demo()

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), **launch_options())
