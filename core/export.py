"""A trained model as standalone PyTorch code: one .py file that needs only torch and safetensors.

The file writes the configured model out with the seed's class names (ConfigurableTransformer or
SimpleTransformer over nn.TransformerEncoderLayer, generate_square_subsequent_mask), loads the
checkpoint the page or `python -m core train` saved, and samples from it:

    python model.py --checkpoint best.safetensors --prompt 210120

Its modules and parameter names are ours, so the checkpoint's tensors load as they are; a test runs
the file in a fresh interpreter and compares its logits with the engine's.
"""

from __future__ import annotations

import shlex
from string import Template

from .config import ModelConfig
from .data import Task

TEMPLATE = Template('''"""$title

Exported by Transformer Playground. Needs only torch and safetensors:

    python $filename --checkpoint best.safetensors --prompt $example
"""

import argparse
import math

import torch
from safetensors import safe_open
from torch import nn

VOCAB = $vocab  # token id -> character
BLOCK_SIZE = $block_size  # the input length the model trained on
D_MODEL_CONFIGS = $d_models  # per encoder layer
DIM_FEEDFORWARD_CONFIGS = $ffs
NHEAD = $heads
CAUSAL = $causal


def generate_square_subsequent_mask(size: int) -> torch.Tensor:
    """(T, T): 0 where position i may look at j (j <= i), -inf above the diagonal."""
    return torch.triu(torch.full((size, size), float("-inf")), diagonal=1)


class PositionalEncoding(nn.Module):
    """Sinusoidal positions, made for the length of each input (not a parameter)."""

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.size(1)
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (T, 1)
        div_term = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32)
                             * (-math.log(10000.0) / self.d_model))  # (ceil(C/2),)
        table = torch.zeros(length, self.d_model)  # (T, C)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term[: self.d_model // 2])
        return self.dropout(x + table.to(x.dtype).unsqueeze(0))  # (B, T, C) + (1, T, C)


def encoder_layer(d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation="gelu",
                                      batch_first=True, norm_first=True)

$model_class

@torch.no_grad()
def generate(model: nn.Module, ids: list[int], max_new_tokens: int, temperature: float = 0.0) -> list[int]:
    """Append tokens one at a time: greedy at temperature 0, else sampled; returns only the new ones."""
    x = torch.tensor([ids])  # (1, T)
    for _ in range(max_new_tokens):
        logits = model(x[:, -BLOCK_SIZE:])[:, -1]  # (1, T, V) -> (1, V)
        if temperature == 0:
            next_id = logits.argmax(-1, keepdim=True)  # (1, 1)
        else:
            next_id = torch.multinomial((logits / temperature).softmax(-1), 1)  # (1, 1)
        x = torch.cat([x, next_id], dim=1)
    return x[0, len(ids):].tolist()


def load_model(checkpoint: str) -> nn.Module:
    """The model with the checkpoint's weights, in eval mode."""
    model = $build
    with safe_open(checkpoint, framework="pt") as f:
        model.load_state_dict({name: f.get_tensor(name) for name in f.keys()})
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=$sample_tokens)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    args = parser.parse_args()
    unknown = sorted(set(args.prompt) - set(VOCAB))
    if unknown:
        parser.error(f"{unknown} not in the vocabulary {''.join(VOCAB)!r}")
    model = load_model(args.checkpoint)
    new = generate(model, [VOCAB.index(ch) for ch in args.prompt], args.max_new_tokens, args.temperature)
    print(args.prompt + " -> " + "".join(VOCAB[i] for i in new))


if __name__ == "__main__":
    main()
''')

CONFIGURABLE = '''
class ConfigurableTransformer(nn.Module):
    """A causal LM whose encoder layers each have their own width, with an nn.Linear projection
    wherever d_model changes; the causal mask is handed to each layer."""

    def __init__(self, vocab_size: int, d_model_configs: list[int], dim_feedforward_configs: list[int],
                 nhead: list[int], dropout: float = 0.0, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.embedding = nn.Embedding(vocab_size, d_model_configs[0])
        self.pos_encoding = PositionalEncoding(d_model_configs[0], dropout)
        self.layers = nn.ModuleList()
        previous = d_model_configs[0]
        for d_model, dim_ff, heads in zip(d_model_configs, dim_feedforward_configs, nhead):
            if d_model != previous:
                self.layers.append(nn.Linear(previous, d_model))  # projection between widths
            self.layers.append(encoder_layer(d_model, heads, dim_ff, dropout))
            previous = d_model
        self.final_norm = nn.LayerNorm(previous)
        self.head = nn.Linear(previous, vocab_size)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab) logits."""
        x = self.pos_encoding(self.embedding(src))  # (B, T) -> (B, T, C0)
        mask = generate_square_subsequent_mask(src.size(1)) if self.causal else None  # (T, T)
        for layer in self.layers:
            if isinstance(layer, nn.TransformerEncoderLayer):
                x = layer(x, src_mask=mask, is_causal=self.causal)  # (B, T, C_i) -> (B, T, C_i)
            else:
                x = layer(x)  # (B, T, C_prev) -> (B, T, C_next)
        return self.head(self.final_norm(x))  # (B, T, C_last) -> (B, T, vocab)
'''

SIMPLE = '''
class SimpleTransformer(nn.Module):
    """The uniform baseline: every layer the same width, stacked by nn.TransformerEncoder."""

    def __init__(self, vocab_size: int, d_model: int, nhead: int, num_layers: int, dim_feedforward: int,
                 dropout: float = 0.0, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.pos_encoding = PositionalEncoding(d_model, dropout)
        self.encoder = nn.TransformerEncoder(encoder_layer(d_model, nhead, dim_feedforward, dropout), num_layers,
                                             enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab) logits."""
        x = self.pos_encoding(self.embedding(src))  # (B, T) -> (B, T, C)
        mask = generate_square_subsequent_mask(src.size(1)) if self.causal else None  # (T, T)
        x = self.encoder(x, mask=mask, is_causal=self.causal)  # (B, T, C) -> (B, T, C)
        return self.head(self.final_norm(x))  # (B, T, C) -> (B, T, vocab)
'''


def _shell_word(text: str) -> str:
    """An example prompt as one shell word that is safe inside the file's docstring."""
    return shlex.quote(text.replace("\n", " ").replace("\\", "").replace('"', ""))


def export_code(config: ModelConfig, task: Task, filename: str = "model.py") -> str:
    """The standalone source for a model of `config` trained on `task` (its weights come from the
    checkpoint file, read when the script runs)."""
    heads = config.heads_per_layer
    if config.model_type == "simple":
        model_class = SIMPLE
        build = ("SimpleTransformer(len(VOCAB), D_MODEL_CONFIGS[0], NHEAD[0], len(D_MODEL_CONFIGS), "
                 "DIM_FEEDFORWARD_CONFIGS[0], causal=CAUSAL)")
    else:
        model_class = CONFIGURABLE
        build = "ConfigurableTransformer(len(VOCAB), D_MODEL_CONFIGS, DIM_FEEDFORWARD_CONFIGS, NHEAD, causal=CAUSAL)"
    widths = " -> ".join(map(str, config.d_model_configs))
    return TEMPLATE.substitute(
        title=f"A {config.num_layers}-layer causal Transformer ({widths}) for the {task.name} task, "
              f"{config.num_parameters():,} parameters.",
        filename=filename, example=_shell_word(task.examples(1)[0]), vocab=repr(task.vocab.tokens),
        block_size=task.block_size, d_models=config.d_model_configs, ffs=config.dim_feedforward_configs,
        heads=heads, causal=config.causal, model_class=model_class, build=build,
        sample_tokens=task.sample_tokens)
