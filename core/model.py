"""Causal Transformer language models: per-layer widths (ConfigurableTransformer) and uniform
(SimpleTransformer), sharing the same embedding, positional encoding and output head."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .masks import generate_square_subsequent_mask


class PositionalEncoding(nn.Module):
    """Sinusoidal positions, made for the length of each input.

    The table is a cache, not a parameter: it grows when a longer input arrives, so a model
    trained on length 16 runs at length 300. It is kept out of the state dict, so checkpoints
    don't depend on the longest sequence ever seen.
    """

    def __init__(self, d_model: int, dropout: float = 0.0, initial_len: int = 128):
        super().__init__()
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("table", self._make_table(initial_len), persistent=False)

    def _make_table(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # (L, 1)
        div_term = torch.exp(torch.arange(0, self.d_model, 2, device=device, dtype=torch.float32)
                             * (-math.log(10000.0) / self.d_model))  # (ceil(C/2),)
        table = torch.zeros(length, self.d_model, device=device)  # (L, C)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term[: self.d_model // 2])  # odd C has one cos fewer
        return table

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Add the encodings of positions start .. start+T-1 (start > 0: a cache's new tokens)."""
        end = start + x.size(1)
        if end > self.table.size(0):
            self.table = self._make_table(max(end, 2 * self.table.size(0)), device=x.device)
        # (B, T, C) + (1, T, C) -> (B, T, C)
        return self.dropout(x + self.table[start:end].to(x.dtype).unsqueeze(0))


def _encoder_layer(d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> nn.TransformerEncoderLayer:
    # Pre-norm (GPT-2 style) trains small models reliably without tuning; batch_first everywhere.
    return nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                      activation="gelu", batch_first=True, norm_first=True)


class _CausalLM(nn.Module):
    """Token embedding -> positions -> a stack (subclass) -> final LayerNorm -> vocabulary head."""

    def _init_io(self, vocab_size: int, d_in: int, d_out: int, dropout: float, causal: bool) -> None:
        self.vocab_size = vocab_size
        self.causal = causal
        self.embedding = nn.Embedding(vocab_size, d_in)
        self.pos_encoding = PositionalEncoding(d_in, dropout)
        self.final_norm = nn.LayerNorm(d_out)
        self.head = nn.Linear(d_out, vocab_size)

    def _embed(self, src: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token ids at positions start .. start+T-1 -> embeddings plus positions.

        No sqrt(d_model) scale (the original Transformer's): PyTorch's N(0, 1) embeddings times
        sqrt(48) are ~7 per dimension against at most 1 for the sinusoidal positions, which then
        drown. Measured on sort/copy/reverse over seeds 0-4: with the scale, 0 of 15 runs solved
        within 400 steps; without it, all 15 did.
        """
        if src.dim() != 2:
            raise ValueError(f"expected token ids of shape (batch, time), got {tuple(src.shape)}")
        # (B, T) -> (B, T, C0)
        return self.pos_encoding(self.embedding(src), start)

    def _mask(self, length: int, device: torch.device) -> torch.Tensor | None:
        """The causal mask for `length` positions, (T, T); None for a model built with causal=False."""
        return generate_square_subsequent_mask(length, device=device) if self.causal else None

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, C_last) -> (B, T, vocab)
        return self.head(self.final_norm(x))

    def encoder_layers(self) -> list[nn.TransformerEncoderLayer]:
        raise NotImplementedError

    def layer_stack(self) -> nn.ModuleList:
        """Every module the input passes through between `_embed` and `_head`, in order.

        Encoder layers and, for per-layer widths, the projections between them: what the
        attention replay and the key/value cache walk, so they can't disagree with `forward`.
        """
        raise NotImplementedError


class ConfigurableTransformer(_CausalLM):
    """A causal LM whose encoder layers each have their own d_model, dim_feedforward and nhead.

    `nn.TransformerEncoder` clones one layer N times, so it cannot hold layers of different
    widths: `self.layers` is an `nn.ModuleList` in the order the input passes through, with an
    `nn.Linear(d_prev, d_next)` exactly where d_model changes, and we hand the causal mask to
    each encoder layer ourselves. `causal=False` leaves the mask out, as an experiment: every
    position then reads the whole input, the answer it is asked to predict included.
    """

    def __init__(self, vocab_size: int, d_model_configs: list[int], dim_feedforward_configs: list[int],
                 nhead: int | list[int] = 4, dropout: float = 0.1, device: torch.device | str | None = None,
                 causal: bool = True):
        super().__init__()
        config = ModelConfig(vocab_size, d_model_configs, dim_feedforward_configs, nhead, dropout, causal=causal)
        config.validate()
        self.d_model_configs = list(config.d_model_configs)
        self._init_io(vocab_size, self.d_model_configs[0], self.d_model_configs[-1], dropout, config.causal)
        self.layers = nn.ModuleList()
        previous = self.d_model_configs[0]
        for d_model, dim_ff, heads in zip(self.d_model_configs, config.dim_feedforward_configs,
                                          config.heads_per_layer):
            if d_model != previous:
                self.layers.append(nn.Linear(previous, d_model))
            self.layers.append(_encoder_layer(d_model, heads, dim_ff, dropout))
            previous = d_model
        self.to(device)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab) logits; position t sees only positions <= t (if causal)."""
        x = self._embed(src)  # (B, T) -> (B, T, C0); checks the shape first
        mask = self._mask(src.size(1), src.device)  # (T, T) or None
        for layer in self.layers:
            if isinstance(layer, nn.TransformerEncoderLayer):
                x = layer(x, src_mask=mask, is_causal=self.causal)  # (B, T, C_i) -> (B, T, C_i)
            else:
                x = layer(x)  # projection: (B, T, C_prev) -> (B, T, C_next)
        return self._head(x)

    def encoder_layers(self) -> list[nn.TransformerEncoderLayer]:
        return [m for m in self.layers if isinstance(m, nn.TransformerEncoderLayer)]

    def layer_stack(self) -> nn.ModuleList:
        return self.layers


class SimpleTransformer(_CausalLM):
    """The uniform baseline: every layer the same width, stacked by `nn.TransformerEncoder`."""

    def __init__(self, vocab_size: int, d_model: int, nhead: int, num_layers: int, dim_feedforward: int,
                 dropout: float = 0.1, device: torch.device | str | None = None, causal: bool = True):
        super().__init__()
        config = ModelConfig(vocab_size, [d_model] * num_layers, [dim_feedforward] * num_layers, nhead,
                             dropout, "simple", causal).validate()
        self._init_io(vocab_size, d_model, d_model, dropout, config.causal)
        self.encoder = nn.TransformerEncoder(_encoder_layer(d_model, nhead, dim_feedforward, dropout),
                                             num_layers, enable_nested_tensor=False)
        self.to(device)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab) logits, the causal mask (unless causal=False) made for this T."""
        x = self._embed(src)  # (B, T) -> (B, T, C); checks the shape first
        mask = self._mask(src.size(1), src.device)  # (T, T) or None
        x = self.encoder(x, mask=mask, is_causal=self.causal)  # (B, T, C) -> (B, T, C)
        return self._head(x)

    def encoder_layers(self) -> list[nn.TransformerEncoderLayer]:
        return list(self.encoder.layers)

    def layer_stack(self) -> nn.ModuleList:
        return self.encoder.layers


def build_model(config: ModelConfig,
                device: torch.device | str | None = None) -> ConfigurableTransformer | SimpleTransformer:
    """The model a config describes (its constructor checks it against the default limits)."""
    if config.model_type == "simple":
        return SimpleTransformer(config.vocab_size, config.d_model_configs[0], config.heads_per_layer[0],
                                 config.num_layers, config.dim_feedforward_configs[0], config.dropout, device,
                                 config.causal)
    return ConfigurableTransformer(config.vocab_size, config.d_model_configs, config.dim_feedforward_configs,
                                   config.nhead, config.dropout, device, config.causal)


def parameter_counts(model: nn.Module) -> list[tuple[str, int]]:
    """(child module name, parameter count) for each top-level part and each entry of the stack."""
    rows: list[tuple[str, int]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.ModuleList, nn.TransformerEncoder)):
            stack = child if isinstance(child, nn.ModuleList) else child.layers
            for i, sub in enumerate(stack):
                rows.append((f"{name}.{i} {type(sub).__name__}", sum(p.numel() for p in sub.parameters())))
        else:
            count = sum(p.numel() for p in child.parameters())
            if count:
                rows.append((name, count))
    return rows


@torch.no_grad()
def attention_weights(model: _CausalLM, src: torch.Tensor) -> list[torch.Tensor]:
    """Per encoder layer, the attention weights (B, H, T, T) the model uses on `src`.

    Encoder layers never return their weights, so we replay the forward pass and call each
    layer's `self_attn` on the same (normed) input it sees, with the same causal mask.
    """
    was_training = model.training
    model.eval()
    mask = model._mask(src.size(1), src.device)  # (T, T) or None
    x = model._embed(src)  # (B, T) -> (B, T, C0)
    maps: list[torch.Tensor] = []
    for layer in model.layer_stack():
        if isinstance(layer, nn.TransformerEncoderLayer):
            attn_input = layer.norm1(x) if layer.norm_first else x  # (B, T, C)
            _, weights = layer.self_attn(attn_input, attn_input, attn_input, attn_mask=mask,
                                         need_weights=True, average_attn_weights=False)
            maps.append(weights)  # (B, H, T, T)
            x = layer(x, src_mask=mask, is_causal=model.causal)
        else:
            x = layer(x)
    model.train(was_training)
    return maps
