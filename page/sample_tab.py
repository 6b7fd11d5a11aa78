"""Tab 4, Sample: answers from the session's best model, trained here or uploaded, and its checkpoint."""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

import core
from core.config import Limits, SampleConfig, as_float, as_int, as_seed, as_text

from . import files, share
from .inputs import user_errors, with_limits
from .session import KeptModel, Session

NO_MODEL = "No model yet: train one (tab 3) or upload a checkpoint below."
NOTICE = ("**What to notice.** Answers come from the best model training kept, one token at a time, each "
          "token chosen from the model's prediction (greedy takes the likeliest). *Best vs last model* asks "
          "the model as training left it too: after overfitting it answers worse than the kept one.")


@user_errors
def describe_best(session: Session):
    """What the Sample and Look-inside tabs show for the session's best model."""
    best = session.best
    if best is None:
        return NO_MODEL, gr.update(choices=[]), gr.skip(), gr.skip()
    task = best.task
    accuracy = "" if best.val_accuracy is None else f", held-out exact match {best.val_accuracy:.1%}"
    info = (f"Best model: **{best.summary()}**{accuracy} — from {html.escape(best.source)}. "
            f"Task: **{task.name}**, vocabulary `{task.vocab.describe()}`.")
    examples = task.examples(8)
    return info, gr.update(choices=examples, value=examples[0]), gr.update(value=task.sample_tokens), examples[0]


def sample_config_from(greedy, temperature, top_k, top_p, max_new_tokens, seed) -> SampleConfig:
    top_k_value, top_p_value = as_int(top_k, "top-k", minimum=0), as_float(top_p, "top-p")
    seed_text = (str(seed) if isinstance(seed, (int, float)) else as_text(seed, "the seed")).strip()
    return SampleConfig(max_new_tokens=as_int(max_new_tokens, "max new tokens"),
                        temperature=as_float(temperature, "temperature"),
                        top_k=top_k_value or None, top_p=None if top_p_value >= 1 else top_p_value,
                        greedy=bool(greedy), seed=as_seed(seed_text) if seed_text else None)


def _sample_config(session: Session, greedy, temperature, top_k, top_p, max_new_tokens, seed,
                   limits: Limits) -> SampleConfig:
    """The sampling widgets as a config, held to the page's limits and to what its link locked."""
    share.check_locks(session, dict(zip(share.SETTINGS[-6:], (greedy, temperature, top_k, top_p, max_new_tokens,
                                                               seed))))
    config = sample_config_from(greedy, temperature, top_k, top_p, max_new_tokens, seed)
    return config.validate(share.page_limits(session, limits))


def _answer(kept: KeptModel, prompt: str, config: SampleConfig, limits: Limits) -> tuple[str, str]:
    """A kept model's answer to a prompt, and a verdict where the task knows the right answer."""
    answer = core.sampling.sample_text(kept.model, kept.task, prompt, config, limits)
    expected = kept.task.expected_answer(prompt)
    if expected is None:
        return answer, ""
    return answer, "✓ correct" if answer[: len(expected)] == expected else f"✗ expected `{expected}`"


@user_errors
def sample(prompt, greedy, temperature, top_k, top_p, max_new_tokens, seed, session: Session, *, limits: Limits):
    best = session.best
    if best is None:
        raise ValueError("there is no model to sample from yet: train one (tab 3) or upload a checkpoint")
    prompt = as_text(prompt, "the prompt")
    config = _sample_config(session, greedy, temperature, top_k, top_p, max_new_tokens, seed, limits)
    answer, verdict = _answer(best, prompt, config, limits)
    origin = f"<span class='tp-step-hint'>from the best model ({best.summary()})</span>"
    if not verdict:
        shown = [html.escape(t).replace("\n", "<br>") for t in (prompt, answer)]
        return f"**{shown[0]}**{shown[1]}\n\n{origin}"
    return f"`{prompt}` → **`{answer}`** &nbsp; {verdict}\n\n{origin}"


@user_errors
def sample_best_and_last(prompt, greedy, temperature, top_k, top_p, max_new_tokens, seed, session: Session, *,
                         limits: Limits):
    """The same prompt and settings through the best model and the last one, side by side."""
    if session.best is None or session.last is None:
        raise ValueError("there is no last model to compare with: train a model in this session (tab 3); "
                         "an uploaded checkpoint holds only its best model")
    prompt = as_text(prompt, "the prompt")
    config = _sample_config(session, greedy, temperature, top_k, top_p, max_new_tokens, seed, limits)
    columns = [(kept, *_answer(kept, prompt, config, limits)) for kept in (session.best, session.last)]
    rows = (("epoch", lambda kept, answer, verdict: str(kept.epoch)),
            ("validation loss", lambda kept, answer, verdict: f"{kept.val_loss:.4f}"),
            ("held-out exact match", lambda kept, answer, verdict: kept.exact_match()),
            (f"answer to `{html.escape(prompt)}`", lambda kept, answer, verdict: f"`{html.escape(answer)}` {verdict}"))
    lines = ["| | best model | last model |", "|---|---|---|"]
    lines += [f"| {label} | " + " | ".join(cell(*column) for column in columns) + " |" for label, cell in rows]
    return "\n".join(lines)


@user_errors
def save(session: Session, request: gr.Request = None):
    best = session.best
    if best is None:
        raise ValueError("there is no best model to save yet: train one first")
    path = files.fresh_folder(request, "checkpoint") / f"{best.task.name}-best-epoch{best.epoch}.safetensors"
    # the summary keys the CLI writes and `core.checkpoint.load_checkpoint` reads back
    core.checkpoint.save_checkpoint(path, best.model, best.config, best.task,
                                    {"best_epoch": best.epoch, "best_val_loss": best.val_loss,
                                     "val_accuracy": best.val_accuracy})
    return str(path)


@user_errors
def export_code(session: Session, request: gr.Request = None):
    """The best model as one standalone .py file (torch and safetensors only), to run with Save's checkpoint."""
    best = session.best
    if best is None:
        raise ValueError("there is no model to export yet: train one first")
    path = files.fresh_folder(request, "code") / "model.py"
    path.write_text(core.export.export_code(best.config, best.task, path.name))
    return str(path)


@user_errors
def upload(file, session: Session, *, limits: Limits):
    if file is None:
        return (gr.skip(),) * 4 + (session,)
    checkpoint = core.checkpoint.load_checkpoint(str(file), limits=limits)  # checks everything before building
    summary = checkpoint.summary
    session.adopt_upload(KeptModel(checkpoint.model, checkpoint.model_config, checkpoint.task, summary["best_epoch"],
                            summary["best_val_loss"], summary["val_accuracy"],
                            f"the uploaded file {Path(str(file)).name}"))
    return (*describe_best(session), session)


def widgets(limits: Limits) -> SimpleNamespace:
    with gr.Tab("4 · Sample", id="sample", elem_id="tab-sample"):
        gr.Markdown(NOTICE, elem_id="sample-notice")
        info = gr.Markdown(NO_MODEL, elem_id="sample-info")
        with gr.Row():
            with gr.Column(scale=3):
                examples = gr.Dropdown([], label="held-out examples (pick one)", elem_id="examples",
                                       allow_custom_value=True)
                prompt = gr.Textbox(label="prompt", elem_id="prompt", placeholder="e.g. 210120")
                with gr.Row():
                    sample_btn = gr.Button("Sample", variant="primary", elem_id="sample-btn")
                    compare_btn = gr.Button("Best vs last model", elem_id="compare-btn")
                output = gr.Markdown(elem_id="sample-output")
                compare = gr.Markdown(elem_id="compare-output")
            with gr.Column(scale=2):
                settings = _settings(limits)
        with gr.Row():
            with gr.Column():
                save_btn = gr.Button("Save best checkpoint (.safetensors)", elem_id="save-btn")
                export_btn = gr.Button("Download as PyTorch code (.py)", elem_id="export-btn")
            checkpoint_file = gr.File(label="checkpoint to download", interactive=False, elem_id="checkpoint-file")
            code_file = gr.File(label="the model as code: python model.py --checkpoint <checkpoint> --prompt ...",
                                interactive=False, elem_id="code-file")
            upload_file = gr.File(label="upload a checkpoint to sample from", file_types=[".safetensors"],
                                  elem_id="upload-file")
    return SimpleNamespace(info=info, examples=examples, prompt=prompt, sample_btn=sample_btn, output=output,
                           compare_btn=compare_btn, compare=compare,
                           settings=settings, max_new=settings[4], save_btn=save_btn,
                           checkpoint_file=checkpoint_file, upload_file=upload_file, export_btn=export_btn,
                           code_file=code_file)


def _settings(limits: Limits) -> list:
    """The sampling widgets, in the order `sample` takes them."""
    defaults = SampleConfig()
    return [
        gr.Checkbox(True, label="greedy (always the likeliest token)", elem_id="greedy"),
        gr.Slider(0, 2, value=defaults.temperature, step=0.05, label="temperature (0 = greedy)",
                  elem_id="temperature"),
        gr.Number(0, label="top-k (0 = off)", elem_id="top-k"),
        gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (1 = off)", elem_id="top-p"),
        gr.Slider(1, limits.max_new_tokens, value=6, step=1, label="max new tokens", elem_id="max-new"),
        gr.Textbox("", label="sampling seed (empty = random)", elem_id="sample-seed"),
    ]


def wire(training: list, tab: SimpleNamespace, inside: SimpleNamespace, session: gr.State, limits: Limits) -> None:
    """The Sample and Look-inside tabs follow the session's best model, trained or uploaded."""
    best_outputs = [tab.info, tab.examples, tab.max_new, inside.text]
    for event in training:
        event.then(describe_best, [session], best_outputs, api_visibility="private")
    tab.examples.change(lambda example: example, [tab.examples], [tab.prompt], api_visibility="private")
    gr.on([tab.sample_btn.click, tab.prompt.submit], with_limits(sample, limits), [tab.prompt, *tab.settings, session],
          [tab.output], api_name="sample")
    tab.compare_btn.click(with_limits(sample_best_and_last, limits), [tab.prompt, *tab.settings, session],
                          [tab.compare], api_name="sample_best_and_last")
    tab.save_btn.click(save, [session], [tab.checkpoint_file], api_name="save_checkpoint")
    tab.export_btn.click(export_code, [session], [tab.code_file], api_name="export_code")
    tab.upload_file.upload(with_limits(upload, limits), [tab.upload_file, session], [*best_outputs, session],
                           api_name="upload_checkpoint")
