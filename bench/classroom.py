"""A class at once: 30 visitors press Train with the page's defaults at the same moment.

A teacher says "now press Train", and a public Space on 2 cores gets 30 trainings in one
second. What each student sees then decides whether the page works in a classroom:
how long until their own curve starts to draw, how long until their run is done, and
whether, while they wait, the page shows their place in the queue and an estimate.

For each PLAYGROUND_TRAIN_CONCURRENCY asked for, two fresh `python app.py` processes
(bench.load.Server) are measured, one for the lone visitor and one for the class (see measure):

1. Start: seconds from starting each process to its first HTTP 200 on `/`.
2. A lone visitor on an idle server: Train click to first curve point, 3 times.
3. The class: N visitors (each its own session and thread, over raw HTTP) are released by one
   barrier and call /train with the page's own defaults, read from the server's /config.
   Every visitor's event stream is timestamped: the first "estimation" (queue place and
   Gradio's ETA), the run's start, the first streamed figure with a curve point, the end.

`python -m bench.classroom [--visitors 30] [--concurrency 1,2] [--deadline 600] [--json PATH] [--compare EARLIER.json]`
from the repository root. It only talks to 127.0.0.1, every request has a timeout, and a
class that runs past its deadline is stopped (each visitor presses Stop) and reported as such.
Targets are printed beside the figures; timings are never pass/fail, so it exits 0 unless a
visitor got an error or a server did not start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402

from bench.load import Server  # noqa: E402
from tests.raw_client import RawVisitor  # noqa: E402

TARGET_LAST_DONE_S = 180.0  # the 30th visitor's run is done within 3 minutes
TARGET_FIRST_CURVE_S = 1.0  # a lone visitor's Train click to first curve point
TARGET_START_S = 3.0  # `python app.py` answers within 3 s
GRACE_S = 30.0  # after Stop, how long a visitor still waits for its run to end
READ_TIMEOUT_S = 60.0  # no byte for this long on any request: give up (Gradio sends heartbeats)


# --- one visitor's timeline ----------------------------------------------------------------------

@dataclass
class Timeline:
    """What one visitor saw, in seconds from the click (the barrier's release for the class)."""

    index: int
    first_estimate: dict[str, Any] | None = None  # {"t", "rank", "queue_size", "rank_eta"}
    first_eta: dict[str, Any] | None = None  # the first estimation that carried an ETA
    estimations: int = 0
    started: float | None = None  # "process_starts": the run left the queue
    first_curve: float | None = None  # the first streamed figure with a point on it
    done: float | None = None  # "process_completed"
    success: bool | None = None
    error: str | None = None
    pressed_stop: bool = False  # the deadline (or the lone-visitor measurement) stopped it
    updates: int = 0


def has_curve_point(figure: Any) -> bool:
    """Whether a streamed Plot value shows at least one point.

    The first update carries the whole figure ({"type": "plotly", "plot": "<json>"}); later ones
    are Gradio diffs (lists of edits), which only come after a figure has been sent.
    """
    if isinstance(figure, list):
        return bool(figure)
    if not isinstance(figure, dict) or not isinstance(figure.get("plot"), str):
        return False
    for trace in json.loads(figure["plot"]).get("data", []):
        y = trace.get("y")
        if isinstance(y, list) and y or isinstance(y, dict) and y.get("bdata"):  # plotly 7 typed arrays
            return True
    return False


class TimedVisitor(RawVisitor):
    """A RawVisitor whose event stream is timestamped, and which presses Stop at a deadline.

    The base class's `_await` only keeps the final answer; here every message that a visitor's
    page would react to (queue place, start, curve, end) is stamped as it arrives.
    """

    def __init__(self, url: str, index: int = 0):
        super().__init__(url, timeout=READ_TIMEOUT_S)
        self.timeline = Timeline(index)
        self.zero = time.monotonic()
        self.deadline = float("inf")
        self.stop_at_first_curve = False

    def train(self, values: list[Any], zero: float, deadline: float, stop_at_first_curve: bool = False) -> Timeline:
        """Press Train at `zero` (a monotonic time); never wait past `deadline` + GRACE_S."""
        self.zero, self.deadline, self.stop_at_first_curve = zero, deadline, stop_at_first_curve
        try:
            answer = self.call("train", *values)
            self.timeline.success = bool(answer["success"])
            self.timeline.error = answer.get("error")
        except (httpx.HTTPError, OSError, ValueError) as error:
            self.timeline.success, self.timeline.error = False, f"{type(error).__name__}: {error}"
        return self.timeline

    def _now(self) -> float:
        return round(time.monotonic() - self.zero, 3)

    def _press_stop(self) -> None:
        """Stop this session's run (Stop bypasses the queue), then allow GRACE_S for its end."""
        if not self.timeline.pressed_stop:
            self.timeline.pressed_stop = True
            self.deadline = time.monotonic()
            self.call("stop")

    def _await(self, event_id: str) -> dict[str, Any]:
        line_stream = self.http.stream("GET", f"{self.api}/queue/data", params={"session_hash": self.session_hash})
        with line_stream as stream:
            for line in stream.iter_lines():
                if time.monotonic() > self.deadline + GRACE_S:
                    break
                if time.monotonic() > self.deadline:
                    self._press_stop()
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event_id):
                    continue
                answer = self._note(message)
                if answer is not None:
                    return answer
        return {"success": False, "data": None, "error": "the event stream ended without an answer"}

    def _note(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Stamp one message; the final answer once the run is over, else None."""
        kind, t, timeline = message.get("msg"), self._now(), self.timeline
        if kind == "estimation":
            timeline.estimations += 1
            seen = {"t": t, "rank": message.get("rank"), "queue_size": message.get("queue_size"),
                    "rank_eta": message.get("rank_eta")}
            timeline.first_estimate = timeline.first_estimate or seen
            if seen["rank_eta"] is not None and timeline.first_eta is None:
                timeline.first_eta = seen
        elif kind == "process_starts":
            timeline.started = t
        elif kind == "process_generating":
            timeline.updates += 1
            data = (message.get("output") or {}).get("data") or [None]
            if timeline.first_curve is None and has_curve_point(data[0]):
                timeline.first_curve = t
                if self.stop_at_first_curve:
                    self._press_stop()
        elif kind == "process_completed":
            timeline.done = t
            output = message.get("output") or {}
            return {"success": bool(message.get("success")), "data": output.get("data"), "error": output.get("error")}
        elif kind == "unexpected_error":
            return {"success": False, "data": None, "error": message.get("message")}
        return None


# --- the server -------------------------------------------------------------------------------------

@contextmanager
def served(concurrency: int) -> Iterator[tuple[Server, float]]:
    """A fresh `python app.py` with PLAYGROUND_TRAIN_CONCURRENCY set, and its start time in seconds.

    bench.load.Server copies os.environ into the child, so the variable is set here only while
    the process starts. Server waits for the port in 0.2 s steps; the first 200 is then polled
    every 20 ms, so the start time is exact to about 0.2 s.
    """
    before = os.environ.get("PLAYGROUND_TRAIN_CONCURRENCY")
    os.environ["PLAYGROUND_TRAIN_CONCURRENCY"] = str(concurrency)
    start = time.monotonic()
    try:
        server = Server()
    finally:
        if before is None:
            os.environ.pop("PLAYGROUND_TRAIN_CONCURRENCY")
        else:
            os.environ["PLAYGROUND_TRAIN_CONCURRENCY"] = before
    try:
        yield server, first_ok(server.url, start)
    finally:
        server.close()


def first_ok(url: str, start: float, limit: float = 60.0) -> float:
    """Seconds from `start` until GET / answers 200."""
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() - start < limit:
            try:
                if http.get(url).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer 200 within {limit:.0f} s")


def page_defaults(url: str) -> list[Any]:
    """The values the page's Train button sends untouched, read from the server's own /config.

    Retyping them would measure last week's page; gr.State inputs are left out (the raw client
    sends null for them, as the browser does).
    """
    config = httpx.get(url.rstrip("/") + "/config", timeout=10.0).json()
    components = {c["id"]: c for c in config["components"]}
    train = next(d for d in config["dependencies"] if d.get("api_name") == "train")
    return [components[i].get("props", {}).get("value") for i in train["inputs"]
            if components[i].get("type") != "state"]


class MemorySampler:
    """The server's memory (its processes, training included) once a second while a class runs, to
    see it does not explode."""

    def __init__(self, server: Server):
        self.server, self.series, self.stopped = server, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.series.append(self.server.memory())
            except (OSError, RuntimeError):
                return
            self.stopped.wait(1.0)

    def __enter__(self) -> MemorySampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


# --- the measurements ---------------------------------------------------------------------------------

def run_class(url: str, visitors: int, values: list[Any], deadline_s: float) -> list[Timeline]:
    """N sessions, each opened beforehand, all pressing Train at the barrier's release."""
    zero: list[float] = []
    barrier = threading.Barrier(visitors, action=lambda: zero.append(time.monotonic()))

    def one(index: int) -> Timeline:
        visitor = TimedVisitor(url, index)
        try:
            barrier.wait(timeout=120)
            return visitor.train(values, zero[0], zero[0] + deadline_s)
        finally:
            visitor.close()

    with ThreadPoolExecutor(visitors) as pool:
        futures = [pool.submit(one, i) for i in range(visitors)]
        return [f.result(timeout=deadline_s + GRACE_S + 2 * READ_TIMEOUT_S + 120) for f in futures]


def lone_visitor(url: str, values: list[Any], repeats: int = 3) -> list[float | None]:
    """Click to first curve point for one visitor on an idle server; each run stopped once it draws."""
    seconds = []
    for index in range(repeats):
        visitor = TimedVisitor(url, index)  # a fresh session: no previous run on its figure
        try:
            start = time.monotonic()
            timeline = visitor.train(values, start, start + 120, stop_at_first_curve=True)
            seconds.append(timeline.first_curve)
        finally:
            visitor.close()
    return seconds


# --- the report -------------------------------------------------------------------------------------

def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def fmt(seconds: float | None, digits: int = 1) -> str:
    return "never" if seconds is None else f"{seconds:.{digits}f} s"


def meets(value: float | None, target: float, strict: bool = False) -> str:
    ok = value is not None and (value < target if strict else value <= target)
    return "meets" if ok else "MISSES"


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarize(timelines: list[Timeline], concurrency: int) -> dict[str, Any]:
    """The figures the issue asks for, from the visitors' timelines."""
    n = len(timelines)
    by_curve = sorted(timelines, key=lambda t: (t.first_curve is None, t.first_curve or 0.0))
    by_start = sorted(timelines, key=lambda t: (t.started is None, t.started or 0.0))
    waiting = by_start[concurrency:]  # all but the runs that could start at once
    with_eta = [t for t in waiting if t.first_eta and (t.started is None or t.first_eta["t"] <= t.started)]
    eta_vs_done = [t.done - (t.first_eta["t"] + t.first_eta["rank_eta"]) for t in waiting
                   if t.first_eta and t.done is not None and not t.pressed_stop]
    eta_vs_start = [t.started - (t.first_eta["t"] + t.first_eta["rank_eta"]) for t in waiting
                    if t.first_eta and t.started is not None and not t.pressed_stop]
    done = [t.done for t in timelines]
    return {
        "visitors": n,
        "ordinals": {k: asdict(by_curve[k - 1]) for k in sorted({1, min(10, n), n})},
        "median_first_curve": median([t.first_curve for t in timelines]),
        "median_done": median(done),
        "last_done": None if None in done or any(t.pressed_stop for t in timelines) else max(done),
        "errors": [f"visitor {t.index}: {t.error}" for t in timelines if not t.success and not t.pressed_stop],
        "stopped_at_deadline": sum(t.pressed_stop for t in timelines),
        "waiting": len(waiting),
        "waiting_with_rank": sum(t.first_estimate is not None and t.first_estimate["rank"] is not None
                                 for t in waiting),
        "waiting_with_eta_before_start": len(with_eta),
        "first_eta_after": [t.first_eta["t"] for t in with_eta],
        "eta_vs_done": eta_vs_done,
        "eta_vs_start": eta_vs_start,
    }


def print_class(summary: dict[str, Any], memory: list[float], took: float) -> None:
    """One block per concurrency: the ordinal visitors, medians, queue messages, memory."""
    n = summary["visitors"]
    print(f"  class of {n} pressing Train at once (took {took:.0f} s):")
    for k, t in summary["ordinals"].items():
        estimate = t["first_estimate"]
        queue = f"queue {estimate['rank'] + 1}/{estimate['queue_size']}" if estimate and estimate["rank"] is not None \
            else "no queue place"
        eta = t["first_eta"]
        eta_text = f"first ETA at {eta['t']:.1f} s said done by {eta['t'] + eta['rank_eta']:.1f} s" if eta else "no ETA"
        print(f"    {ordinal(k):>4} to see a curve: first curve {fmt(t['first_curve'])}, done {fmt(t['done'])} "
              f"(started {fmt(t['started'])}; {queue}, {eta_text})")
    print(f"    median: first curve {fmt(summary['median_first_curve'])}, done {fmt(summary['median_done'])}")
    last = summary["last_done"]
    stopped = summary["stopped_at_deadline"]
    last_text = fmt(last) if stopped == 0 else f"not done by the deadline; Stop pressed for {stopped} visitors"
    print(f"    {ordinal(n)} (last) visitor done: {last_text}   target < {TARGET_LAST_DONE_S:.0f} s: "
          f"{meets(last, TARGET_LAST_DONE_S, strict=True)}")
    waiting = summary["waiting"]
    after = summary["first_eta_after"]
    print(f"    waiting visitors: {waiting}; shown their place: {summary['waiting_with_rank']}/{waiting}; "
          f"shown an ETA before their run started: {summary['waiting_with_eta_before_start']}/{waiting}"
          + (f" (first ETA after median {median(after):.1f} s, max {max(after):.1f} s)" if after else ""))
    # Gradio's rank_eta counts to the END of the run (queueing.py: "until the result will be
    # returned"), so against the start it reads about one run too long.
    for name, errors in (("finish", summary["eta_vs_done"]), ("start (ETA means finish)", summary["eta_vs_start"])):
        if errors:
            print(f"    first ETA vs actual {name}: median {statistics.median(errors):+.1f} s "
                  f"(+ = later than said), worst {max(errors, key=abs):+.1f} s, over {len(errors)} visitors")
    if memory:
        print(f"    server memory (its processes, PSS): {memory[0]:.0f} MiB at the click, peak {max(memory):.0f} MiB, "
              f"{memory[-1]:.0f} MiB at the end")
    for line in summary["errors"][:5]:
        print(f"    ! {line}")


def measure(concurrency: int, visitors: int, deadline_s: float) -> dict[str, Any]:
    """A lone visitor on one fresh server, then the class on another.

    Two servers because Gradio's ETA is the average time of the runs it has seen: the lone
    visitor's runs, stopped after one point, would make the class's first ETAs far too short.
    The lone visitor's first try is the first run after a (re)start, so it shows the cold case.
    """
    print(f"== PLAYGROUND_TRAIN_CONCURRENCY={concurrency} ==", flush=True)
    with served(concurrency) as (server, lone_start_s):
        values = page_defaults(server.url)
        lone = lone_visitor(server.url, values)
    lone_median = median(lone)
    print(f"  lone visitor, idle server: click to first curve point median {fmt(lone_median, 2)} of "
          f"{', '.join(fmt(s, 2) for s in lone)} (the first after the start)   target <= "
          f"{TARGET_FIRST_CURVE_S:.0f} s: {meets(lone_median, TARGET_FIRST_CURVE_S)}", flush=True)
    with served(concurrency) as (server, class_start_s):
        starts = [lone_start_s, class_start_s]
        print(f"  `python app.py` answered / after {fmt(lone_start_s, 2)} and {fmt(class_start_s, 2)} (two starts)"
              f"   target <= {TARGET_START_S:.0f} s: {meets(max(starts), TARGET_START_S)}", flush=True)
        began, client_cpu = time.monotonic(), time.process_time()
        with MemorySampler(server) as memory:
            timelines = run_class(server.url, visitors, values, deadline_s)
        took, client_cpu = time.monotonic() - began, time.process_time() - client_cpu
    summary = summarize(timelines, concurrency)
    print_class(summary, memory.series, took)
    print(f"    this client's own CPU meanwhile: {client_cpu:.1f} s (it shares the 2 cores with the server)")
    return {"concurrency": concurrency, "start_s": starts, "defaults": values, "class_s": took,
            "client_cpu_s": client_cpu, "summary": summary, "memory_mib": memory.series, "lone_first_curve_s": lone,
            "timelines": [asdict(t) for t in timelines]}


def describe(values: list[Any]) -> str:
    """The defaults in one line, so a reader knows what 'a default run' was today (long text cut)."""
    short = [v[:20] + "…" if isinstance(v, str) and len(v) > 20 else v for v in values]
    short = [v["data"] if isinstance(v, dict) and "data" in v else v for v in short]
    return json.dumps(short, default=str, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=30)
    parser.add_argument("--concurrency", default="1,2", help="comma-separated PLAYGROUND_TRAIN_CONCURRENCY values")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds a class may run before Stop")
    parser.add_argument("--json", help="write every timeline and figure here")
    parser.add_argument("--compare", type=Path, help="a previous --json file to compare with")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    began, results = time.monotonic(), []
    for concurrency in levels:
        try:
            results.append(measure(concurrency, args.visitors, args.deadline))
        except RuntimeError as error:
            print(f"  ! {error}")
            results.append({"concurrency": concurrency, "error": str(error)})
    if results and "defaults" in results[0]:
        print(f"defaults sent to /train: {describe(results[0]['defaults'])}")
    print_comparison(results, args.visitors)
    print(f"the whole benchmark took {time.monotonic() - began:.0f} s")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1, default=str)
    if args.compare:
        compare(results, args.visitors, args.compare)
    broken = any("error" in r or r["summary"]["errors"] for r in results)
    return 1 if broken else 0


def headline(result: dict[str, Any], visitors: int) -> dict[str, float | None]:
    """One concurrency's figures, in seconds (memory in MiB); lower is better for all."""
    summary, kth = result["summary"], min(10, visitors)
    ordinals = summary["ordinals"]  # int keys here, str keys once read back from --json
    return {"start": max(result["start_s"]), "lone 1st curve": median(result["lone_first_curve_s"]),
            f"{ordinal(kth)} curve": ordinals.get(kth, ordinals.get(str(kth), {})).get("first_curve"),
            "median done": summary["median_done"], "last done": summary["last_done"],
            "peak memory": max(result.get("memory_mib") or [0])}


def print_comparison(results: list[dict[str, Any]], visitors: int) -> None:
    """Side by side, so the team can choose the default concurrency."""
    kth = f"{ordinal(min(10, visitors))} curve"
    print(f"{'concurrency':>11} | {'start':>6} | {'lone 1st curve':>14} | {kth:>10} | "
          f"{'median done':>11} | {'last done':>9} | peak memory")
    for r in results:
        if "summary" not in r:
            print(f"{r['concurrency']:>11} | failed: {r['error']}")
            continue
        start, lone, tenth, median_done, last_done, memory = headline(r, visitors).values()
        print(f"{r['concurrency']:>11} | {fmt(start):>6} | {fmt(lone, 2):>14} | {fmt(tenth):>10} | "
              f"{fmt(median_done):>11} | {fmt(last_done):>9} | {memory:.0f} MiB")
    print(f"targets: start <= {TARGET_START_S:.0f} s, lone first curve <= {TARGET_FIRST_CURVE_S:.0f} s, "
          f"last of {visitors} done < {TARGET_LAST_DONE_S:.0f} s")


def compare(results: list[dict[str, Any]], visitors: int, previous_path: Path) -> None:
    """Each figure beside a previous run's (`--json` of an earlier run), as now / before."""
    previous = {r["concurrency"]: r for r in json.loads(previous_path.read_text()) if "summary" in r}
    print(f"\nagainst {previous_path}:")
    for r in results:
        if "summary" not in r or r["concurrency"] not in previous:
            continue
        before = headline(previous[r["concurrency"]], visitors)
        for name, now in headline(r, visitors).items():
            then = before.get(name)
            ratio = "" if not now or not then else f" | {now / then:.2f}x ({'better' if now < then else 'worse'})"
            print(f"  concurrency {r['concurrency']}, {name:<15} {now or 0:>8.1f} | before {then or 0:>8.1f}{ratio}")


if __name__ == "__main__":
    sys.exit(main())
