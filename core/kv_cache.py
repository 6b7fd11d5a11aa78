"""A key/value cache for autoregressive sampling, run on the encoder layers' own weights.

Without a cache, each new token re-encodes the whole context, so sampling N tokens costs N
full forward passes. In a causal model the keys and values of a position never change once
computed (it sees only the past), so each encoder layer can keep them and a new token needs
one position's worth of work plus its attention over the kept keys.

Nothing here holds a weight: each step reads `norm1`, `self_attn.in_proj_weight`/`in_proj_bias`,
`self_attn.out_proj`, `norm2`, `linear1`, `activation` and `linear2` from the
`nn.TransformerEncoderLayer` itself, so sampling uses exactly the parameters `forward` uses, and
`forward` is untouched. The cache holds only keys and values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import merge_heads, split_heads
from .masks import generate_square_subsequent_mask
from .model import _CausalLM


def supports_kv_cache(model: nn.Module) -> bool:
    """Our causal models: pre-norm encoder layers with packed q/k/v weights. Anything else is re-run
    whole (without the mask a new token changes every earlier position, so nothing can be kept)."""
    return isinstance(model, _CausalLM) and model.causal and all(
        layer.norm_first and layer.self_attn.in_proj_weight is not None
        for layer in model.encoder_layers())


class LayerCache:
    """The keys and values one encoder layer has computed so far, (B, H, T_past, Dh) each.

    They live in buffers that double when full, so appending a token writes one position instead
    of copying every past one (a `torch.cat` per token was a tenth of the sampling time).
    """

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None  # (B, H, capacity, Dh)
        self.values: torch.Tensor | None = None
        self.length = 0

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the new positions' keys and values; return all, (B, H, T_past + T_new, Dh) each."""
        end = self.length + keys.size(2)
        if self.keys is None or end > self.keys.size(2):
            self._grow(keys, max(end, 2 * self.length))
        # (B, H, T_new, Dh) into positions T_past .. T_past + T_new - 1
        self.keys[:, :, self.length:end] = keys
        self.values[:, :, self.length:end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _grow(self, like: torch.Tensor, capacity: int) -> None:
        """New buffers of `capacity` positions holding the positions kept so far."""
        b, h, _, dh = like.shape
        keys, values = (like.new_empty(b, h, capacity, dh) for _ in range(2))
        if self.keys is not None:
            keys[:, :, :self.length] = self.keys[:, :, :self.length]
            values[:, :, :self.length] = self.values[:, :, :self.length]
        self.keys, self.values = keys, values


def _attention_step(layer: nn.TransformerEncoderLayer, x: torch.Tensor, cache: LayerCache,
                    mask: torch.Tensor | None) -> torch.Tensor:
    """`layer.self_attn` on the new positions only, attending to every cached position too.

    The same arithmetic as `nn.MultiheadAttention` without weights returned: one packed
    in-projection split into q, k, v, scaled dot-product attention per head, out-projection.
    """
    attn = layer.self_attn
    # (B, T_new, C) -> (B, T_new, 3C) -> q, k, v each (B, H, T_new, Dh)
    q, k, v = split_heads(F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias), attn.num_heads)
    keys, values = cache.extend(k, v)  # (B, H, T_all, Dh) each
    heads = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, T_new, Dh)
    return attn.out_proj(merge_heads(heads))  # (B, H, T_new, Dh) -> (B, T_new, C)


def encoder_layer_step(layer: nn.TransformerEncoderLayer, x: torch.Tensor, cache: LayerCache,
                       mask: torch.Tensor | None) -> torch.Tensor:
    """What pre-norm `layer(all positions, src_mask=causal)` gives at the new ones, in eval mode.

    x (B, T_new, C) -> (B, T_new, C); the earlier positions are present only as cached keys/values.
    The layer's dropouts are left out: in eval mode they return their input, and a call per token
    each is measurable overhead at batch 1.
    """
    x = x + _attention_step(layer, x, cache, mask)  # (B, T_new, C)
    # (B, T_new, C) -> (B, T_new, FF) -> (B, T_new, C)
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))


def _causal_mask(past: int, new: int, like: torch.Tensor) -> torch.Tensor | None:
    """Rows of the causal mask for the new positions past .. past+new-1 against all of them.

    A single new token is the last position: nothing lies in its future, so it needs no mask.
    """
    if new == 1:
        return None
    full = generate_square_subsequent_mask(past + new, device=like.device)  # (T_all, T_all)
    return full[past:].to(like.dtype)  # (T_new, T_all)


class CachedDecoder:
    """Next-token logits for a sequence that grows by appended tokens, each position encoded once.

    `block_size` crops the context exactly as the uncached path does: once the sequence is longer,
    the window slides and every position moves, so the cache is rebuilt from the cropped
    context (positions restart at 0). That keeps the sampled tokens identical to re-encoding.
    Eval mode only (`generate` sets it): the layers' dropouts are not applied.
    """

    def __init__(self, model: _CausalLM, block_size: int | None = None) -> None:
        self.model, self.block_size = model, block_size
        self.reset()

    def reset(self) -> None:
        self.caches = [LayerCache() for _ in self.model.encoder_layers()]
        self.length = 0  # positions cached

    def next_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) the sequence so far, extending the last one seen -> (B, V) next-token logits."""
        assert not self.model.training, "the cache leaves dropout out: call model.eval() first"
        if self.block_size is not None and ids.size(1) > self.block_size:
            ids = ids[:, -self.block_size:]  # (B, block): the window slid, every position moved
            self.reset()
        return self._encode(ids[:, self.length:])  # (B, T_new) -> (B, V)

    def _encode(self, new_ids: torch.Tensor) -> torch.Tensor:
        """Run the new positions through the stack, caching keys/values; logits of the last one."""
        # outside inference mode: a position table grown here stays an ordinary buffer
        x = self.model._embed(new_ids, start=self.length)  # (B, T_new) -> (B, T_new, C0)
        mask = _causal_mask(self.length, new_ids.size(1), like=x)  # (T_new, T_all) or None
        self.length += new_ids.size(1)
        return self._through_stack(x, mask)  # (B, T_new, C0) -> (B, V)

    @torch.inference_mode()
    def _through_stack(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Encoder layers (with their caches) and projections, then the head on the last position.

        Inference mode skips autograd's per-op bookkeeping that no_grad still does: about a tenth
        of the per-token overhead at batch 1, where a token is a few hundred small ops. Only the
        cached keys/values and the returned logits are inference tensors.
        """
        caches = iter(self.caches)
        for module in self.model.layer_stack():
            if isinstance(module, nn.TransformerEncoderLayer):
                # (B, T_new, C_i) -> (B, T_new, C_i)
                x = encoder_layer_step(module, x, next(caches), mask)
            else:
                x = module(x)  # projection: (B, T_new, C_prev) -> (B, T_new, C_next)
        return self.model._head(x[:, -1:])[:, -1]  # (B, 1, C_last) -> (B, V)
