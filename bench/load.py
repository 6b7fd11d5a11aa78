"""A public Space under load: what one visitor costs in memory, and 30 visitors at once.

1. Memory per session: the page is served by its own process (`python app.py`); visitors
   train at the page's largest sizes (and, separately, with the defaults), each stopped after
   a few steps, and the server's memory (its processes' PSS) is read before and after.
2. Load: 30 visitors on loopback for a few minutes, each doing what a class does (describe,
   mask, sample, look inside, a few tiny trainings, uploads, some of them hostile files or
   hostile values). Counts every answer that is a generic error, every visitor whose model
   was lost, and samples the server's memory over time.

`python -m bench.load [seconds]` from the repository root (make bench runs it). It prints a
verdict line per check and exits 1 if a check fails; timings are reported, never judged.
"""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client  # noqa: E402

from core import ModelConfig, TaskConfig, build_model, make_task, save_checkpoint  # noqa: E402
from tests.raw_client import RawVisitor, generic_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEADERS = ["d_model", "dim_feedforward", "nhead"]
VISITORS = 30
TINY_TRAIN = [[[16, 64, 2]], "configurable", 0.1, "sort", 4, 3, 256, 32, "", 1, 64, 3e-3, 0, 0]
LARGEST = [[[256, 1024, 4]] * 3, "configurable", 0.1, "sort", 128, 10, 20_000, 16, "", 300, 64, 3e-3, 0, 0]
DEFAULTS = [[[48, 192, 3]] * 3, "configurable", 0.1, "sort", 6, 3, 2000, 200, "", 60, 64, 3e-3, 0, 0]


def table(rows):
    return {"headers": HEADERS, "data": rows, "metadata": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mib(pid: int) -> float:
    """What a process and every process under it hold: the fork server and the training processes
    it forks (core/processes.py) belong to the page. Proportional set size, so the torch pages they
    share are counted once."""
    total = 0.0
    for process in [pid, *descendants(pid)]:
        try:
            rollup = Path(f"/proc/{process}/smaps_rollup").read_text()
        except OSError:  # it ended meanwhile
            continue
        total += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")) / 1024
    return total


def descendants(pid: int) -> list[int]:
    children = []
    for thread in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (thread / "children").read_text().split()]
        except OSError:
            pass
    return children + [grandchild for child in children for grandchild in descendants(child)]


class Server:
    """`python app.py` in its own process, as a Space runs it."""

    def __init__(self):
        port = _free_port()
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)

    def memory(self) -> float:
        return memory_mib(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# --- 1. memory per session -----------------------------------------------------------------------

def train_then_stop(url: str, args: list, steps_seconds: float = 2.0) -> None:
    client = Client(url, analytics_enabled=False, verbose=False)
    job = client.submit(table(args[0]), *args[1:], api_name="/train")
    deadline = time.monotonic() + 120
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(steps_seconds)
    client.predict(api_name="/stop")
    job.result(timeout=120)
    client.close()


def memory_per_session(server: Server, args: list, visitors: int) -> float:
    """Memory growth per visitor, after one visitor has warmed the allocator up."""
    train_then_stop(server.url, args)
    before = server.memory()
    for _ in range(visitors):
        train_then_stop(server.url, args)
    return (server.memory() - before) / visitors


# --- 2. a class at once ----------------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls, self.generic, self.lost = 0, [], []
        self.latency: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float, answer: dict, problem: str | None = None) -> None:
        with self.lock:
            self.calls += 1
            self.latency.setdefault(name, []).append(seconds)
            generic = generic_error(answer)
            if generic:
                self.generic.append(f"/{name}: {generic}")
            if problem:
                self.lost.append(problem)


def hostile_files(folder: Path) -> list[Path]:
    """One good checkpoint and a few that claim too much or are damaged."""
    task = make_task(TaskConfig("sort", 4, 3, 64, 16))
    config = ModelConfig(len(task.vocab), [16], [64], 2, 0.0)
    good = save_checkpoint(folder / "good.safetensors", build_model(config), config, task,
                           {"best_epoch": 1, "best_val_loss": 0.5, "val_accuracy": 0.5})
    data = good.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8: 8 + header_len])
    files = [good]
    for name, key, value in [("huge", "model_config", {"vocab_size": 3, "d_model_configs": [2048] * 3,
                                                       "dim_feedforward_configs": [8192] * 3, "nhead": 4}),
                             ("long", "task_config", {"kind": "sort", "seq_len": 10**6, "num_digits": 3}),
                             ("odd-summary", "summary", [1, 2])]:
        meta = {**header["__metadata__"], key: json.dumps(value)}
        raw = json.dumps({**header, "__metadata__": meta}).encode()
        raw += b" " * (-len(raw) % 8)
        path = folder / f"{name}.safetensors"
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + header_len:])
        files.append(path)
    junk = folder / "junk.safetensors"
    junk.write_bytes(os.urandom(4096))
    return files + [junk]


def fingerprint(visitor: RawVisitor) -> str | None:
    answer = visitor.call("sample", "2101", True, 1.0, 0, 1.0, 4, "")
    return answer["data"][0] if answer["success"] else None


def student(url: str, index: int, until: float, files: list[Path], tally: Tally) -> None:
    """One visitor's few minutes: mostly looking, sometimes training or uploading, sometimes hostile."""
    rng = random.Random(index)
    visitor = RawVisitor(url, timeout=600)
    expected: str | None = None  # what this visitor's model answers, once it has one
    trainings = 0
    hostile = [("mask", (float("nan"),)), ("describe_model", (table([[16, 64]]), "configurable", 0.1, "sort", 6,
                                                               -3, "")),
               ("sample", ("21\ud800", True, 1.0, 0, 1.0, 4, "")), ("train", tuple(
                   [table([[16, 64, 2]]), *TINY_TRAIN[1:12], 2**64, 0]))]
    try:
        while time.monotonic() < until:
            roll = rng.random()
            start = time.perf_counter()
            if roll < 0.3:
                name, args = "describe_model", (table([[16 * rng.randint(1, 4), 64, 2]] * rng.randint(1, 3)),
                                                "configurable", 0.1, "sort", 6, 3, "")
            elif roll < 0.45:
                name, args = "mask", (rng.randint(1, 32),)
            elif roll < 0.6 and expected is not None:
                name, args = "look_inside", ("2101",)
            elif roll < 0.7:
                name, args = hostile[rng.randrange(len(hostile))]
            elif roll < 0.8:
                name, args = "upload_checkpoint", (visitor.upload(rng.choice(files[1:])),)  # hostile files
            elif roll < 0.85:
                name, args = "upload_checkpoint", (visitor.upload(files[0]),)
            elif roll < 0.9 and trainings < 2:
                name, args = "train", (table(TINY_TRAIN[0]), *TINY_TRAIN[1:])
                trainings += 1
            else:
                time.sleep(rng.uniform(0.2, 1.0))  # reading the page
                continue
            answer = visitor.call(name, *args)
            seconds = time.perf_counter() - start
            changes_model = answer["success"] and name in ("train", "upload_checkpoint")
            now = fingerprint(visitor)
            problem = None
            if changes_model:
                expected = now
            elif expected is not None and now != expected:
                problem = f"visitor {index}: /{name} changed or lost the model"
            tally.add(name, seconds, answer, problem)
    finally:
        visitor.close()


def sample_memory(server: Server, until: float, series: list[tuple[float, float]]) -> None:
    start = time.monotonic()
    while time.monotonic() < until:
        series.append((time.monotonic() - start, server.memory()))
        time.sleep(2.0)


def class_at_once(server: Server, seconds: float) -> tuple[Tally, list[tuple[float, float]]]:
    tally, series = Tally(), []
    until = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(VISITORS + 1) as pool:
        files = hostile_files(Path(folder))
        monitor = pool.submit(sample_memory, server, until, series)
        students = [pool.submit(student, server.url, i, until, files, tally) for i in range(VISITORS)]
        for future in students:
            future.result()
        monitor.result()
    return tally, series


def main(seconds: float = 180.0) -> int:
    server = Server()
    try:
        print(f"server memory at start (its processes, PSS): {server.memory():.0f} MiB")
        largest = memory_per_session(server, LARGEST, visitors=4)
        default = memory_per_session(server, DEFAULTS, visitors=6)
        print(f"memory per session: {largest:.1f} MiB at the page's largest sizes (3 x 256 wide, sort of 128 "
              f"digits, 20,000 examples), {default:.1f} MiB with the defaults")
        print(f"  500 sessions (the page's cap) at the largest sizes: {500 * max(largest, 0) / 1024:.1f} GiB")
        tally, series = class_at_once(server, seconds)
    finally:
        server.close()
    memory = [m for _, m in series]
    third = max(1, len(memory) // 3)
    print(f"{VISITORS} visitors for {seconds:.0f} s: {tally.calls} calls, {len(tally.generic)} generic errors, "
          f"{len(tally.lost)} lost models")
    for name, times in sorted(tally.latency.items()):
        print(f"  /{name:<18} {len(times):>5} calls, median {statistics.median(times) * 1000:7.0f} ms, "
              f"max {max(times) * 1000:7.0f} ms")
    shown = series[:: max(1, len(series) // 12)]
    print("  memory over time (s: MiB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in shown))
    growth = max(memory[-third:]) - max(memory[:third])
    bounded = growth < VISITORS * max(largest, 1.0) + 100
    for line in tally.generic[:5] + tally.lost[:5]:
        print("  !", line)
    verdicts = [("zero generic errors", not tally.generic), ("no lost models", not tally.lost),
                (f"bounded memory (last third grew {growth:+.0f} MiB over the first)", bounded)]
    for what, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 180.0))
