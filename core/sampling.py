"""Autoregressive sampling from a causal LM: greedy, temperature, top-k, top-p."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .config import Limits, SampleConfig
from .data import Task
from .kv_cache import CachedDecoder, supports_kv_cache
from .model import attention_weights


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the smallest top-p nucleus. (B, V) -> (B, V)"""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (B, V)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)  # (B, V)
        # drop a token once the tokens *before* it already hold top_p of the mass; keeps >= 1 token
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _next_logits_fn(model: nn.Module, block_size: int | None,
                    use_cache: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, L) sequence so far -> (B, V) next-token logits: cached for our models, else forward."""
    if use_cache and supports_kv_cache(model):
        return CachedDecoder(model, block_size).next_logits

    def uncached(ids: torch.Tensor) -> torch.Tensor:
        context = ids if block_size is None else ids[:, -block_size:]  # (B, <=block)
        return model(context)[:, -1, :]  # (B, T, V) -> (B, V)
    return uncached


@torch.no_grad()
def generate(model: nn.Module, prompt_ids: torch.Tensor | list[int], config: SampleConfig | None = None,
             block_size: int | None = None, limits: Limits | None = None,
             use_cache: bool = True) -> torch.Tensor:
    """Continue `prompt_ids` (T,) or (B, T) by `config.max_new_tokens` tokens; returns only the new ones.

    The model runs in eval mode without gradients (its mode is restored afterwards). Temperature 0
    means greedy; top-k larger than the vocabulary is clamped. With `block_size`, the context is
    cropped to the last `block_size` tokens, the length the model was trained on.
    Our models keep a key/value cache so each token is encoded once; `use_cache=False` re-encodes
    the whole context every step (same tokens, slower; models without a cache always do).
    """
    config = (config or SampleConfig()).validate(limits)
    device = next(model.parameters()).device
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    squeeze = ids.dim() == 1
    if squeeze:
        ids = ids.unsqueeze(0)  # (T,) -> (1, T)
    if ids.size(1) == 0:
        raise ValueError("the prompt is empty: give at least one token")
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(config.seed))
    was_training = model.training
    model.eval()
    new_tokens = []
    next_logits = _next_logits_fn(model, block_size, use_cache)
    try:
        for _ in range(int(config.max_new_tokens)):
            logits = next_logits(ids).float()  # (B, T) -> (B, V)
            if config.is_greedy:
                next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                vocab = logits.size(-1)
                top_k = None if config.top_k is None else min(int(config.top_k), vocab)
                logits = _filter_logits(logits / float(config.temperature), top_k, config.top_p)
                next_id = torch.multinomial(logits.softmax(-1), 1, generator=generator)  # (B, 1)
            new_tokens.append(next_id)
            ids = torch.cat([ids, next_id], dim=1)  # (B, T) -> (B, T+1)
    finally:
        model.train(was_training)
    out = torch.cat(new_tokens, dim=1)  # (B, max_new_tokens)
    return out.squeeze(0) if squeeze else out


def greedy_answers(model: nn.Module, prompts: torch.Tensor, answer_len: int) -> torch.Tensor:
    """Greedy answers for a batch of equal-length prompts: (B, P) -> (B, answer_len)."""
    return generate(model, prompts, SampleConfig(max_new_tokens=answer_len, greedy=True))


def sample_text(model: nn.Module, task: Task, prompt: str, config: SampleConfig | None = None,
                limits: Limits | None = None) -> str:
    """The model's continuation of a typed prompt, checked against the task's format first."""
    task.check_prompt(prompt)
    device = next(model.parameters()).device
    ids = torch.tensor(task.vocab.encode(prompt), device=device)  # (T,)
    new_ids = generate(model, ids, config, block_size=task.block_size, limits=limits)  # (N,)
    return task.vocab.decode(new_ids.tolist())


def attention_on_example(model: nn.Module, task: Task, prompt: str) -> tuple[list[np.ndarray], list[str]]:
    """Per layer, the attention maps (H, T, T) of `model` on a prompt followed by its own greedy answer.

    For algorithmic tasks the prompt must be a valid one and the answer is appended, so the maps
    show how the answer attends to the prompt. Returns the maps and the tokens they are over.
    """
    if task.problem is not None:
        prompt = prompt.strip("\n")
        prompt += sample_text(model, task, prompt, SampleConfig(task.problem.answer_len, greedy=True))
    text = prompt[: task.block_size]  # the length the model was trained on
    if not text:
        raise ValueError("type an example to look at")
    device = next(model.parameters()).device
    ids = torch.tensor([task.vocab.encode(text)], device=device)  # (1, T)
    maps = [w[0].cpu().numpy() for w in attention_weights(model, ids)]  # each (H, T, T)
    return maps, list(text)
