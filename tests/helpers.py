"""Tiny builders shared by the core tests.

Plain functions and classes rather than fixtures, so hypothesis tests can call them too.
Everything here is sized to run in milliseconds on a 2-core CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import strategies as st
from torch import nn

from core.config import ModelConfig, TaskConfig
from core.data import Task, make_task
from core.model import build_model
from core.training import precision_context


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; two threads on a shared 2-core machine spin-wait.

    Import this into a test module to make it autouse there. Restores the count afterwards.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(vocab_size: int = 5, d_models=(16,), ffs=None, nhead=2, dropout: float = 0.0,
                model_type: str = "configurable") -> ModelConfig:
    d_models = list(d_models)
    ffs = list(ffs) if ffs is not None else [2 * d for d in d_models]
    return ModelConfig(vocab_size, d_models, ffs, nhead, dropout, model_type)


def tiny_model(vocab_size: int = 5, d_models=(16,), ffs=None, nhead=2, dropout: float = 0.0,
               model_type: str = "configurable", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_config(vocab_size, d_models, ffs, nhead, dropout, model_type))


def tiny_task(kind: str = "sort", seq_len: int = 4, num_digits: int = 3, train_size: int = 64,
              val_size: int = 16, seed: int = 0, text: str | None = None) -> Task:
    return make_task(TaskConfig(kind, seq_len, num_digits, train_size, val_size, seed, text))


def model_config_for(task: Task, d_models=(16,), ffs=None, nhead=2, dropout: float = 0.0,
                     model_type: str = "configurable") -> ModelConfig:
    return tiny_config(len(task.vocab), d_models, ffs, nhead, dropout, model_type)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer, to compare models later."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@st.composite
def layer_stacks(draw, max_layers: int = 3):
    """(d_model_configs, dim_feedforward_configs, heads) with every d_model divisible by its nhead."""
    n = draw(st.integers(1, max_layers))
    heads = draw(st.lists(st.sampled_from([1, 2, 4]), min_size=n, max_size=n))
    d_models = [h * draw(st.sampled_from([2, 3, 4])) for h in heads]
    ffs = draw(st.lists(st.integers(1, 24), min_size=n, max_size=n))
    return d_models, ffs, heads


class FixedLogits(nn.Module):
    """A 'model' that predicts the same next-token distribution at every position."""

    def __init__(self, probs: list[float]):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([math.log(p) for p in probs]))
        self.calls: list[int] = []  # input lengths seen

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        self.calls.append(src.size(1))
        b, t = src.shape
        return self.logits.expand(b, t, -1)  # (B, T, V)


class CopyOracle(nn.Module):
    """Perfect for the copy task of `n` symbols: after the prompt, predict the token n-1 back."""

    def __init__(self, n: int, vocab_size: int):
        super().__init__()
        self.n, self.vocab_size = n, vocab_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        b, t = src.shape
        logits = torch.zeros(b, t, self.vocab_size)
        for pos in range(self.n - 1, t):
            logits[torch.arange(b), pos, src[:, pos - self.n + 1]] = 10.0
        return logits + 0 * self.dummy


class AlwaysToken(nn.Module):
    """Always predicts token `token_id`."""

    def __init__(self, token_id: int, vocab_size: int):
        super().__init__()
        self.token_id, self.vocab_size = token_id, vocab_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        b, t = src.shape
        logits = torch.zeros(b, t, self.vocab_size)
        logits[..., self.token_id] = 10.0
        return logits + 0 * self.dummy


def attention_kernels_run(dtype: torch.dtype | None, device: str = "cpu") -> set[str]:
    """Names of the attention kernels one training step of a small model runs under `dtype` on `device`,
    through `core.training.precision_context` as the training loop enters it."""
    model = build_model(ModelConfig(7, [32, 32], [64, 64], 2, 0.0), device)
    x = torch.randint(7, (4, 6), device=device)  # (B, T)
    with torch.profiler.profile() as profile:
        with precision_context(torch.device(device), dtype):
            loss = model(x).float().logsumexp(-1).mean()  # (B, T, V) -> ()
        loss.backward()
    return {e.key for e in profile.key_averages() if "scaled_dot_product" in e.key}
