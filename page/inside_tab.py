"""Tab 5, Look inside: the best model's attention maps on one example, how they formed while it
trained, and a causality check that proves what the mask does."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

import core
from core.config import as_int, as_text

from .inputs import user_errors
from .session import SNAPSHOT_MAX_TOKENS, Session

EMPTY_MESSAGE = "Train a model, then press “Show attention”."
NOTICE = ("**What to notice.** Every map is zero above the diagonal: that is the causal mask at work. Slide "
          "through training to watch the heads of the sort model form: first blurred, then each answer "
          "position looking at the prompt digits it needs. The causality check changes one token and shows "
          "how far every position's prediction moves: with the mask, the positions before it move by "
          "exactly 0.")


def _best(session: Session):
    if session.best is None:
        raise ValueError("there is no model to look inside yet: train one first")
    return session.best


@user_errors
def look_inside(text, session: Session):
    best = _best(session)
    maps, tokens = core.sampling.attention_on_example(best.model, best.task, as_text(text, "the example"))
    return core.figures.attention_figure(maps, tokens), core.figures.mask_figure(len(tokens))


@user_errors
def attention_over_training(snapshot, session: Session):
    """The attention maps kept when the model improved for the `snapshot`-th time (1 = the first)."""
    kept = session.attention_over_training
    if not kept:
        raise ValueError("no maps were kept: they are taken while a model trains in this session, for "
                         f"inputs of at most {SNAPSHOT_MAX_TOKENS} tokens")
    index = as_int(snapshot, "snapshot", minimum=1, maximum=len(kept))
    epoch, maps, tokens = kept[index - 1]
    figure = core.figures.attention_figure(maps, tokens)
    title = f"Attention at epoch {epoch} (snapshot {index} of {len(kept)}), on {''.join(tokens)!r}"
    figure.update_layout(title_text=title)
    return figure


@user_errors
def causality_check(text, position, session: Session):
    """Change the token at `position` of the example to the next one in the vocabulary; chart how far
    each position's prediction moved, and say it in numbers (an exact 0 printed as 0)."""
    best = _best(session)
    text = as_text(text, "the example")[: best.task.block_size]
    if len(text) < 2:
        raise ValueError("the example needs at least 2 characters: one to change and one before it")
    ids = best.task.vocab.encode(text)
    where = as_int(position, "position to change", minimum=0, maximum=len(text) - 1)
    new_id = (ids[where] + 1) % len(best.task.vocab)
    changes = core.probes.causality_check(best.model, ids, where, new_id)
    new_token = best.task.vocab.tokens[new_id]
    numbers = " · ".join(f"{i}: {'0' if c == 0 else f'{c:.3g}'}" for i, c in enumerate(changes))
    before = changes[:where]
    if not before:
        verdict = "Nothing comes before position 0: choose a later position to see the mask at work."
    elif all(c == 0 for c in before):
        verdict = f"Every position before {where} moved by exactly 0: with the mask they cannot read it."
    else:
        verdict = (f"{sum(c > 0 for c in before)} of the {where} positions before {where} moved: without the "
                   "mask they read the tokens after them.")
    masked = "with" if best.config.causal else "**without**"
    return (core.figures.causality_figure(changes, list(text), where, new_token),
            f"The best model ({masked} the causal mask), position {where} changed from `{text[where]}` to "
            f"`{new_token}`. How far each position's prediction moved: {numbers}.\n\n**{verdict}**")


def snapshot_slider(session: Session):
    """The snapshot slider spans the maps this session's latest run kept (a slider needs two stops)."""
    count = len(session.attention_over_training)
    return gr.update(maximum=max(count, 2), value=max(count, 1), interactive=count > 1)


def widgets() -> SimpleNamespace:
    with gr.Tab("5 · Look inside", id="inside", elem_id="tab-inside"):
        gr.Markdown(NOTICE, elem_id="inside-notice")
        with gr.Row():
            text = gr.Textbox(label="example (the model's own answer is appended)", elem_id="inside-text")
            button = gr.Button("Show attention", variant="primary", elem_id="inside-btn")
        with gr.Row():
            attention_plot = gr.Plot(elem_id="attention-plot", scale=3)
            mask_plot = gr.Plot(elem_id="inside-mask", scale=1)
        snapshot = gr.Slider(1, 2, value=1, step=1, label="attention while it trained: snapshot (one per "
                             "improvement of the validation loss)", elem_id="attention-snapshot", interactive=False)
        with gr.Row():
            position = gr.Number(2, label="position to change (0 = first)", elem_id="causality-position")
            check_btn = gr.Button("Causality check: change one token", elem_id="causality-btn")
        causality_plot = gr.Plot(elem_id="causality-plot")
        causality_text = gr.Markdown(elem_id="causality-text")
    return SimpleNamespace(text=text, button=button, attention_plot=attention_plot, mask_plot=mask_plot,
                           snapshot=snapshot, position=position, check_btn=check_btn,
                           causality_plot=causality_plot, causality_text=causality_text)


def wire(demo: gr.Blocks, training: list, inside: SimpleNamespace, session: gr.State) -> None:
    inside.button.click(look_inside, [inside.text, session], [inside.attention_plot, inside.mask_plot],
                        api_name="look_inside")
    demo.load(lambda: core.figures.empty_figure(EMPTY_MESSAGE), None, [inside.attention_plot],
              api_visibility="private")
    for event in training:
        event.then(snapshot_slider, [session], [inside.snapshot], api_visibility="private")
    inside.snapshot.release(attention_over_training, [inside.snapshot, session], [inside.attention_plot],
                            api_name="attention_over_training")
    inside.check_btn.click(causality_check, [inside.text, inside.position, session],
                           [inside.causality_plot, inside.causality_text], api_name="causality_check")
