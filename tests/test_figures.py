"""Figures draw what they are given: the mask's allowed cells, every curve, the best epoch, the
widths and projections, one attention map per layer and head; long curves stay small."""

import json

import numpy as np
import pytest

from core.config import ModelConfig
from core.figures import (
    MAX_CURVE_POINTS,
    architecture_figure,
    attention_figure,
    causality_figure,
    downsample,
    empty_figure,
    loss_figure,
    mask_figure,
    runs_figure,
)
from core.training import EpochRecord, TrainingHistory


def history(steps=40, val_losses=(1.0, 0.5, 0.7)) -> TrainingHistory:
    h = TrainingHistory()
    for i in range(steps):
        h.add_step((i + 1) / steps * len(val_losses), 2.0 / (1 + i))
    for epoch, loss in enumerate(val_losses, start=1):
        h.epochs.append(EpochRecord(epoch=epoch, train_loss=loss, val_loss=loss, val_accuracy=None,
                                    improved=loss == min(val_losses[:epoch]), elapsed_s=float(epoch),
                                    tokens_per_s=1.0, lr=1e-3))
    h.best_epoch = int(np.argmin(val_losses)) + 1
    h.best_val_loss = min(val_losses)
    return h


def by_name(fig) -> dict:
    return {trace.name: trace for trace in fig.data}


@pytest.mark.parametrize("size", [1, 5, 40])
def test_mask_figure_allows_exactly_the_cells_on_and_below_the_diagonal(size):
    z = np.asarray(mask_figure(size).data[0].z)
    assert z.shape == (size, size)
    assert np.array_equal(z, np.tril(np.ones((size, size))))


def test_loss_figure_draws_steps_epochs_and_stars_the_best_epoch():
    fig = by_name(loss_figure(history()))
    assert len(fig["train loss (per step)"].y) == 40
    assert list(fig["validation loss (per epoch)"].y) == [1.0, 0.5, 0.7]
    star = fig["best: epoch 2"]
    assert (list(star.x), list(star.y)) == ([2.0], [0.5])


def test_loss_figure_shows_the_previous_run_faintly_beside_this_one():
    fig = by_name(loss_figure(history(steps=10), previous=history(steps=20, val_losses=(2.0, 1.5))))
    assert len(fig["previous run: train"].y) == 20 and fig["previous run: train"].opacity < 0.5
    assert list(fig["previous run: validation"].y) == [2.0, 1.5]
    assert len(fig["train loss (per step)"].y) == 10


def test_an_empty_history_draws_no_curve():
    assert loss_figure(None).data == () and loss_figure(TrainingHistory()).data == ()


def test_a_long_curve_is_bucket_means_and_stays_a_small_payload():
    x = np.arange(10_000, dtype=float)
    xs, ys = downsample(x, 2 * x)
    assert len(xs) == MAX_CURVE_POINTS and np.allclose(ys, 2 * xs)  # means of a line lie on it
    assert xs[0] == pytest.approx(x[: 10_000 // MAX_CURVE_POINTS + 1].mean(), rel=0.1)
    long = history(steps=9_000)
    payload = loss_figure(long).to_json()
    assert len(json.loads(payload)["data"][0]["y"]["bdata"]) < 10_000  # numpy arrays, base64-packed
    assert len(payload) < 40_000


def test_architecture_figure_has_a_bar_per_layer_and_marks_each_projection():
    config = ModelConfig(5, [32, 64, 64], [64, 128, 96], [2, 4, 4])
    fig = architecture_figure(config)
    d_model, ff = by_name(fig)["d_model"], by_name(fig)["dim_feedforward"]
    assert list(d_model.y) == [32, 64, 64] and list(ff.y) == [64, 128, 96]
    assert [a.text for a in fig.layout.annotations] == ["Linear 32->64"]
    assert f"{config.num_parameters():,} parameters" in fig.layout.title.text


def test_attention_figure_draws_one_map_per_layer_and_head():
    weights = [np.tril(np.ones((h, 4, 4))) / 4 for h in (2, 3)]  # layer 1: 2 heads, layer 2: 3 heads
    fig = attention_figure(weights, list("2101"))
    assert len(fig.data) == 5
    assert np.array_equal(np.asarray(fig.data[-1].z), weights[1][2])
    titles = [a.text for a in fig.layout.annotations]
    assert "layer 2, head 3" in titles and "layer 1, head 3" not in titles


def test_empty_figure_says_what_to_do():
    fig = empty_figure("Train a model first.")
    assert fig.data == () and fig.layout.annotations[0].text == "Train a model first."


def test_held_out_exact_match_is_drawn_per_epoch_on_its_own_axis():
    h = history(val_losses=(1.0, 0.5, 0.7))
    for record, accuracy in zip(h.epochs, (0.1, 0.6, 0.5)):
        record.val_accuracy = accuracy
    fig = loss_figure(h)
    accuracy = by_name(fig)["held-out exact match (per epoch)"]
    assert list(accuracy.y) == [0.1, 0.6, 0.5] and accuracy.yaxis == "y2"
    assert fig.layout.yaxis2.range == (0, 1.02) and fig.layout.yaxis2.overlaying == "y"


def test_epochs_after_the_best_are_shaded_and_none_when_the_best_is_last():
    shaded = loss_figure(history(val_losses=(1.0, 0.5, 0.7, 0.9)))
    assert [(s.x0, s.x1) for s in shaded.layout.shapes] == [(2, 4)]
    assert loss_figure(history(val_losses=(1.0, 0.5))).layout.shapes == ()
    assert "held-out exact match (per epoch)" not in by_name(loss_figure(history()))  # text tasks score none


def test_causality_figure_labels_exact_zeros_as_zero_and_colors_the_edit():
    fig = causality_figure([0.0, 0.0, 0.31, 0.0021], list("2101"), 2, "1")
    bar = fig.data[0]
    assert list(bar.text) == ["0", "0", "0.31", "0.0021"]
    assert bar.marker.color[2] != bar.marker.color[0] != bar.marker.color[3]
    assert "Position 2 changed from '0' to '1'" in fig.layout.title.text


def test_runs_figure_overlays_each_run_in_its_own_color():
    fig = runs_figure({"run 1": history(val_losses=(1.0, 0.5)), "run 2": history(steps=10, val_losses=(2.0, 1.0, 0.2))})
    named = by_name(fig)
    assert list(named["run 1: validation"].y) == [1.0, 0.5] and list(named["run 2: validation"].y) == [2.0, 1.0, 0.2]
    assert len(named["run 2: train"].y) == 10
    assert named["run 1: validation"].line.color != named["run 2: validation"].line.color
    assert runs_figure({}).data == ()
