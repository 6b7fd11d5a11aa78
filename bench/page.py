"""How much the page slows training down, and how it holds up in a classroom.

1. The same run through a real server and gradio_client (streaming figures, progress, queue)
   against the bare loop in this process.
2. A classroom: 30 visitors (each its own client session, on loopback) edit models and look at
   masks while one of them trains; the latency of their requests and the training slowdown.

Run with `make bench` (or `python -m bench.page [epochs]` from the repository root). Timings
are never pass/fail, so this lives outside tests/.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client  # noqa: E402

import app  # noqa: E402
from core import ModelConfig, TaskConfig, TrainConfig, make_task, train_task  # noqa: E402
from page.inputs import DEFAULT_PRESET, LAYER_HEADERS, PRESETS  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLASSROOM = 30  # visitors
REQUESTS_EACH = 4  # bounded: 30 x 4 describe/mask calls, then the measurement stops


def _visitor(url: str, index: int) -> list[float]:
    """One student: open a session, then alternate editing the layer table and viewing the mask."""
    client = Client(url, analytics_enabled=False, verbose=False)
    latencies = []
    for i in range(REQUESTS_EACH):
        width = 16 * (1 + (index + i) % 4)
        rows = {"headers": LAYER_HEADERS, "data": [[width, 4 * width, 4]] * (1 + i % 3), "metadata": None}
        start = time.perf_counter()
        if i % 2:
            client.predict(8 + i, api_name="/mask")
        else:
            client.predict(rows, "configurable", 0.1, "sort", 6, 3, "", api_name="/describe_model")
        latencies.append(time.perf_counter() - start)
    return latencies


def visitors(url: str) -> None:
    """The classroom's side, run in its own process so it does not share the server's GIL."""
    with ThreadPoolExecutor(CLASSROOM) as pool:
        latencies = [t for visitor in pool.map(lambda i: _visitor(url, i), range(CLASSROOM)) for t in visitor]
    print(json.dumps(latencies))


def classroom(url: str, layers: list[list[int]], epochs: int) -> None:
    table = {"headers": LAYER_HEADERS, "data": layers, "metadata": None}
    trainer = Client(url, analytics_enabled=False, verbose=False)
    start = time.perf_counter()
    job = trainer.submit(table, "configurable", 0.1, "sort", 6, 3, 2000, 200, "", epochs, 64, 3e-3, 0, 0,
                         api_name="/train")
    students = subprocess.run([sys.executable, "-m", "bench.page", "--visitors", url], capture_output=True, text=True,
                              timeout=300, check=True)
    latencies = sorted(json.loads(students.stdout.strip().splitlines()[-1]))
    job.result()
    trained = time.perf_counter() - start
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"classroom: {CLASSROOM} visitors x {REQUESTS_EACH} requests while one trains {epochs} epochs: "
          f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms; training took {trained:.2f} s")


def main(epochs: int = 12) -> None:
    layers = PRESETS[DEFAULT_PRESET]["layers"]
    task = make_task(TaskConfig("sort", 6, 3, 2000, 200, seed=0))
    model_config = ModelConfig(len(task.vocab), [r[0] for r in layers], [r[1] for r in layers], layers[0][2], 0.1)
    start = time.perf_counter()
    for _ in train_task(task, model_config, TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=0)):
        pass
    bare = time.perf_counter() - start

    url = app.serve(app.demo, server_name="127.0.0.1", server_port=_free_port(), quiet=True)
    try:
        client = Client(url, analytics_enabled=False, verbose=False)
        table = {"headers": LAYER_HEADERS, "data": layers, "metadata": None}
        start = time.perf_counter()
        job = client.submit(table, "configurable", 0.1, "sort", 6, 3, 2000, 200, "", epochs, 64, 3e-3, 0, 0,
                            api_name="/train")
        updates = sum(1 for _ in job)
        page = time.perf_counter() - start
        figure_kb = len(job.outputs()[-1][0]["plot"]) / 1024
        print(f"sort 3x48, {epochs} epochs: bare loop {bare:.2f} s | through the page {page:.2f} s "
              f"({page / bare - 1:+.1%}), {updates} streamed updates, last figure {figure_kb:.1f} kB")
        classroom(url, layers, epochs)
    finally:
        app.demo.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--visitors"]:
        visitors(sys.argv[2])
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
