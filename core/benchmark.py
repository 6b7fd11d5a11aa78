"""`python -m core bench`: where speed claims are measured (tests never assert timings).

Measures, on this machine and its current thread count:
- training throughput of the default sort model and a wider text model (tokens/s);
- the cost of building and serialising the loss figure the page streams (the page against the
  bare loop, through a real server, is bench/page.py's);
- sampling speed and checkpoint round-trip time.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import DEFAULT_LAYERS, ModelConfig, SampleConfig, TaskConfig, TrainConfig
from .data import make_task
from .figures import loss_figure
from .sampling import generate
from .training import EpochEvent, FitResult, TrainingHistory, train_task


def _sort_setup(epochs: int):
    task = make_task(TaskConfig("sort", 6, 3, train_size=2000, val_size=200, seed=0))
    d_models, ffs, heads = (list(column) for column in zip(*DEFAULT_LAYERS))
    model = ModelConfig(len(task.vocab), d_models, ffs, heads)
    return task, model, TrainConfig(epochs=epochs, batch_size=64, seed=0)


def _text_setup(epochs: int):
    text = (Path(__file__).resolve().parent.parent / "assets" / "sample_text.txt").read_text() * 20
    task = make_task(TaskConfig("text", 64, train_size=2048, val_size=256, seed=0, text=text))
    model = ModelConfig(len(task.vocab), [128] * 4, [512] * 4, 4, 0.1)
    return task, model, TrainConfig(epochs=epochs, batch_size=32, seed=0)


def _run(setup, epochs: int) -> dict:
    """One training run of the bare loop."""
    task, model_config, train_config = setup(epochs)
    start = time.perf_counter()
    result, tokens_per_s = None, []
    for event in train_task(task, model_config, train_config):
        if isinstance(event, EpochEvent):
            tokens_per_s.append(event.record.tokens_per_s)
        if isinstance(event, FitResult):
            result = event
    wall = time.perf_counter() - start
    return {"wall_s": wall, "median_tokens_per_s": statistics.median(tokens_per_s[1:] or tokens_per_s),
            "best_val_loss": result.best_loss, "result": result, "model_config": model_config, "task": task}


def _figure_cost(steps: int) -> dict:
    history = TrainingHistory(step_positions=[i / 100 for i in range(steps)],
                              step_losses=[1.0 / (1 + i) for i in range(steps)])
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        payload = loss_figure(history).to_json()
    return {"steps": steps, "build_and_serialise_ms": (time.perf_counter() - start) / repeats * 1000,
            "json_kb": len(payload) / 1024}


def _sampling(run: dict, new_tokens: int) -> dict:
    """Sampling speed with the key/value cache and, for comparison, re-encoding every step."""
    model, task = run["result"].best_model, run["task"]
    prompt = torch.tensor(task.vocab.encode(task.examples(1)[0]))
    speeds = {}
    for key, use_cache in (("tokens_per_s", True), ("uncached_tokens_per_s", False)):
        start = time.perf_counter()
        generate(model, prompt, SampleConfig(max_new_tokens=new_tokens, temperature=0.8, seed=0),
                 use_cache=use_cache)
        speeds[key] = new_tokens / (time.perf_counter() - start)
    return {"new_tokens": new_tokens, **speeds}


def _checkpoint_round_trip(run: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.safetensors"
        start = time.perf_counter()
        save_checkpoint(path, run["result"].best_model, run["model_config"], run["task"])
        saved = time.perf_counter()
        load_checkpoint(path)
        return {"save_ms": (saved - start) * 1000, "load_ms": (time.perf_counter() - saved) * 1000,
                "bytes": path.stat().st_size}


def run_benchmarks(quick: bool = False, json_path: Path | None = None) -> int:
    epochs = 3 if quick else 12
    text_epochs = max(2, epochs // 3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; sort {epochs} epochs, text {text_epochs}"
          f"{' (quick: a smoke check, not a measurement)' if quick else ''}")
    results: dict[str, object] = {"threads": torch.get_num_threads(), "epochs": epochs}

    # the text model is ~10x the work per epoch: fewer epochs keep `make bench` near two minutes
    for name, setup, run_epochs in (("sort 3x48", _sort_setup, epochs), ("text 4x128", _text_setup, text_epochs)):
        bare = _run(setup, run_epochs)
        print(f"train {name:>11}: {bare['median_tokens_per_s']:>9,.0f} tok/s | {run_epochs} epochs in "
              f"{bare['wall_s']:.2f} s")
        sampling = _sampling(bare, 64)
        ckpt = _checkpoint_round_trip(bare)
        print(f"       {'':>11}  sampling {sampling['tokens_per_s']:,.0f} tok/s (batch 1; "
              f"{sampling['uncached_tokens_per_s']:,.0f} without the KV cache) | "
              f"checkpoint {ckpt['bytes'] / 1024:,.0f} kB, save {ckpt['save_ms']:.1f} ms, "
              f"load {ckpt['load_ms']:.1f} ms")
        results[name] = {"tokens_per_s": bare["median_tokens_per_s"], "wall_s": bare["wall_s"],
                         "sampling": sampling, "checkpoint": ckpt}

    for steps in (200, 2_000, 20_000):
        cost = _figure_cost(steps)
        print(f"loss figure, {steps:>6} steps: {cost['build_and_serialise_ms']:6.1f} ms to build + serialise, "
              f"{cost['json_kb']:6.1f} kB per streamed update")
        results[f"loss_figure_{steps}"] = cost

    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
        print(f"wrote {json_path}")
    return 0
