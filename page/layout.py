"""The whole page: a title, then the five tabs, each built and wired by its own module."""

from __future__ import annotations

import os
import threading
from typing import Any

import gradio as gr

import core
from core.config import Limits, as_int

from . import build_tab, files, inside_tab, lessons, mask_tab, runs, sample_tab, share, train_tab
from .inputs import ASSETS
from .session import Session

TITLE = ("# Transformer Playground\nBuild a causal Transformer layer by layer, see its causal mask, train it "
         "on a toy task while the loss curve draws itself, then sample from the best model.")


def build_demo(limits: Limits | None = None) -> gr.Blocks:
    """The page. Limits come from PLAYGROUND_* environment variables over public-Space defaults."""
    limits = limits or Limits.from_env(Limits.public())
    with gr.Blocks(title="Transformer Playground", delete_cache=(3600, 3600)) as demo:
        session = gr.State(Session())
        gr.Markdown(TITLE, elem_id="tp-title")
        lesson = lessons.widgets()
        link = share.widgets()
        with gr.Tabs(elem_id="tabs"):
            build, mask, train = build_tab.widgets(), mask_tab.widgets(), train_tab.widgets()
            sample, inside = sample_tab.widgets(limits), inside_tab.widgets()
        build_tab.wire(demo, build, train, session, limits)
        mask_tab.wire(demo, mask)
        training = train_tab.wire(demo, build, train, session, limits)
        sample_tab.wire(training, sample, inside, session, limits)
        inside_tab.wire(demo, training, inside, session)
        runs.wire(training, train.runs, session)
        share.wire(demo, link, [build.layers, build.model_type, build.dropout, train.kind, train.seq_len,
                                train.num_digits, train.train_size, train.val_size, train.text, train.epochs,
                                train.batch_size, train.lr, train.seed, train.patience, train.stop_when_solved,
                                train.causal, *sample.settings], session)
        lessons.wire(lesson, build, train)
        demo.unload(files.remove_session_files)
    demo.queue(default_concurrency_limit=8, max_size=queue_max_size())
    return demo


def serve(demo: gr.Blocks, **launch_kwargs: Any) -> str:
    """Start answering requests, then load the engine in the background; the page's URL.

    Returns at once: `python app.py` then calls `demo.block_thread()`; the tests and benches go
    on with their own work. Loading torch beside `launch` made the page answer 0.3 s later
    (launch and first request 0.58 s against 0.28 s, 2 cores), so the warm-up starts after it.
    """
    _, url, _ = demo.launch(prevent_thread_lock=True, **{**launch_options(), **launch_kwargs})
    warm_up_engine(train_tab.train_concurrency())
    return url


def queue_max_size() -> int:
    """Requests that may wait in the queue (PLAYGROUND_QUEUE_MAX_SIZE, default 100); past it a visitor
    is told at once that the queue is full instead of waiting without an answer. 100 holds a class
    of 30 pressing Train together (bench/classroom.py) with room for their other clicks."""
    return as_int(os.environ.get("PLAYGROUND_QUEUE_MAX_SIZE", "100"), "PLAYGROUND_QUEUE_MAX_SIZE", minimum=1)


def warm_up_engine(train_concurrency: int) -> None:
    """In the background: load torch and the engine here and give torch its threads, then start the
    server that training processes fork from (core.processes), which loads them again on its own.

    A request that needs the engine in the first seconds waits for it on Python's import lock,
    and a Train then waits for the fork server. Started the other way round, both loading at
    once, the page answered about 0.35 s later (3.76 s against 3.41 s, medians of 5 starts on
    2 cores).
    """
    def warm_up() -> None:
        core.training.configure_threads(train_concurrency)
        core.processes.start_server()

    threading.Thread(target=warm_up, name="engine-warm-up", daemon=True).start()


def launch_options() -> dict[str, Any]:
    """How the page is served; the tests launch with these too, so they see what visitors see.

    Each visitor's state holds models (up to ~24 MB at the public limits); Gradio frees it an hour
    after they leave, and keeps at most PLAYGROUND_MAX_SESSIONS (oldest evicted first).
    """
    sessions = as_int(os.environ.get("PLAYGROUND_MAX_SESSIONS", "500"), "PLAYGROUND_MAX_SESSIONS", minimum=1)
    # ssr_mode off: server-side rendering needs Node.js beside Python, and the tests must see what
    # visitors see rather than what GRADIO_SSR_MODE happens to say; "api" shows "Use via API"
    return dict(css=(ASSETS / "style.css").read_text(), footer_links=["api", "gradio"], run_history=False,
                show_error=True, state_session_capacity=sessions, max_file_size="64mb", ssr_mode=False)
