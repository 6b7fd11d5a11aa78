"""How much the page slows training down: the same run through a real server and gradio_client
(streaming figures, progress, queue) against the bare loop in this process.

Run with `make bench` (or `python tests/bench_page.py [epochs]`). Not a test: pytest only
collects test_*.py, and timings are never pass/fail.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client  # noqa: E402

import app  # noqa: E402
from core import ModelConfig, TaskConfig, TrainConfig, make_task, train_task  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(epochs: int = 12) -> None:
    layers = app.PRESETS[app.DEFAULT_PRESET]["layers"]
    task = make_task(TaskConfig("sort", 6, 3, 2000, 200, seed=0))
    model_config = ModelConfig(len(task.vocab), [r[0] for r in layers], [r[1] for r in layers], layers[0][2], 0.1)
    start = time.perf_counter()
    for _ in train_task(task, model_config, TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=0)):
        pass
    bare = time.perf_counter() - start

    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(),
                                quiet=True, **app.launch_options())
    try:
        client = Client(url, analytics_enabled=False, verbose=False)
        table = {"headers": app.LAYER_HEADERS, "data": layers, "metadata": None}
        start = time.perf_counter()
        job = client.submit(table, "configurable", 0.1, "sort", 6, 3, 2000, 200, "", epochs, 64, 3e-3, 0, 0,
                            api_name="/train")
        updates = sum(1 for _ in job)
        page = time.perf_counter() - start
        figure_kb = len(job.outputs()[-1][0]["plot"]) / 1024
    finally:
        app.demo.close()
    print(f"sort 3x48, {epochs} epochs: bare loop {bare:.2f} s | through the page {page:.2f} s "
          f"({page / bare - 1:+.1%}), {updates} streamed updates, last figure {figure_kb:.1f} kB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
