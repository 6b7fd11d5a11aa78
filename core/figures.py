"""Plotly figures for the page: the causal mask, the loss curve, the layer stack, attention maps.

Arrays and histories in, figures out: nothing here runs a model. Figures are rebuilt and resent
whole on every streamed update, so they stay small: the "none" template, numpy arrays, and at
most MAX_CURVE_POINTS points per curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .config import ModelConfig
from .masks import generate_square_subsequent_mask
from .training import TrainingHistory

MAX_CURVE_POINTS = 600
TRAIN_COLOR, VAL_COLOR, BEST_COLOR, ACCURACY_COLOR = "#4C78A8", "#F58518", "#E45756", "#54A24B"
ALLOWED_COLOR, BLOCKED_COLOR = "#54A24B", "#E5E5E5"


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(template="none", title=dict(text=title, x=0.02, font=dict(size=15)), height=height,
                      margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom"),
                      font=dict(size=12))
    return fig


def downsample(x: Sequence[float], y: Sequence[float],
               max_points: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Bucket means, so a 10,000-step curve is drawn (and streamed) as a few hundred points."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) <= max_points:
        return xs, ys
    edges = np.linspace(0, len(xs), max_points + 1).astype(int)
    return (np.array([xs[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]),
            np.array([ys[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]))


def mask_figure(size: int) -> go.Figure:
    """The causal mask as allowed/blocked cells: row = query position, column = key position."""
    mask = generate_square_subsequent_mask(size)  # (T, T): 0 or -inf
    allowed = np.isfinite(mask.numpy()).astype(float)  # (T, T): 1 allowed, 0 blocked
    labels = np.where(allowed == 1, "allowed (0)", "blocked (-inf)")
    fig = go.Figure(go.Heatmap(
        z=allowed, x=np.arange(size), y=np.arange(size), text=labels, zmin=0, zmax=1,
        colorscale=[[0, BLOCKED_COLOR], [0.5, BLOCKED_COLOR], [0.5, ALLOWED_COLOR], [1, ALLOWED_COLOR]],
        xgap=1 if size <= 48 else 0, ygap=1 if size <= 48 else 0,
        hovertemplate="query %{y} -> key %{x}: %{text}<extra></extra>",
        colorbar=dict(tickvals=[0.25, 0.75], ticktext=["blocked", "allowed"], len=0.5)))
    fig.update_yaxes(autorange="reversed", title="query position (the token predicting)")
    fig.update_xaxes(title="key position (what it may look at)")
    return _layout(fig, f"Causal mask, length {size}", height=420)


def loss_figure(history: TrainingHistory | None, previous: TrainingHistory | None = None) -> go.Figure:
    """Train loss per step, validation loss per epoch, the best epoch starred; the previous run faint."""
    fig = go.Figure()
    if previous is not None and previous.step_losses:
        px, py = downsample(previous.step_positions, previous.step_losses)
        fig.add_trace(go.Scatter(x=px, y=py, mode="lines", name="previous run: train",
                                 line=dict(color=TRAIN_COLOR, width=1), opacity=0.25))
        if previous.epochs:
            fig.add_trace(go.Scatter(x=np.array([r.epoch for r in previous.epochs], dtype=float),
                                     y=np.array([r.val_loss for r in previous.epochs]), mode="lines",
                                     name="previous run: validation", opacity=0.3,
                                     line=dict(color=VAL_COLOR, width=1, dash="dot")))
    if history is not None and history.step_losses:
        sx, sy = downsample(history.step_positions, history.step_losses)
        fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name="train loss (per step)",
                                 line=dict(color=TRAIN_COLOR, width=1.5)))
    if history is not None and history.epochs:
        epochs = np.array([r.epoch for r in history.epochs], dtype=float)
        fig.add_trace(go.Scatter(x=epochs, y=np.array([r.val_loss for r in history.epochs]),
                                 mode="lines+markers", name="validation loss (per epoch)",
                                 line=dict(color=VAL_COLOR, width=2), marker=dict(size=5)))
        if history.best_epoch is not None:
            _mark_best(fig, history)
        _add_accuracy(fig, history)
    fig.update_xaxes(title="epoch", rangemode="tozero")
    fig.update_yaxes(title="loss (cross-entropy)", type="log")
    title = "Loss" if history is None or not history.step_losses else \
        f"Loss: {len(history.step_losses)} steps, {len(history.epochs)} epochs"
    return _layout(fig, title)


RUN_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#9D755D", "#FF9DA6")


def runs_figure(runs: dict[str, TrainingHistory]) -> go.Figure:
    """Several runs over each other, one color each: validation loss per epoch (solid) and train
    loss per step (faint), so runs with different settings can be compared on one axis."""
    fig = go.Figure()
    for (name, history), color in zip(runs.items(), RUN_COLORS * (1 + len(runs) // len(RUN_COLORS))):
        if history.step_losses:
            sx, sy = downsample(history.step_positions, history.step_losses)
            fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name=f"{name}: train", opacity=0.35,
                                     line=dict(color=color, width=1), legendgroup=name))
        if history.epochs:
            fig.add_trace(go.Scatter(x=np.array([r.epoch for r in history.epochs], dtype=float),
                                     y=np.array([r.val_loss for r in history.epochs]), mode="lines+markers",
                                     name=f"{name}: validation", line=dict(color=color, width=2),
                                     marker=dict(size=5), legendgroup=name))
    fig.update_xaxes(title="epoch", rangemode="tozero")
    fig.update_yaxes(title="loss (cross-entropy)", type="log")
    return _layout(fig, "Runs compared" if runs else "Pick runs in the table's list to compare them")


def _mark_best(fig: go.Figure, history: TrainingHistory) -> None:
    """Star the best epoch; shade the epochs after it, whose models training did not keep."""
    best, last = history.epochs[history.best_epoch - 1], history.epochs[-1]
    fig.add_trace(go.Scatter(x=np.array([float(best.epoch)]), y=np.array([best.val_loss]),
                             mode="markers", name=f"best: epoch {best.epoch}",
                             marker=dict(symbol="star", size=15, color=BEST_COLOR)))
    if last.epoch > best.epoch:
        fig.add_vrect(x0=best.epoch, x1=last.epoch, fillcolor=BEST_COLOR, opacity=0.08, line_width=0,
                      annotation_text="after the best epoch", annotation_position="top left",
                      annotation_font=dict(size=10, color=BEST_COLOR))


def _add_accuracy(fig: go.Figure, history: TrainingHistory) -> None:
    """Held-out exact match per epoch on a right-hand axis from 0 to 100%, where a task scores it."""
    scored = [r for r in history.epochs if r.val_accuracy is not None]
    if not scored:
        return
    fig.add_trace(go.Scatter(x=np.array([r.epoch for r in scored], dtype=float),
                             y=np.array([r.val_accuracy for r in scored]), yaxis="y2", mode="lines+markers",
                             name="held-out exact match (per epoch)", line=dict(color=ACCURACY_COLOR, width=2),
                             marker=dict(size=5, symbol="diamond")))
    fig.update_layout(yaxis2=dict(title="held-out exact match", overlaying="y", side="right", range=[0, 1.02],
                                  tickformat=".0%", showgrid=False))


def architecture_figure(config: ModelConfig) -> go.Figure:
    """The widths through the stack: d_model and dim_feedforward per layer, projections marked."""
    layers = [f"layer {i}" for i in range(1, config.num_layers + 1)]
    d_models = np.array(config.d_model_configs, dtype=float)
    ffs = np.array(config.dim_feedforward_configs, dtype=float)
    fig = go.Figure([
        go.Bar(x=layers, y=d_models, name="d_model", marker_color=TRAIN_COLOR,
               text=[f"{int(d)} / {h}h" for d, h in zip(d_models, config.heads_per_layer)],
               textposition="outside", hovertemplate="%{x}: d_model %{y}<extra></extra>"),
        go.Bar(x=layers, y=ffs, name="dim_feedforward", marker_color=VAL_COLOR, opacity=0.6,
               hovertemplate="%{x}: dim_feedforward %{y}<extra></extra>"),
    ])
    for i in config.projection_positions():
        prev, nxt = config.d_model_configs[i - 1], config.d_model_configs[i]
        fig.add_vline(x=i - 0.5, line=dict(color=BEST_COLOR, dash="dash", width=2))
        fig.add_annotation(x=i - 0.5, y=1.02, yref="paper", showarrow=False, text=f"Linear {prev}->{nxt}",
                           font=dict(color=BEST_COLOR, size=11))
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(title="width")
    return _layout(fig, f"{config.num_layers} layers, {config.num_parameters():,} parameters", height=320)


def attention_figure(weights: Sequence[np.ndarray], tokens: Sequence[str], max_heads: int = 8) -> go.Figure:
    """One heatmap per (layer, head) of one example's attention weights, each (T, T).

    `weights[l]` is (H, T, T) for layer l. Blocked (future) cells are exactly 0, so the causal
    triangle shows in every map.
    """
    num_layers = len(weights)
    num_heads = min(max(w.shape[0] for w in weights), max_heads)
    titles = [f"layer {layer + 1}, head {h + 1}" if h < weights[layer].shape[0] else ""
              for layer in range(num_layers) for h in range(num_heads)]
    fig = make_subplots(rows=num_layers, cols=num_heads, subplot_titles=titles,
                        horizontal_spacing=0.03, vertical_spacing=min(0.08, 0.3 / max(1, num_layers)))
    labels = [f"{i}:{t!r}"[:8] for i, t in enumerate(tokens)]
    for layer, layer_weights in enumerate(weights):
        for h in range(min(layer_weights.shape[0], num_heads)):
            fig.add_trace(go.Heatmap(z=np.asarray(layer_weights[h], dtype=float), x=labels, y=labels,
                                     zmin=0, zmax=1, colorscale="Blues", showscale=(layer == 0 and h == 0),
                                     hovertemplate="query %{y} -> key %{x}: %{z:.2f}<extra></extra>"),
                          row=layer + 1, col=h + 1)
            fig.update_yaxes(autorange="reversed", showticklabels=(h == 0), row=layer + 1, col=h + 1)
            fig.update_xaxes(showticklabels=(layer == num_layers - 1), tickangle=-60, row=layer + 1, col=h + 1)
    _layout(fig, "Attention weights (rows: the token attending; columns: what it attends to)",
            height=max(320, 230 * num_layers))
    fig.update_annotations(font_size=10)
    return fig


def causality_figure(changes: Sequence[float], tokens: Sequence[str], position: int, new_token: str) -> go.Figure:
    """How far each position's prediction moved when the token at `position` changed: a bar per
    position, the edited one red, those before it blue, and each bar labelled (an exact 0 as "0")."""
    colors = [TRAIN_COLOR if i < position else BEST_COLOR if i == position else VAL_COLOR for i in range(len(tokens))]
    labels = [f"{i}:{t!r}"[:8] for i, t in enumerate(tokens)]
    fig = go.Figure(go.Bar(x=labels, y=np.asarray(changes, dtype=float), marker_color=colors,
                           text=["0" if c == 0 else f"{c:.2g}" for c in changes], textposition="outside",
                           hovertemplate="position %{x}: moved by %{y}<extra></extra>"))
    fig.update_yaxes(title="change in its prediction (total variation)", range=[0, 1.1])
    fig.update_xaxes(title="position: token")
    return _layout(fig, f"Position {position} changed from {tokens[position]!r} to {new_token!r}", height=340)


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says what to do to fill it."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", height=300)
