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

import functools
import importlib.util
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
        start = self.make_room(keys)
        # (B, H, T_new, Dh) into positions T_past .. T_past + T_new - 1
        self.keys[:, :, start:self.length] = keys
        self.values[:, :, start:self.length] = values
        return self.keys[:, :, :self.length], self.values[:, :, :self.length]

    def make_room(self, like: torch.Tensor) -> int:
        """Count `like`'s positions, (B, H, T_new, Dh), as kept and return where they start; the
        caller writes them there."""
        start, end = self.length, self.length + like.size(2)
        if self.keys is None or end > self.keys.size(2):
            self._grow(like, max(end, 2 * start))
        self.length = end
        return start

    def _grow(self, like: torch.Tensor, capacity: int) -> None:
        """New buffers of `capacity` positions holding the positions kept so far."""
        b, h, _, dh = like.shape
        keys, values = (like.new_empty(b, h, capacity, dh) for _ in range(2))
        if self.keys is not None:
            keys[:, :, :self.length] = self.keys[:, :, :self.length]
            values[:, :, :self.length] = self.values[:, :, :self.length]
        self.keys, self.values = keys, values


# Layers with at least this many bytes of weight matrices sample through `core.row_product`. Per
# product on the README's 2-core AMD machine, MKL against the row kernel: 8 against 9 us at 4.5 MB
# of weights, 16 against 11 us at 10 MB, 56 against 16 us at 18 MB (config M). The page's largest
# models hold 9.4 MB and answer in a few tokens, so the page's server never pays numba's first use
# (its 0.2 s import, loading or compiling the kernels) for a gain of milliseconds.
ROW_KERNEL_WEIGHT_BYTES = 16 * 2**20


@functools.cache
def mkl_on_an_amd_cpu() -> bool:
    """Whether PyTorch's BLAS here is MKL running on an AMD CPU, where MKL takes slow code paths."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        cpu = Path("/proc/cpuinfo").read_text()  # Linux: one vendor_id line per core
    except OSError:
        cpu = platform.processor()  # Windows names the vendor here
    return "AuthenticAMD" in cpu


@functools.cache
def numba_installed() -> bool:
    """numba is optional (the `fast-sampling` extra): a Space serves the page's models, which never
    reach `ROW_KERNEL_WEIGHT_BYTES`, and leaves its 210 MB (with llvmlite) out."""
    return importlib.util.find_spec("numba") is not None


def one_call_for(model: _CausalLM) -> bool:
    """Whether a new token of one sequence should take `OneCallToken` here: numba installed and at
    least `ROW_KERNEL_WEIGHT_BYTES` of weight matrices in the layers, on any CPU.

    Measured with 64 tokens of config M on two cores, taking turns (medians of 9): on the README's
    AMD EPYC, 50-51 ms against 89-94 op by op with the row kernel and 193-205 with MKL; on an Intel
    Xeon with AMX, whose MKL matrix-vector product is fast, 76 ms against 114 op by op with MKL."""
    return _large(model) and numba_installed()


def row_kernel_for(model: _CausalLM) -> bool:
    """Whether `StepLinear` multiplies one row by the row kernel here, for the tokens that go op
    by op: MKL on an AMD CPU, `one_call_for`'s size, numba installed. On an Intel Xeon, op by op,
    64 tokens of config M took 78 ms with MKL and 87 ms with the row kernel, so Intel keeps MKL."""
    return mkl_on_an_amd_cpu() and _large(model) and numba_installed()


def _large(model: _CausalLM) -> bool:
    weight_bytes = sum(p.numel() * p.element_size() for p in model.layer_stack().parameters() if p.dim() == 2)
    return weight_bytes >= ROW_KERNEL_WEIGHT_BYTES


class StepLinear:
    """`F.linear(x, weight, bias)` for a sampling step's positions: (..., C_in) -> (..., C_out).

    With `row_kernel`, one float32 row on a CPU goes to `core.row_product`, which reads each weight
    once and writes nothing matrix-sized (MKL's matrix-vector product is slow on AMD CPUs; see that
    module). More than one row is a matrix product, where `F.linear` wins, and GPUs keep it too.
    The kernel sums in another order than `F.linear`: logits agree to rounding, and the tests
    check that the tokens are the same either way. It reads the parameters' own memory (numpy
    views, kept for the decoder's one `generate` call); inference only.
    """

    def __init__(self, row_kernel: bool) -> None:
        self.row_kernel = row_kernel
        # (id(weight), id(bias)) -> (weight and bias, kept so that the ids stay theirs; numpy views
        # of their memory, or None where the kernel doesn't take the weight)
        self.arrays: dict[tuple[int, int], tuple[tuple, tuple[np.ndarray, np.ndarray | None] | None]] = {}

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not self.row_kernel or x.numel() != x.size(-1) or x.dtype != torch.float32 or not x.is_cpu:
            return F.linear(x, weight, bias)
        arrays = self._arrays(weight, bias)
        if arrays is None:
            return F.linear(x, weight, bias)
        weight_array, bias_array = arrays
        row = x.numpy()  # (..., C_in), one row
        out = np.empty(row.shape[:-1] + weight_array.shape[:1], np.float32)  # (..., C_out)
        self.kernel(weight_array, row.reshape(-1), bias_array, out.reshape(-1))  # (C_out, C_in) @ (C_in,) + (C_out,)
        return torch.from_numpy(out)

    @functools.cached_property
    def kernel(self) -> Callable[..., None]:
        """`core.row_product`'s kernel, loaded at the first row it multiplies: that module imports
        numba, which a decoder that only ever meets matrices (held-out accuracy's batches) never needs."""
        from . import row_product
        return row_product.kernel_for_this_thread()

    def _arrays(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The weight's and bias's memory as numpy sees it, made once per decoder: at batch 1 a token
        makes a few dozen products, and every microsecond around each is 1.6 ms of 64 tokens of M."""
        key = id(weight), id(bias)
        if key not in self.arrays:
            self.arrays[key] = (weight, bias), _numpy_views(weight, bias)
        return self.arrays[key][1]


class OneCallToken:
    """A new token of one sequence from its embedding to its next-token logits in one call
    (`core.row_product.token_through_stack`), for large models where numba is installed
    (`one_call_for`): every layer's work, its key and value written into its cache, the
    projections and the head, each product through the row kernel.

    Op by op, 64 tokens of config M spent 60-90 ms outside their products; in one call a layer
    they took 46-84 ms in all instead of 114-157 ms, and in one call a token 51-63 ms where one
    call a layer took 61-85 (see `core.row_product`). It reads the model's own parameters (numpy
    views, made once per decoder) and computes what `encoder_layer_step` and the head do, summed
    in another order: logits agree to rounding, and the tests check that the tokens are the same.
    `arguments` is None for a model it does not take (a layer without biases or with an
    activation other than GELU or ReLU, parameters not float32 on a CPU), and `kernel` is None
    where numba has no thread-safe thread pool; those tokens go op by op.
    """

    def __init__(self, model: _CausalLM) -> None:
        self.arguments = _stack_arrays(model)
        # per layer, a (1, H, 1, Dh) tensor: the shape of one position's keys, for `LayerCache.make_room`
        self.one_position = [torch.empty(1, layer.self_attn.num_heads, 1, layer.self_attn.head_dim)
                             for layer in model.encoder_layers()]
        self.buffers: list[torch.Tensor] = []  # the caches' key buffers that `views` are of
        self.views: tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]] = ((), ())

    def takes(self, new_ids: torch.Tensor) -> bool:
        """One new token of one sequence, on a CPU, of a model it takes, where the kernel runs."""
        return new_ids.numel() == 1 and new_ids.is_cpu and self.arguments is not None and self.kernel is not None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, caches: list[LayerCache]) -> torch.Tensor:
        """x (1, 1, C0), the token's embedding -> its logits (1, V); each cache keeps one more position
        (inference mode, as `CachedDecoder._through_stack`: the caches' buffers are inference tensors)."""
        position = caches[0].length
        for cache, one_position in zip(caches, self.one_position):
            cache.make_room(one_position)
        keys, values = self._views(caches)
        layers, projections, final_norm, head = self.arguments
        logits = np.empty(head[0].shape[0], np.float32)  # (V,)
        self.kernel(x.detach().numpy().reshape(-1), layers, keys, values, position, projections, final_norm,
                    head, logits)
        return torch.from_numpy(logits).unsqueeze(0)

    @functools.cached_property
    def kernel(self) -> Callable[..., None] | None:
        """Loaded at the first token, as `StepLinear.kernel` is."""
        from . import row_product
        return row_product.stack_kernel_for_this_thread()

    def _views(self, caches: list[LayerCache]) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """The caches' buffers as numpy sees them, (H, capacity, Dh) each, made again when one grew."""
        buffers = [cache.keys for cache in caches]
        if len(buffers) != len(self.buffers) or any(a is not b for a, b in zip(buffers, self.buffers)):
            self.buffers = buffers
            self.views = (tuple(cache.keys[0].numpy() for cache in caches),
                          tuple(cache.values[0].numpy() for cache in caches))
        return self.views


_NO_PROJECTION = (np.empty((0, 0), np.float32), np.empty(0, np.float32))


def _stack_arrays(model: _CausalLM) -> tuple | None:
    """The model's parameters as `token_through_stack` takes them, numpy views of their memory:
    (layers, projections after each layer, final norm, head); None if it cannot take them."""
    layers, projections = [], []
    for module in model.layer_stack():
        if isinstance(module, nn.TransformerEncoderLayer):
            layers.append(_layer_arrays(module))
            projections.append(_NO_PROJECTION)
        elif projections:  # a projection after the last layer: where the widths change
            projections[-1] = _arrays(module.weight, module.bias)
        else:
            return None
    norm, head = model.final_norm, model.head
    final_norm = _arrays(norm.weight, norm.bias)
    head = _arrays(head.weight, head.bias)
    if any(part is None for part in (*layers, *projections, final_norm, head)):
        return None
    return tuple(layers), tuple(projections), (*final_norm, norm.eps), head


def _layer_arrays(layer: nn.TransformerEncoderLayer) -> tuple | None:
    """One layer's parameters as `token_through_layer` takes them; None if it cannot take them."""
    attention = layer.self_attn
    parts = [_arrays(layer.norm1.weight, layer.norm1.bias),
             _arrays(attention.in_proj_weight, attention.in_proj_bias),
             _arrays(attention.out_proj.weight, attention.out_proj.bias),
             _arrays(layer.norm2.weight, layer.norm2.bias),
             _arrays(layer.linear1.weight, layer.linear1.bias), _arrays(layer.linear2.weight, layer.linear2.bias)]
    if layer.activation not in (F.gelu, F.relu) or any(part is None for part in parts):
        return None
    norm1, attention_in, attention_out, norm2, feed_forward_in, feed_forward_out = parts
    return ((*norm1, layer.norm1.eps), attention_in, attention_out, (*norm2, layer.norm2.eps),
            feed_forward_in, feed_forward_out, layer.activation is F.gelu)


def _numpy_views(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A weight and its bias (if any) as numpy views of their memory; None unless they are float32,
    contiguous and on a CPU."""
    if not all(t.dtype == torch.float32 and t.is_cpu and t.is_contiguous() for t in (weight, bias) if t is not None):
        return None
    return weight.detach().numpy(), None if bias is None else bias.detach().numpy()


def _arrays(weight: torch.Tensor | None, bias: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray] | None:
    """`_numpy_views` of a weight and its bias; None without either (`token_through_stack` adds every bias)."""
    return None if weight is None or bias is None else _numpy_views(weight, bias)


def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """`norm(x)` without the module call: at batch 1 a token is a few hundred small ops, and each
    module call costs about as much as the op it wraps."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _activation(layer: nn.TransformerEncoderLayer, hidden: torch.Tensor) -> torch.Tensor:
    """`layer.activation(hidden)`, one row of it through a transposed view of itself.

    PyTorch sends GELU on a contiguous float tensor to oneDNN, which cost about 36 us a call inside
    a sampling step (13 ms of 64 tokens of config M on the README's 2-core machine), and on a
    non-contiguous one to its own vectorised kernel, a few microseconds: 64 tokens took 75-80
    against 82-86 ms (medians of 15 and 21, taking turns). The two kernels agree to rounding.
    """
    width = hidden.size(-1)
    if hidden.numel() != width or width % 2:
        return layer.activation(hidden)
    # (..., FF) -> (2, FF/2) -> its transpose (FF/2, 2), not contiguous; the result comes back in that layout
    return layer.activation(hidden.view(2, width // 2).t()).t().reshape(hidden.shape)


def _attention_step(layer: nn.TransformerEncoderLayer, x: torch.Tensor, cache: LayerCache,
                    mask: torch.Tensor | None, linear: StepLinear) -> torch.Tensor:
    """`layer.self_attn` on the new positions only, attending to every cached position too.

    The same arithmetic as `nn.MultiheadAttention` without weights returned: one packed
    in-projection split into q, k, v, scaled dot-product attention per head, out-projection.
    """
    attn = layer.self_attn
    # (B, T_new, C) -> (B, T_new, 3C) -> q, k, v each (B, H, T_new, Dh)
    q, k, v = split_heads(linear(_layer_norm(x, layer.norm1), attn.in_proj_weight, attn.in_proj_bias),
                          attn.num_heads)
    keys, values = cache.extend(k, v)  # (B, H, T_all, Dh) each
    heads = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, T_new, Dh)
    # (B, H, T_new, Dh) -> (B, T_new, C)
    return linear(merge_heads(heads), attn.out_proj.weight, attn.out_proj.bias)


def encoder_layer_step(layer: nn.TransformerEncoderLayer, x: torch.Tensor, cache: LayerCache,
                       mask: torch.Tensor | None, linear: StepLinear) -> torch.Tensor:
    """What pre-norm `layer(all positions, src_mask=causal)` gives at the new ones, in eval mode.

    x (B, T_new, C) -> (B, T_new, C); the earlier positions are present only as cached keys/values.
    `linear` applies the layer's weight matrices (the decoder's `StepLinear`). The layer's dropouts
    are left out: in eval mode they return their input, and a call per token each is measurable
    overhead at batch 1.
    """
    x = x + _attention_step(layer, x, cache, mask, linear)  # (B, T_new, C)
    ff, out = layer.linear1, layer.linear2
    hidden = _activation(layer, linear(_layer_norm(x, layer.norm2), ff.weight, ff.bias))  # (B, T_new, FF)
    return x + linear(hidden, out.weight, out.bias)  # (B, T_new, FF) -> (B, T_new, C)


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
        self.linear = StepLinear(row_kernel_for(model))
        self.one_call = OneCallToken(model) if one_call_for(model) else None
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
        if self.one_call is not None and self.one_call.takes(new_ids):
            return self.one_call(x, self.caches)  # (1, 1, C0) -> (1, V)
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
                x = encoder_layer_step(module, x, next(caches), mask, self.linear)
            else:
                # projection: (B, T_new, C_prev) -> (B, T_new, C_next)
                x = self.linear(x, module.weight, module.bias)
        return self.model._head(x[:, -1:])[:, -1]  # (B, 1, C_last) -> (B, V)
