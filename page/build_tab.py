"""Tab 1, Build: the layer table, presets, and the parameter count that follows every edit."""

from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr

import core
from core.config import DEFAULT_LAYERS, Limits, ModelConfig, TaskConfig, as_text
from core.tasks import task_kind

from .inputs import DEFAULT_PRESET, LAYER_HEADERS, PRESETS, model_config_from, table_rows, user_errors, with_limits
from .session import Session


@user_errors
def describe_model(table, model_type, dropout, kind, seq_len, num_digits, text, session: Session, *,
                   limits: Limits):
    """Parameter table, total and width figure for the layer table; the last valid model stays."""
    try:
        task_config = TaskConfig(kind, seq_len, num_digits,
                                 text=as_text(text, "the text") if task_kind(kind).needs_text else None)
        vocab = core.data.task_vocab(task_config.validate(limits))
        config = model_config_from(table, model_type, dropout, len(vocab)).validate(limits)
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
def add_layer(table, *, limits: Limits):
    rows = table_rows(table)
    if len(rows) >= limits.max_layers:
        raise ValueError(f"the model already has {len(rows)} layers, the most this page allows")
    return rows + [list(rows[-1]) if rows and isinstance(rows[-1], list) else list(DEFAULT_LAYERS[-1])]


@user_errors
def remove_layer(table):
    rows = table_rows(table)
    return rows[:-1] if len(rows) > 1 else rows


@user_errors
def apply_preset(name):
    if name not in PRESETS:
        raise ValueError(f"there is no preset called {name!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return [list(r) for r in preset["layers"]], preset["model_type"]


NOTICE = ("**What to notice.** Each row is one encoder layer with its own width. Where the width changes, "
          "a `Linear` projection joins the two layers: the parts table shows it and what it costs. Most "
          "parameters sit in the feed-forward widths, not in attention.")


def widgets() -> SimpleNamespace:
    with gr.Tab("1 · Build", id="build", elem_id="tab-build"):
        gr.Markdown(NOTICE, elem_id="build-notice")
        return _widgets()


def _widgets() -> SimpleNamespace:
    with gr.Row():
        with gr.Column(scale=3):
            preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="preset", elem_id="preset")
            layers = gr.Dataframe(value=[list(layer) for layer in DEFAULT_LAYERS], headers=LAYER_HEADERS,
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


def wire(demo: gr.Blocks, build: SimpleNamespace, task: SimpleNamespace, session: gr.State, limits: Limits) -> None:
    """The parameter count follows every edit of the model or of the task (which sizes the vocabulary)."""
    describe = with_limits(describe_model, limits)
    inputs = [build.layers, build.model_type, build.dropout, task.kind, task.seq_len, task.num_digits, task.text,
              session]
    outputs = [build.params, build.param_total, build.arch_plot, build.build_msg, session]
    gr.on([c.change for c in (build.layers, build.model_type, build.dropout, task.kind, task.seq_len,
                              task.num_digits)] + [task.text.blur],
          describe, inputs, outputs, api_visibility="private", show_progress="hidden", queue=False)
    demo.load(describe, inputs, outputs, api_name="describe_model")
    build.add_btn.click(with_limits(add_layer, limits), [build.layers], [build.layers], api_name="add_layer")
    build.remove_btn.click(remove_layer, [build.layers], [build.layers], api_name="remove_layer")
    build.preset.input(apply_preset, [build.preset], [build.layers, build.model_type], api_name="preset")
