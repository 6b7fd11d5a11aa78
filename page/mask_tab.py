"""Tab 2, Mask: the causal mask `generate_square_subsequent_mask` makes, at any length."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

import core
from core.config import TaskConfig, as_int
from core.tasks import make_problem

from .inputs import user_errors

MAX_SHOWN_LENGTH = 64
DEFAULT_LENGTH = make_problem(TaskConfig().validate()).block_size  # the default task's model inputs


@user_errors
def show_mask(length):
    return core.figures.mask_figure(as_int(length, "mask length", minimum=1, maximum=MAX_SHOWN_LENGTH))


def widgets() -> SimpleNamespace:
    with gr.Tab("2 · Mask", id="mask", elem_id="tab-mask"):
        gr.Markdown(
            "**What to notice.** Row *i* is the token at position *i* predicting the next one; it may look "
            "at column *j* only if *j* ≤ *i*. `generate_square_subsequent_mask` puts `0` on and below the "
            "diagonal and `-inf` above it; added to the attention scores, `-inf` becomes a weight of exactly "
            "0, so no token can read the future it is asked to predict. The lesson *Why the mask* trains "
            "without it.", elem_id="mask-notice")
        length = gr.Slider(1, 32, value=DEFAULT_LENGTH, step=1, label="sequence length", elem_id="mask-len")
        plot = gr.Plot(elem_id="mask-plot")
    return SimpleNamespace(length=length, plot=plot)


def wire(demo: gr.Blocks, mask: SimpleNamespace) -> None:
    demo.load(show_mask, [mask.length], [mask.plot], api_name="mask")
    mask.length.change(show_mask, [mask.length], [mask.plot], api_visibility="private", show_progress="hidden")
