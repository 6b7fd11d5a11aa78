"""Tab 5, Look inside: the best model's attention maps on one example, beside the causal mask."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

import core
from core.config import as_text

from .inputs import user_errors
from .session import Session

EMPTY_MESSAGE = "Train a model, then press “Show attention”."


@user_errors
def look_inside(text, session: Session):
    best = session.best
    if best is None:
        raise ValueError("there is no model to look inside yet: train one first")
    maps, tokens = core.sampling.attention_on_example(best.model, best.task, as_text(text, "the example"))
    return core.figures.attention_figure(maps, tokens), core.figures.mask_figure(len(tokens))


def widgets() -> SimpleNamespace:
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


def wire(demo: gr.Blocks, inside: SimpleNamespace, session: gr.State) -> None:
    inside.button.click(look_inside, [inside.text, session], [inside.attention_plot, inside.mask_plot],
                        api_name="look_inside")
    demo.load(lambda: core.figures.empty_figure(EMPTY_MESSAGE), None, [inside.attention_plot],
              api_visibility="private")
