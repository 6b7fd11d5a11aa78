"""Our engine beside its peers, nanoGPT and minGPT, on this machine, in one run.

The peers are not part of the project: name the folder that holds checkouts of both,
`python -m bench.peers --peers /path/holding/nanoGPT-and-minGPT` (`make bench PEERS=...`).
Their own code runs: nanoGPT's `model.py`, minGPT's `mingpt.model.GPT` and
`mingpt.trainer.Trainer`. Only minGPT's sort dataset, which lives in its demo notebook, is
rebuilt here from the notebook's description. Without `--peers`, only our side and the matmul
peak are measured.

Figures, each printed beside its target:
1. time to learn: minGPT's sort demo (the notebook's settings) against our default sort run,
   both to their first 100% held-out exact match; medians over seeds 0-4 (`--quick`: seed 0);
2. training throughput of our own loop against nanoGPT's model.py, configs S and M, and the
   share of the machine's measured matmul peak each reaches;
3. sampling 64 tokens at batch 1 from a config-M model, ours with and without the KV cache;
4. threads: everything runs at one thread count (torch's default, or `--threads N`).

Each training run (both sides of 1 and 2) runs in a process of its own, as its users run it
(`in_own_process`); sampling runs in this one, which never trains.
`--json PATH` writes every figure; `--compare PREV.json` prints each beside a previous run's.
Timings are reported, not judged: the exit status is 0 unless a part crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import itertools
import json
import math
import multiprocessing
import platform
import random
import statistics
import string
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.data import Dataset

import core.training
from core import (
    EpochEvent,
    FitResult,
    ModelConfig,
    SampleConfig,
    StepEvent,
    TaskConfig,
    TrainConfig,
    build_model,
    generate,
    make_task,
    train_task,
)
from core.kv_cache import StepLinear, one_call_for

PARTS = ("learn", "throughput", "sampling")


# ---------------------------------------------------------------------------------------------
# Report: figures, targets, and how numbers are shown
# ---------------------------------------------------------------------------------------------

@dataclass
class Report:
    """Figures (what --json writes and --compare reads) and a PASS/MISS per target."""

    figures: dict[str, dict] = field(default_factory=dict)
    targets: list[tuple[str, str]] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    def figure(self, name: str, value: float | None, unit: str, higher_is_better: bool) -> None:
        """One number; infinity ("never reached") is stored as None, which JSON can hold."""
        value = None if value is None or math.isinf(value) else value
        self.figures[name] = {"value": value, "unit": unit, "higher_is_better": higher_is_better}

    def target(self, name: str, ok: bool | None) -> str:
        """Record a target's verdict; None means this run could not judge it (a peer skipped)."""
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        self.targets.append((name, verdict))
        return verdict


def _num(value: float | None, digits: int = 0, unit: str = "") -> str:
    """1234.5 -> '1,235'; infinity (a run that never got there) -> 'never'; None -> '-'."""
    if value is None:
        return "-"
    return "never" if math.isinf(value) else f"{value:,.{digits}f}{unit}"


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs; infinity means never: never/5 is inf, 5/never is 0, never/never is None."""
    if ours is None or theirs is None or theirs == 0 or (math.isinf(ours) and math.isinf(theirs)):
        return None
    return ours / theirs


def _ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else ("never" if math.isinf(ratio) else f"{ratio:.2f}x")


def _median(values: list[float | None]) -> float | None:
    """Median where None (never reached) counts as infinity, worse than any time (1 or 5 seeds)."""
    return statistics.median_low([math.inf if v is None else v for v in values]) if values else None


@contextlib.contextmanager
def _quiet():
    """The peers print as they build (parameter counts, devices): keep the report readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# ---------------------------------------------------------------------------------------------
# Peers: imported from the folder the user names, never copied
# ---------------------------------------------------------------------------------------------

def load_peers(folder: Path) -> SimpleNamespace:
    """nanoGPT's `model` module and minGPT's GPT and Trainer, from <folder>/nanoGPT, /minGPT."""
    nano_dir, min_dir = folder / "nanoGPT", folder / "minGPT"
    for needed in (nano_dir / "model.py", min_dir / "mingpt" / "trainer.py"):
        if not needed.is_file():
            raise SystemExit(f"--peers {folder}: {needed} is missing; the folder must hold "
                             "checkouts of karpathy/nanoGPT and karpathy/minGPT, named "
                             "nanoGPT/ and minGPT/")
    saved_path = list(sys.path)
    sys.path[:0] = [str(nano_dir), str(min_dir)]
    try:
        nano = importlib.import_module("model")
        mingpt_model = importlib.import_module("mingpt.model")
        mingpt_trainer = importlib.import_module("mingpt.trainer")
    finally:  # their folders also hold bench.py, train.py, tests/: names that must not shadow ours
        sys.path[:] = saved_path
    if Path(nano.__file__).resolve().parent != nano_dir.resolve():
        raise SystemExit(f"'import model' found {nano.__file__}, not nanoGPT's: rename the clash")
    # minGPT's Trainer asks for pinned memory, which a CPU-only torch warns about on every run
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    return SimpleNamespace(folder=folder, nano=nano, MinGPT=mingpt_model.GPT, Trainer=mingpt_trainer.Trainer)


# ---------------------------------------------------------------------------------------------
# Timing, shared by the parts below
# ---------------------------------------------------------------------------------------------

def _median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of `run()` after one untimed call (first calls pay one-time costs)."""
    return _interleaved_medians_ms({"run": run}, repeats)["run"]


def _interleaved_medians_ms(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each run, the runs taking turns round after round (after one untimed
    call each). This machine's speed moves from minute to minute: taking turns puts every figure
    in the same minutes, so their differences (ours against the floor) mean something."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


_FRESH = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                     else "spawn")
# imported once by the server: torch, the engine, and torch._dynamo, which AdamW imports on first use
# (over a second, which each process would otherwise spend inside the measured time)
_FRESH.set_forkserver_preload(["core.training", "torch._dynamo"])


def in_own_process(measure: Callable, *args, threads: int, peers: SimpleNamespace | None = None):
    """`measure(*args)` (with `peers` first where given) in a fresh process, at `threads` threads.

    Each training measurement runs as its own users run it. A process keeps what its code set:
    our loop keeps the memory a step frees for the next step (core/allocator.py), which nanoGPT's
    and minGPT's code never ask for, and which run after ours in one process would have got.
    Processes fork from a server that has imported torch and the engine and run nothing (`spawn`
    where there is no fork server); the peers load again in each, from their folder.
    """
    with ProcessPoolExecutor(1, mp_context=_FRESH, max_tasks_per_child=1) as pool:
        return pool.submit(_measure_here, measure, args, threads, peers and peers.folder).result()


def _measure_here(measure: Callable, args: tuple, threads: int, peers_folder: Path | None):
    torch.set_num_threads(threads)
    return measure(load_peers(peers_folder), *args) if peers_folder else measure(*args)


def weight_matrices(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every weight matrix a token is multiplied by: all 2-D parameters but the embeddings' tables,
    from which a token reads one row."""
    lookups = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return [w for w in model.parameters() if w.dim() == 2 and id(w) not in lookups]


# ---------------------------------------------------------------------------------------------
# The machine's matmul peak
# ---------------------------------------------------------------------------------------------

def matmul_gflops(dtype: torch.dtype, repeats: int, n: int = 1024, inner: int = 10) -> float:
    """Best-of-`repeats` GFLOP/s of (n, n) @ (n, n): the ceiling a model's matmuls can reach."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)  # (n, n) each
    torch.matmul(a, b)  # the first call pays for kernel selection
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b)
        best = min(best, (time.perf_counter() - start) / inner)
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------------------------------------
# 1. Time to learn: minGPT's sort demo against our default sort run
# ---------------------------------------------------------------------------------------------

SORT_LENGTH, SORT_DIGITS = 6, 3  # minGPT's notebook: SortDataset(split, length=6, num_digits=3)
MINGPT_MAX_ITERS, MINGPT_EVAL_EVERY = 2000, 25
OUR_EPOCHS = 60


def sort_split_of(digits: list[int], seed: int) -> str:
    """'test' for a quarter of all problems, by a hash of the digits: a problem's split never
    depends on when it is drawn, so test problems are never trained on. The notebook hashes with
    Python's hash(), which changes per process; this hash changes only with the seed."""
    digest = hashlib.blake2b(repr((seed, digits)).encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "little") % 4 == 0 else "train"


class SortSplit(Dataset):
    """minGPT's notebook SortDataset, as the notebook describes it (our code, not a copy).

    Input 0 0 2 1 0 1 -> output 0 0 0 1 1 2, fed as x = 0 0 2 1 0 1 0 0 0 1 1 and
    y = I I I I I 0 0 0 1 1 2 (I = ignored: -1, what minGPT's loss skips). Examples are drawn with
    torch's global generator; half the time a draw with more than length/2 distinct digits is
    redrawn (the notebook's boost for problems with many repeats, which the model finds hard).
    """

    def __init__(self, split: str, seed: int, length: int = SORT_LENGTH,
                 num_digits: int = SORT_DIGITS):
        self.split, self.seed, self.length, self.num_digits = split, seed, length, num_digits

    def __len__(self) -> int:
        return 10_000  # the notebook's nominal size; minGPT's Trainer samples with replacement

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            digits = torch.randint(self.num_digits, (self.length,))  # (L,)
            if torch.rand(1).item() < 0.5 and digits.unique().numel() > self.length // 2:
                continue
            if sort_split_of(digits.tolist(), self.seed) == self.split:
                break
        sequence = torch.cat([digits, digits.sort().values])  # (2L,)
        x, y = sequence[:-1].clone(), sequence[1:].clone()  # (2L-1,) each
        y[: self.length - 1] = -1  # only the sorted half is predicted
        return x, y


def sort_test_prompts(seed: int) -> torch.Tensor:
    """Every problem of the test split, (N, L): exact match over all of them, not a sample."""
    every = itertools.product(range(SORT_DIGITS), repeat=SORT_LENGTH)
    return torch.tensor([p for p in every if sort_split_of(list(p), seed) == "test"])  # (N, L)


@torch.no_grad()
def mingpt_exact_match(model: torch.nn.Module, prompts: torch.Tensor) -> float:
    """Share of prompts (N, L) that minGPT's own greedy generate sorts exactly."""
    model.eval()
    out = model.generate(prompts, SORT_LENGTH, do_sample=False)  # (N, L) -> (N, 2L)
    model.train()  # minGPT's Trainer sets train mode once, before its loop
    return (out[:, SORT_LENGTH:] == prompts.sort(dim=1).values).all(dim=1).float().mean().item()


def mingpt_time_to_learn(peers: SimpleNamespace, seed: int) -> dict:
    """minGPT's GPT + Trainer at the notebook's settings, evaluated every 25 iterations and
    stopped at the first 100%. Seconds come with the evaluations' time (`wall_s`) and without
    (`train_s`)."""
    torch.manual_seed(seed)
    model_config = peers.MinGPT.get_default_config()
    model_config.model_type = "gpt-nano"  # 3 layers, 3 heads, 48 wide
    model_config.vocab_size, model_config.block_size = SORT_DIGITS, 2 * SORT_LENGTH - 1
    train_config = peers.Trainer.get_default_config()  # batch 64, AdamW, clip 1.0
    train_config.learning_rate, train_config.max_iters = 5e-4, MINGPT_MAX_ITERS
    train_config.num_workers = 0
    with _quiet():
        model = peers.MinGPT(model_config)
        trainer = peers.Trainer(train_config, model, SortSplit("train", seed))
    prompts = sort_test_prompts(seed)
    result = {"steps": None, "wall_s": None, "train_s": None, "eval_s": 0.0, "best_accuracy": 0.0,
              "test_prompts": len(prompts)}
    start = 0.0

    def on_batch_end(trainer) -> None:
        steps = trainer.iter_num + 1  # the Trainer counts a step only after its callbacks
        if steps % MINGPT_EVAL_EVERY:
            return
        eval_start = time.perf_counter()
        accuracy = mingpt_exact_match(model, prompts)
        result["eval_s"] += time.perf_counter() - eval_start
        result["best_accuracy"] = max(result["best_accuracy"], accuracy)
        if accuracy == 1.0:
            wall = time.perf_counter() - start
            result.update(steps=steps, wall_s=wall, train_s=wall - result["eval_s"])
            trainer.config.max_iters = steps  # the Trainer's own stop condition ends the run

    trainer.set_callback("on_batch_end", on_batch_end)
    start = time.perf_counter()
    with _quiet():
        trainer.run()
    result["run_s"] = time.perf_counter() - start
    return result


def ours_time_to_learn(seed: int) -> dict:
    """Our default sort run through the public API, to the first epoch-end at 100% exact match.

    `wall_s` is the loop's own clock there (validation included); `train_s` takes out the time
    from each epoch's last step to its record (validation, accuracy); `total_s` runs to the end.
    """
    task = make_task(TaskConfig(seed=seed))
    model_config = ModelConfig(vocab_size=len(task.vocab), d_model_configs=[48] * 3,
                               dim_feedforward_configs=[192] * 3, nhead=3)
    train_config = TrainConfig(epochs=OUR_EPOCHS, seed=seed)
    result = {"steps": None, "epoch": None, "wall_s": None, "train_s": None, "best_accuracy": 0.0,
              "precision": getattr(train_config, "precision", "fp32"),
              "dropout": model_config.dropout}
    last_step_s, eval_s, step = 0.0, 0.0, 0
    start = time.perf_counter()
    for event in train_task(task, model_config, train_config):
        if isinstance(event, StepEvent):
            last_step_s, step = event.elapsed_s, event.step
        elif isinstance(event, EpochEvent):
            record = event.record
            eval_s += record.elapsed_s - last_step_s
            result["best_accuracy"] = max(result["best_accuracy"], record.val_accuracy or 0.0)
            if record.val_accuracy == 1.0 and result["steps"] is None:
                result.update(steps=step, epoch=record.epoch, wall_s=record.elapsed_s,
                              train_s=record.elapsed_s - eval_s)
        elif isinstance(event, FitResult):
            result.update(stop_reason=event.stop_reason, final_step=step)
    result["total_s"] = time.perf_counter() - start
    return result


def run_learn(report: Report, peers: SimpleNamespace | None, seeds: list[int]) -> None:
    """Both sides for each seed, then the medians beside the targets."""
    ours, theirs = [], []
    threads = torch.get_num_threads()
    for seed in seeds:
        ours.append(in_own_process(ours_time_to_learn, seed, threads=threads))
        theirs.append(in_own_process(mingpt_time_to_learn, seed, threads=threads, peers=peers) if peers else None)
        _print_learn_seed(seed, ours[-1], theirs[-1])
    report.details["learn"] = {"seeds": seeds, "ours": ours, "minGPT": theirs}
    keys = {"steps": "steps", "wall_s": "s", "train_s": "s", "total_s": "s"}
    med = {key: _median([r[key] for r in ours]) for key in keys}
    mg = {key: _median([r[key] for r in theirs]) for key in keys if key != "total_s"} \
        if peers else None
    for key, unit in keys.items():
        report.figure(f"learn ours {key}", med[key], unit, higher_is_better=False)
        if mg and key in mg:
            report.figure(f"learn minGPT {key}", mg[key], unit, higher_is_better=False)
    _print_learn(report, med, mg, ours, theirs)


def _print_learn_seed(seed: int, ours: dict, theirs: dict | None) -> None:
    if ours["steps"]:
        mine = (f"epoch {ours['epoch']}, step {ours['steps']}, {ours['wall_s']:.2f} s "
                f"({ours['train_s']:.2f} s training)")
    else:
        mine = f"never 100% (best {ours['best_accuracy']:.1%})"
    mine += f", ran {ours['total_s']:.2f} s to '{ours.get('stop_reason')}' ({ours['precision']})"
    peer = "skipped"
    if theirs and theirs["steps"]:
        peer = (f"step {theirs['steps']}, {theirs['wall_s']:.2f} s "
                f"({theirs['train_s']:.2f} s training)")
    elif theirs:
        peer = (f"not 100% within {MINGPT_MAX_ITERS} iterations "
                f"(best {theirs['best_accuracy']:.1%})")
    print(f"  seed {seed}: ours {mine} | minGPT {peer}", flush=True)


def _print_learn(report: Report, med: dict, mg: dict | None, ours: list[dict],
                 theirs: list[dict | None]) -> None:
    n = len(ours)
    solved = f" ({sum(r['steps'] is not None for r in ours)}/{n} solved)"
    mg_solved = f" ({sum(r['steps'] is not None for r in theirs)}/{n} solved)" if mg else ""

    def peer(key: str, digits: int = 2, unit: str = " s") -> str:
        return f"minGPT {_num(mg[key], digits, unit)}" if mg else "minGPT skipped"

    def ratio(key: str, their_key: str | None = None) -> float | None:
        return _ratio(med[key], mg[their_key or key]) if mg else None

    verdict = report.target("learn: ours <= 300 steps (median)", med["steps"] <= 300)
    print(f"learn steps    ours {_num(med['steps'])}{solved} | {peer('steps', 0, '')}{mg_solved} | "
          f"{_ratio_text(ratio('steps'))} (target ours <= 300) {verdict} [median of {n}]")
    r = ratio("wall_s")
    floor = report.target("learn: ours <= minGPT's seconds (floor)", None if r is None else r <= 1)
    aim = report.target("learn: ours <= 1/3 of minGPT's seconds (aim)",
                        None if r is None else r <= 1 / 3)
    print(f"learn seconds  ours {_num(med['wall_s'], 2, ' s')} | {peer('wall_s')} | "
          f"{_ratio_text(r)} (to first 100%, evaluation included; target <= 1x {floor}, "
          f"aim <= 0.33x {aim})")
    print(f"learn train s  ours {_num(med['train_s'], 2, ' s')} | {peer('train_s')} | "
          f"{_ratio_text(ratio('train_s'))} (to first 100%, evaluation excluded; not judged)")
    stops = ", ".join(sorted({str(r.get("stop_reason")) for r in ours}))
    print(f"learn total    ours {_num(med['total_s'], 2, ' s')} to the run's end (stop: {stops}) | "
          f"{peer('wall_s')} to first 100% | {_ratio_text(ratio('total_s', 'wall_s'))} "
          f"(not judged)")


# ---------------------------------------------------------------------------------------------
# 2. Throughput: our training loop against nanoGPT's model.py
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """A GPT-style model and its batch: L layers of width C with H heads, context T, batch B."""

    layers: int
    width: int
    heads: int
    context: int
    batch: int

    def model_config(self, vocab_size: int) -> ModelConfig:
        """Our model of this shape: feed-forward 4x the width, no dropout (as nanoGPT is run)."""
        return ModelConfig(vocab_size, [self.width] * self.layers, [4 * self.width] * self.layers,
                           self.heads, 0.0)


SHAPES = {"S": Shape(4, 128, 4, 64, 64), "M": Shape(6, 256, 8, 128, 32)}
GOALS = {"S": 1.5, "M": 2.0}  # ours / nanoGPT tokens per second
# Each contender's best round counts. Five rather than three: within one run, M's rounds (about
# 35 s each) read anywhere from 1.77x to 2.17x as the machine's neighbours came and went, and
# more rounds give each contender more chances of a quiet minute.
THROUGHPUT_ROUNDS = 5
VOCAB = string.ascii_letters + string.digits + " .,"  # 65 characters, as nanoGPT's Shakespeare
assert len(VOCAB) == 65


def random_text(chars: int = 200_000, seed: int = 0) -> str:
    """Random characters over the 65-character vocabulary: speed does not depend on meaning."""
    text = "".join(random.Random(seed).choices(VOCAB, k=chars))
    assert len(set(text)) == len(VOCAB)
    return text


def flops_per_token(shape: Shape, parameters: int) -> float:
    """nanoGPT's estimate_mfu: 6 per weight (forward and backward) + attention's 12 * L * T * C."""
    return 6 * parameters + 12 * shape.layers * shape.context * shape.width


def our_train_config(precision: str, **options) -> TrainConfig | None:
    """A TrainConfig at `precision`; None if this engine has no `precision` yet (fp32 is then
    the plain config, and the other precisions are skipped)."""
    try:
        return TrainConfig(precision=precision, **options)
    except TypeError:
        return TrainConfig(**options) if precision == "fp32" else None


def uses_bf16(precision: str) -> bool:
    """Whether a run at `precision` trains in bf16 here: the engine's own rule where it has one."""
    decide = getattr(core.training, "autocast_dtype", None)
    with contextlib.suppress(TypeError):
        if callable(decide):
            return decide(precision, torch.device("cpu")) == torch.bfloat16
    return precision == "bf16" or (precision == "auto" and torch.cpu._is_avx512_bf16_supported())


def ours_throughput(shape: Shape, precision: str, warmup: int, steps: int,
                    text: str) -> dict | None:
    """Tokens/s of `train_task` on a text task, timed from the StepEvent that ends the warm-up
    to the last one (the loader's batching is part of our loop, so it is timed too)."""
    train_config = our_train_config(precision, epochs=1, batch_size=shape.batch, seed=0)
    if train_config is None:
        return None
    task = make_task(TaskConfig(kind="text", seq_len=shape.context, val_size=shape.batch,
                                train_size=shape.batch * (warmup + steps), seed=0, text=text))
    model_config = shape.model_config(len(task.vocab))
    ends = [0.0]  # when each step ended, from the run's start
    for event in train_task(task, model_config, train_config):
        if isinstance(event, StepEvent):
            ends.append(event.elapsed_s)
            if event.step == warmup + steps:
                break  # the timed steps are done: skip the epoch's validation
    # the embedding is a lookup, not a matmul: count every other weight, as nanoGPT counts its own
    parameters = model_config.num_parameters() - len(task.vocab) * shape.width
    return {**_step_speed(shape, ends[warmup:]), "flops_per_token": flops_per_token(shape, parameters),
            "bf16": uses_bf16(precision)}


def _step_speed(shape: Shape, ends: list[float]) -> dict:
    """Tokens/s from the times the timed steps ended (`ends[0]`: when the first one began).

    The median step rather than the mean: a neighbour on this shared machine stretches a step or
    two of a round now and then, and the median leaves those out for every contender alike. The
    mean's figure is kept beside it, so a run shows what the choice changed."""
    seconds = [end - start for start, end in itertools.pairwise(ends)]
    tokens = shape.batch * shape.context
    return {"tokens_per_s": tokens / statistics.median(seconds),
            "mean_tokens_per_s": tokens * len(seconds) / (ends[-1] - ends[0])}


def linear_matmuls_ms(shape: Shape, dtype: torch.dtype, repeats: int) -> float:
    """One training step of the linear layers' matmuls alone, for our model of `shape`: per weight
    matrix the forward product and the backward pair (input and weight gradients), in `dtype`.
    No step can be shorter; what a step spends beyond it is attention, norms, activations,
    casts and the optimizer."""
    tokens = shape.batch * shape.context
    model = build_model(shape.model_config(len(VOCAB)))
    products = []
    for weight in weight_matrices(model):  # (C_out, C_in)
        w = weight.detach().to(dtype)
        x = torch.randn(tokens, w.size(1), dtype=dtype)  # (B*T, C_in): the layer's input
        dy = torch.randn(tokens, w.size(0), dtype=dtype)  # (B*T, C_out): its output's gradient
        products.append((w, x, dy))

    def step() -> None:
        for w, x, dy in products:
            x @ w.t()  # forward: (B*T, C_in) -> (B*T, C_out)
            dy @ w  # input gradient: (B*T, C_out) -> (B*T, C_in)
            dy.t() @ x  # weight gradient: (C_out, C_in)
    return _median_ms(step, repeats)


def nanogpt_throughput(peers: SimpleNamespace, shape: Shape, warmup: int, steps: int) -> dict:
    """nanoGPT's GPT in fp32, dropout 0, AdamW from its configure_optimizers; a plain loop of
    forward, backward, clip 1.0, step over random tokens."""
    nano = peers.nano
    torch.manual_seed(0)
    config = nano.GPTConfig(block_size=shape.context, vocab_size=len(VOCAB), n_layer=shape.layers,
                            n_head=shape.heads, n_embd=shape.width, dropout=0.0)
    with _quiet():
        model = nano.GPT(config)
        optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=6e-4,
                                               betas=(0.9, 0.95), device_type="cpu")
    windows = torch.randint(len(VOCAB), (warmup + steps, shape.batch, shape.context + 1))
    # (N, B, T+1) -> inputs and next-token targets, (N, B, T) each; contiguous like nanoGPT's
    # get_batch, since its loss views the targets flat
    inputs, targets = windows[..., :-1].contiguous(), windows[..., 1:].contiguous()
    model.train()
    ends = [time.perf_counter()]  # when each step ended, and when the first began
    for x, y in zip(inputs, targets):  # (B, T), (B, T)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ends.append(time.perf_counter())
    return {**_step_speed(shape, ends[warmup:]),
            "flops_per_token": flops_per_token(shape, model.get_num_params()), "bf16": False}


def _best_of_rounds(contenders: dict, rounds: int) -> tuple[dict, dict]:
    """Run each contender once per round, interleaved, and keep each one's fastest round:
    on a shared 2-core machine a neighbour slows whichever run it overlaps, never speeds it.
    Also returns every round's tokens/s per contender, for the JSON."""
    best: dict[str, dict | None] = {}
    every: dict[str, list[float | None]] = {who: [] for who in contenders}
    for _ in range(rounds):
        for who, run in contenders.items():
            result = run()
            every[who].append(result and result["tokens_per_s"])
            if who not in best or (result and result["tokens_per_s"] > best[who]["tokens_per_s"]):
                best[who] = result
    return best, every


def run_throughput(report: Report, peers: SimpleNamespace | None, quick: bool,
                   peak: dict[str, float], repeats: int) -> None:
    """For S and M: nanoGPT, ours fp32 and ours auto, each run in a process of its own, taking turns;
    the matmul peak is measured again after each shape's rounds (`measure_peak`)."""
    text = random_text()
    rounds = 1 if quick else THROUGHPUT_ROUNDS
    own = partial(in_own_process, threads=torch.get_num_threads())
    for name, shape in SHAPES.items():
        warmup, steps = (2, 4) if quick else (3, 24 if name == "S" else 10)
        contenders = {"ours(fp32)": partial(own, ours_throughput, shape, "fp32", warmup, steps, text),
                      "ours(auto)": partial(own, ours_throughput, shape, "auto", warmup, steps, text)}
        if peers:
            contenders["nanoGPT"] = partial(own, nanogpt_throughput, shape, warmup, steps, peers=peers)
        runs, every_round = _best_of_rounds(contenders, rounds)
        peak = measure_peak(report, repeats, peak)
        report.details[f"throughput {name}"] = {"shape": asdict(shape), "warmup": warmup, "steps": steps,
                                                "rounds": rounds, **runs, "every round": every_round}
        for who, run in runs.items():
            if run is not None:
                report.figure(f"throughput {name} {who} tok/s", run["tokens_per_s"], "tok/s",
                              higher_is_better=True)
        _print_throughput(report, name, runs, peak, f"median of {steps} steps, best of {rounds} rounds")


def _print_throughput(report: Report, name: str, runs: dict, peak: dict[str, float],
                      how: str) -> None:
    goal, theirs = GOALS[name], runs.get("nanoGPT")
    peer = f"nanoGPT {_num(theirs['tokens_per_s'])} tok/s" if theirs else "nanoGPT skipped"
    for who in ("ours(fp32)", "ours(auto)"):
        mine = runs[who]
        if mine is None:
            print(f"throughput {name}   {who} skipped: this engine's TrainConfig has no precision")
            continue
        ratio = _ratio(mine["tokens_per_s"], theirs and theirs["tokens_per_s"])
        verdict = report.target(f"throughput {name} {who} >= {goal:g}x nanoGPT",
                                None if ratio is None else ratio >= goal)
        print(f"throughput {name}   {who} {_num(mine['tokens_per_s'])} tok/s | {peer} | "
              f"{_ratio_text(ratio)} (target >= {goal:g}x) {verdict} [{how}]")
    shares = []
    for who, run in runs.items():
        if run is None:
            continue
        gflops = run["flops_per_token"] * run["tokens_per_s"] / 1e9
        kind = "bf16" if run["bf16"] else "fp32"
        percent = 100 * gflops / peak[kind]
        report.figure(f"throughput {name} {who} % of peak", percent, "%", higher_is_better=True)
        shares.append(f"{who} {gflops:,.0f} GFLOP/s = {percent:.0f}% of {kind} peak")
    print(f"peak share {name}   " + " | ".join(shares))
    if theirs:  # how far the target is from what the machine can do at all
        needed = goal * theirs["flops_per_token"] * theirs["tokens_per_s"] / 1e9
        print(f"target {name}       {goal:g}x nanoGPT means {needed:,.0f} GFLOP/s: {100 * needed / peak['bf16']:.0f}% "
              f"of the bf16 peak, {100 * needed / peak['fp32']:.0f}% of the fp32 peak")
    mine = runs["ours(auto)"]
    if theirs and mine and mine["bf16"]:
        _print_matmul_floor(report, name, goal, theirs, mine)


def _print_matmul_floor(report: Report, name: str, goal: float, theirs: dict, mine: dict) -> None:
    """The target as a step time, and how much of it the linear layers' matmuls alone take."""
    shape = SHAPES[name]
    tokens = shape.batch * shape.context
    floor_ms = linear_matmuls_ms(shape, torch.bfloat16, repeats=5)
    goal_ms = 1000 * tokens / (goal * theirs["tokens_per_s"])
    step_ms = 1000 * tokens / mine["tokens_per_s"]
    report.figure(f"throughput {name} linear matmuls alone ms", floor_ms, "ms", higher_is_better=False)
    print(f"floor {name}        a step at {goal:g}x nanoGPT is {goal_ms:,.0f} ms; the linear layers' matmuls alone "
          f"(bf16, forward and backward) take {floor_ms:,.0f} ms of it, leaving {goal_ms - floor_ms:,.0f} ms for "
          f"the rest; ours(auto) spends {step_ms - floor_ms:,.0f} ms on the rest ({step_ms:,.0f} ms a step)")


# ---------------------------------------------------------------------------------------------
# 3. Sampling: 64 new tokens at batch 1 from a config-M model
# ---------------------------------------------------------------------------------------------

NEW_TOKENS, PROMPT_TOKENS = 64, 16


def weights_only(model: torch.nn.Module, tokens: int) -> Callable[[], None]:
    """What reading every weight matrix once per token costs here: `tokens` rounds of one
    matrix-vector product per matrix, through the product the cache uses (`StepLinear`), nothing
    else. At batch 1 each new token needs every weight, so our sampler cannot beat it."""
    matrices = weight_matrices(model)
    vectors = {m.size(1): torch.randn(1, m.size(1)) for m in matrices}  # (1, C_in) per input width
    linear = StepLinear(one_call_for(model))  # the row kernel wherever a token takes one call

    @torch.inference_mode()
    def stream() -> None:
        for _ in range(tokens):
            for m in matrices:
                linear(vectors[m.size(1)], m, None)  # (1, C_in) -> (1, C_out)
    return stream


def weights_summed(model: torch.nn.Module, tokens: int) -> Callable[[], None]:
    """`tokens` rounds of one `sum` over each weight matrix: what reading the weights alone costs,
    the memory's floor, beneath any product's (a product reads each weight once too, but must
    also multiply, and PyTorch's products also write a matrix-sized intermediate)."""
    matrices = weight_matrices(model)

    @torch.inference_mode()
    def stream() -> None:
        for _ in range(tokens):
            for m in matrices:
                m.sum()
    return stream


def run_sampling(report: Report, peers: SimpleNamespace | None, repeats: int) -> None:
    """Untrained models of config M's size (speed does not depend on the weights), one prompt."""
    shape = SHAPES["M"]
    torch.manual_seed(0)
    prompt = torch.randint(len(VOCAB), (1, PROMPT_TOKENS))  # (1, P)
    ours = build_model(shape.model_config(len(VOCAB))).eval()
    config = SampleConfig(max_new_tokens=NEW_TOKENS, greedy=True)
    runs = {"ours(cache)": lambda: generate(ours, prompt, config, block_size=shape.context),
            "ours(no cache)": lambda: generate(ours, prompt, config, block_size=shape.context,
                                               use_cache=False),
            "weights only": weights_only(ours, NEW_TOKENS), "weights summed": weights_summed(ours, NEW_TOKENS)}
    if peers:
        with _quiet():
            theirs = peers.nano.GPT(peers.nano.GPTConfig(
                block_size=shape.context, vocab_size=len(VOCAB), n_layer=shape.layers,
                n_head=shape.heads, n_embd=shape.width, dropout=0.0)).eval()
        runs["nanoGPT"] = lambda: theirs.generate(prompt, NEW_TOKENS, top_k=1)
    ms = _interleaved_medians_ms(runs, repeats)
    for who, value in ms.items():
        report.figure(f"sampling M {who} ms", value, "ms", higher_is_better=False)
    report.details["sampling"] = {"prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS,
                                  "repeats": repeats, **ms}
    verdict = report.target("sampling: ours <= 100 ms", ms["ours(cache)"] <= 100)
    peer = f"nanoGPT {ms['nanoGPT']:,.0f} ms" if "nanoGPT" in ms else "nanoGPT skipped"
    print(f"sampling M     ours(cache) {ms['ours(cache)']:,.0f} ms | ours(no cache) "
          f"{ms['ours(no cache)']:,.0f} ms | {peer} | "
          f"{_ratio_text(_ratio(ms['ours(cache)'], ms.get('nanoGPT')))} (target ours <= 100 ms) "
          f"{verdict} [{NEW_TOKENS} tokens after {PROMPT_TOKENS}, batch 1, median of {repeats}, taking turns]")
    print(f"               the floor here: every weight times one vector, {NEW_TOKENS} times, takes "
          f"{ms['weights only']:,.0f} ms (the cache's matrix-vector products alone; ours(cache) spends "
          f"{ms['ours(cache)'] - ms['weights only']:,.0f} ms beyond it); summing every weight "
          f"{NEW_TOKENS} times takes {ms['weights summed']:,.0f} ms (the memory's floor)")


# ---------------------------------------------------------------------------------------------
# Command line, JSON, comparison
# ---------------------------------------------------------------------------------------------

def compare(report: Report, previous_path: Path) -> None:
    """Each figure beside a previous run's, as now / before, saying which way is better."""
    previous = json.loads(previous_path.read_text()).get("figures", {})
    print(f"\nagainst {previous_path}:")
    for name, now in report.figures.items():
        before = previous.get(name, {}).get("value")
        ratio = _ratio(now["value"], before)
        better = "" if ratio is None or ratio == 1 else (
            " better" if (ratio > 1) == now["higher_is_better"] else " worse")
        print(f"  {name:<36} {_num(now['value'], 2):>10} | before {_num(before, 2):>10} | "
              f"{_ratio_text(ratio)}{better}")


def _cpu_name() -> str:
    """The CPU's model name (Linux), else the architecture: timings compare only on the same."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=Path, help="folder holding nanoGPT/ and minGPT/ checkouts")
    parser.add_argument("--quick", action="store_true", help="seed 0, few steps: a smoke check")
    parser.add_argument("--threads", type=int, help="torch threads for all (default: torch's)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--compare", type=Path, help="a previous --json file to compare with")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part {', '.join(sorted(unknown))}: choose from {', '.join(PARTS)}")
    return args


def measure_peak(report: Report, repeats: int, earlier: dict[str, float] | None = None) -> dict[str, float]:
    """The fp32 and bf16 matmul peaks, each the best of this measurement and `earlier`'s.

    One measurement takes about a second, and a neighbour's burst can cover all of it: once the
    bf16 peak read 118 GFLOP/s, under the fp32 peak's 156 (390-430 on other runs), and every
    share of it came out at 165-241%. So `run_throughput` measures again after each shape's
    rounds, and the shares use the best reading so far.
    """
    measured = {"fp32": matmul_gflops(torch.float32, repeats), "bf16": matmul_gflops(torch.bfloat16, repeats)}
    peak = {kind: max(value, (earlier or {}).get(kind, 0.0)) for kind, value in measured.items()}
    for kind, value in peak.items():
        report.figure(f"matmul peak {kind} GFLOP/s", value, "GFLOP/s", higher_is_better=True)
    so_far = "" if earlier is None else f"; best so far fp32 {peak['fp32']:,.0f}, bf16 {peak['bf16']:,.0f}"
    print(f"matmul peak    fp32 {measured['fp32']:,.0f} GFLOP/s | bf16 {measured['bf16']:,.0f} GFLOP/s "
          f"(1024x1024 @ 1024x1024, best of {repeats}{so_far})")
    return peak


def write_json(path: Path, report: Report, args: argparse.Namespace, threads: int,
               crashed: list[str]) -> None:
    path.write_text(json.dumps({
        "threads": threads, "quick": args.quick, "torch": torch.__version__, "cpu": _cpu_name(),
        "peers": str(args.peers) if args.peers else None, "crashed": crashed,
        "figures": report.figures, "targets": dict(report.targets), "details": report.details,
    }, indent=2, default=str))
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    peers = load_peers(args.peers) if args.peers else None
    report, threads = Report(), torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads (torch.get_num_threads()), {_cpu_name()}"
          f"{'; quick: a smoke check, not a measurement' if args.quick else ''}")
    if peers is None:
        print("no --peers: skipped minGPT's time to learn, nanoGPT's throughput and sampling; "
              "measuring ours and the matmul peak only")
    repeats = 3 if args.quick else 5
    peak = measure_peak(report, repeats)
    parts = {"learn": lambda: run_learn(report, peers, [0] if args.quick else list(range(5))),
             "throughput": lambda: run_throughput(report, peers, args.quick, peak, repeats),
             "sampling": lambda: run_sampling(report, peers, repeats)}
    crashed = []
    for name in args.parts:
        try:  # one part's crash must not cost the other parts their figures
            parts[name]()
        except Exception:  # noqa: BLE001 - printed in full, and the exit status says so
            traceback.print_exc()
            print(f"!! {name} crashed (traceback above); its figures are missing", flush=True)
            crashed.append(name)
    if torch.get_num_threads() != threads:
        print(f"!! the thread count changed during the run: {threads} -> {torch.get_num_threads()}")

    print("\nsummary:")
    for name, verdict in report.targets:
        print(f"  {verdict:<4} {name}")
    if args.json:
        write_json(args.json, report, args, threads, crashed)
    if args.compare:
        compare(report, args.compare)
    if crashed:
        print(f"crashed: {', '.join(crashed)}")
    return 1 if crashed else 0


if __name__ == "__main__":
    # run as bench.peers, not as __main__: the measurements it hands to other processes
    # (in_own_process) are found there by their module's name
    from bench import peers as this_module
    sys.exit(this_module.main())
