"""The page as its API users meet it: gradio_client against the real, launched app.

Every Client is a new visitor with its own session (its own gr.State). Runs are tiny (sort of 4
digits, a few hundred examples, a few epochs) except the one learned-model check, marked slow.
Nothing here asserts a timing; waits have generous deadlines that only stop a hung test.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import sys
import time
import typing
import urllib.parse
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import Status
from raw_client import RawVisitor

import app
from core.checkpoint import load_checkpoint
from core.config import DEFAULT_LAYERS, Limits, ModelConfig
from core.tasks import TASKS
from core.training import StopReason
from page import lessons, run, share, train_tab
from page.inputs import DEFAULT_PRESET, PRESETS, user_errors
from page.layout import launch_options
from page.session import MAX_SNAPSHOTS, SNAPSHOT_MAX_HEADS, Session

HEADERS = ["d_model", "dim_feedforward", "nhead"]
PUBLIC_ENDPOINTS = {"describe_model", "mask", "add_layer", "remove_layer", "preset", "train",
                    "stop", "sample", "save_checkpoint", "upload_checkpoint", "look_inside",
                    "causality_check", "sample_best_and_last", "attention_over_training", "lesson",
                    "train_step", "train_epoch", "export_code", "command_line", "compare_runs",
                    "download_runs", "share_link", "run_numbers"}
# What gradio_client hands back for an output the handler left alone (gr.skip()).
SKIP = {"__type__": "update"}

# A small model with a projection and different head counts per layer, so one trained model
# exercises most of the page (projection, attention per layer x head) in a couple of seconds.
SMALL_LAYERS = [[16, 64, 2], [24, 96, 3]]
SMALL_TASK = dict(kind="sort", seq_len=4, num_digits=3, train_size=256, val_size=64)
SORT6 = dict(rows=[[48, 192, 3]] * 3, kind="sort", seq_len=6, num_digits=3, train_size=2000, val_size=200,
             dropout=0.05)  # the default run


def table(rows):
    """A Dataframe value as the API takes it."""
    return {"headers": HEADERS, "data": rows, "metadata": None}


def describe(client, rows, kind="sort", seq_len=6, num_digits=3, model_type="configurable"):
    return client.predict(table(rows), model_type, 0.1, kind, seq_len, num_digits, "",
                          api_name="/describe_model")


def train_args(rows=SMALL_LAYERS, *, epochs=3, kind="sort", seq_len=4, num_digits=3, train_size=256,
               val_size=64, batch_size=64, lr=3e-3, seed=0, patience=0, model_type="configurable",
               dropout=0.1, text="", stop_when_solved=True, causal=True):
    """/train's inputs in the page's order (the session State is not part of the API)."""
    return (table(rows), model_type, dropout, kind, seq_len, num_digits, train_size, val_size, text,
            epochs, batch_size, lr, seed, patience, stop_when_solved, causal)


def sample(client, prompt, max_new_tokens=4, greedy=True, seed=""):
    return client.predict(prompt, greedy, 1.0, 0, 1.0, max_new_tokens, seed, api_name="/sample")


def updates(job, timeout=180.0):
    """Every streamed update of a submitted job, as they arrive, with a deadline against a hang.

    Mirrors Job.__next__ (outputs first, then FINISHED), but polls so a stuck run fails the test
    instead of hanging it.
    """
    seen, end = 0, time.monotonic() + timeout
    while True:
        outputs = job.outputs()
        if seen < len(outputs):
            seen += 1
            yield outputs[seen - 1]
            continue
        if job.status().code == Status.FINISHED:
            outputs = job.outputs()  # anything that landed between the two reads
            while seen < len(outputs):
                seen += 1
                yield outputs[seen - 1]
            return
        if time.monotonic() > end:
            raise AssertionError(f"job still running after {timeout:.0f} s ({seen} updates so far)")
        time.sleep(0.02)


def figure(plot_value) -> dict:
    """A gr.Plot value from the client -> the plotly figure dict."""
    assert isinstance(plot_value, dict) and plot_value.get("type") == "plotly", plot_value
    return json.loads(plot_value["plot"])


def array(values) -> np.ndarray:
    """A plotly array: a plain list, or numpy's typed-array form {dtype, bdata, shape}."""
    if isinstance(values, dict) and "bdata" in values:
        data = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        shape = values.get("shape")
        if shape:
            dims = [int(s) for s in shape.split(",")] if isinstance(shape, str) else list(shape)
            data = data.reshape(dims)
        return data
    return np.asarray(values)


def value_of(output):
    """gr.update(value=...) reaches the client as {"__type__": "update", "value": ...}."""
    if isinstance(output, dict) and output.get("__type__") == "update":
        return output.get("value")
    return output


def traces(fig: dict, kind: str | None = None) -> list[dict]:
    return [t for t in fig["data"] if kind is None or t.get("type", "scatter") == kind]


def train(client, timeout=180.0, **kwargs):
    """Run /train to the end; the list of (plot, status) updates."""
    job = client.submit(*train_args(**kwargs), api_name="/train")
    try:
        outs = list(updates(job, timeout))
    finally:
        if not job.done():
            client.predict(api_name="/stop")  # a hung or failed test must not hold the train queue
    assert job.status().success, f"/train failed: {job.exception()}"
    return outs


@pytest.fixture(scope="module")
def trained(client):
    """One visitor with a small trained model (sort of 4 digits); tests only read from it."""
    c = client()
    outs = train(c, rows=SMALL_LAYERS, epochs=2, **SMALL_TASK)
    assert "Done" in outs[-1][1], outs[-1][1]
    return c


def best_epoch_of(sample_markdown: str) -> int:
    marker = "from the best model (epoch "
    assert marker in sample_markdown, sample_markdown
    return int(sample_markdown.split(marker)[1].split(",")[0])


# ---------------------------------------------------------------------------------------------
# The API surface
# ---------------------------------------------------------------------------------------------

def test_every_public_event_is_named_deliberately(client):
    """Internal events say api_visibility="private"; public ones carry the names users call."""
    public, private = set(), []
    for fn in app.demo.fns.values():
        if fn.api_visibility == "private":
            private.append(fn.name)
        else:
            public.add(fn.api_name)
    assert public == PUBLIC_ENDPOINTS, (
        "a new event became public API by accident (give it api_visibility='private') or a named one went "
        f"missing: {sorted(public ^ PUBLIC_ENDPOINTS)}")
    assert private, "the layer-table change events and the figure loads are meant to be internal"
    # The client sees exactly the same named endpoints, and nothing unnamed.
    info = client().view_api(return_format="dict", print_info=False)
    assert {name.lstrip("/") for name in info["named_endpoints"]} == PUBLIC_ENDPOINTS
    assert not info["unnamed_endpoints"]


def test_stop_and_sample_take_only_widgets_not_state(client):
    info = client().view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert info["/stop"]["parameters"] == []
    assert [p["parameter_name"] for p in info["/sample"]["parameters"]] == [
        "prompt", "greedy", "temperature", "top_k", "top_p", "max_new_tokens", "seed"]


# ---------------------------------------------------------------------------------------------
# Build tab: describe_model, presets, add/remove layer, mask
# ---------------------------------------------------------------------------------------------

def test_describe_model_counts_parts_and_projections(client):
    c = client()
    rows, total, arch, msg = describe(c, [[32, 128, 4], [64, 256, 4]])
    parts = rows["data"]
    counts = [count for _, count in parts]
    shown_total = int(total.split("**")[1].split()[0].replace(",", ""))
    assert sum(counts) == shown_total
    projections = [name for name, _ in parts if name.startswith("projection")]
    assert projections == ["projection 32 -> 64"]
    assert "between layers 1 and 2" in total
    assert "valid model" in msg
    bars = traces(figure(arch), "bar")
    assert [list(array(b["y"])) for b in bars] == [[32, 64], [128, 256]]

    # Equal widths: no projection anywhere.
    rows, total, _, _ = describe(c, [[48, 192, 3]] * 3)
    assert not [name for name, _ in rows["data"] if name.startswith("projection")]
    assert "none (all widths equal)" in total


@pytest.mark.parametrize("bad_rows, words", [
    ([[50, 128, 4]], "not divisible by nhead 4"),
    ([["abc", 128, 4]], "must be a whole number"),
])
def test_describe_model_invalid_row_keeps_last_valid_output(client, bad_rows, words):
    c = client()
    rows, total, _, _ = describe(c, [[32, 128, 4], [64, 256, 4]])
    valid_total = total.split("**")[1].split()[0]
    bad = describe(c, bad_rows)
    # gr.skip() reaches the client as a bare update: the table, total and figure stay as they were.
    assert bad[:3] == (SKIP, SKIP, SKIP)
    message = bad[3]
    assert words in message and "tp-error" in message
    assert f"The last valid model (2 layers, {valid_total} parameters) is still shown" in message


def test_describe_model_reads_cells_typed_as_text(client):
    """A cell edited in the browser arrives as text; the API takes it the same way."""
    c = client()
    as_numbers = describe(c, [[32, 128, 4]])[1]
    as_text = describe(c, [["32", "128.0", " 4 "]])[1]
    assert as_numbers == as_text


def test_simple_model_needs_equal_widths(client):
    bad = describe(client(), [[32, 128, 4], [64, 256, 4]], model_type="simple")
    assert bad[:3] == (SKIP, SKIP, SKIP)
    assert "simple model uses one d_model for every layer" in bad[3]


def test_preset_add_and_remove_layer(client):
    c = client()
    layers, model_type = c.predict("pyramid: 32 -> 64 -> 128", api_name="/preset")
    assert layers["data"] == [[32, 128, 4], [64, 256, 4], [128, 512, 4]]
    assert model_type == "configurable"
    grown = c.predict(layers, api_name="/add_layer")
    assert grown["data"] == layers["data"] + [[128, 512, 4]]
    shrunk = c.predict(grown, api_name="/remove_layer")
    assert shrunk["data"] == layers["data"]
    one = c.predict(table([[16, 64, 2]]), api_name="/remove_layer")
    assert one["data"] == [[16, 64, 2]], "the last layer is never removed"


def test_mask_endpoint_draws_allowed_below_diagonal(client):
    fig = figure(client().predict(5, api_name="/mask"))
    (heatmap,) = traces(fig, "heatmap")
    z = array(heatmap["z"]).reshape(5, 5)
    assert np.array_equal(z, np.tril(np.ones((5, 5))))


# ---------------------------------------------------------------------------------------------
# Train tab: streaming, Stop, errors
# ---------------------------------------------------------------------------------------------

def test_train_streams_curve_and_status_then_done(client):
    c = client()
    epochs = 3
    outs = train(c, rows=[[16, 64, 2]], epochs=epochs, **SMALL_TASK)
    # Each epoch's validation always reaches the page, plus the final line: never fewer updates.
    assert len(outs) >= epochs + 1
    statuses = [status for _, status in outs]
    assert len(set(statuses)) >= epochs + 1, "the status line changes as training goes"
    figures = [figure(plot) for plot, _ in outs]
    assert "Done" in statuses[-1] and f"trained {epochs} epochs" in statuses[-1]
    assert "Held-out exact match of the best model" in statuses[-1]

    def train_points(fig):
        (t,) = [t for t in fig["data"] if t.get("name") == "train loss (per step)"]
        return len(array(t["y"]))

    points = [train_points(f) for f in figures]
    assert points == sorted(points) and points[-1] > points[0], "the curve grows as steps arrive"
    steps_per_epoch = SMALL_TASK["train_size"] // 64
    assert points[-1] == epochs * steps_per_epoch

    names = [t.get("name", "") for t in figures[-1]["data"]]
    assert "train loss (per step)" in names and "validation loss (per epoch)" in names
    (val,) = [t for t in figures[-1]["data"] if t.get("name") == "validation loss (per epoch)"]
    assert list(array(val["x"])) == [1.0, 2.0, 3.0]
    assert any(n.startswith("best: epoch") for n in names)


def test_stop_mid_run_keeps_best_model(client):
    c = client()
    job = c.submit(*train_args(rows=[[16, 64, 2]], epochs=200, **SMALL_TASK), api_name="/train")
    stream = updates(job)
    try:
        seen = [next(stream) for _ in range(3)]
        assert not any("Done" in status for _, status in seen)
        assert c.predict(api_name="/stop") == ()
        outs = seen + list(stream)
    finally:
        c.predict(api_name="/stop")  # never leave a 200-epoch run holding the train queue
    final = outs[-1][1]
    assert "Stopped" in final and "stopped during epoch" in final, final
    assert job.status().success
    answer = sample(c, "2101")
    assert "`2101` →" in answer
    epoch = best_epoch_of(answer)
    assert 1 <= epoch < 200
    assert f"best model from epoch {epoch}" in final


def test_second_run_shows_previous_run_faintly(client):
    """A new run in the same session draws the last one behind it."""
    c = client()
    train(c, rows=[[16, 64, 2]], epochs=1, **SMALL_TASK)
    outs = train(c, rows=[[16, 64, 2]], epochs=1, **SMALL_TASK)
    names = [t.get("name", "") for t in figure(outs[-1][0])["data"]]
    assert "previous run: train" in names


@pytest.mark.parametrize("changes, words", [
    (dict(rows=[[50, 200, 4]]), "layer 1: d_model 50 is not divisible by nhead 4"),
    (dict(rows=[[16, 64, 2], ["x", 64, 2]]), "layer 2: d_model must be a whole number"),
    (dict(num_digits=1), "number of distinct digits must be at least 2"),
    (dict(seq_len=0), "sequence length must be at least 1"),
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(lr=5), "learning rate must be above 0 and at most 1"),
    (dict(kind="reverse", rows=[[16, 64, 2]], train_size=10**7), "above the limit"),
])
def test_invalid_train_input_is_a_readable_error_and_keeps_best_model(trained, changes, words):
    before = sample(trained, "2101")
    args = {**dict(rows=SMALL_LAYERS, epochs=1, **SMALL_TASK), **changes}
    with pytest.raises(AppError) as error:
        trained.predict(*train_args(**args), api_name="/train")
    assert words in str(error.value)
    assert "upstream Gradio app has raised an exception" not in str(error.value)
    assert sample(trained, "2101") == before, "the session's best model survives a mistake"


def test_unknown_task_is_refused(trained):
    with pytest.raises(AppError) as error:
        trained.predict(*train_args(kind="poetry"), api_name="/train")
    assert "poetry" in str(error.value)
    assert best_epoch_of(sample(trained, "2101")) >= 1


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------

def test_two_clients_do_not_share_state(trained, client):
    other = client()
    with pytest.raises(AppError) as error:
        sample(other, "2101")
    assert "no model to sample from yet" in str(error.value)
    with pytest.raises(AppError):
        other.predict(api_name="/save_checkpoint")
    with pytest.raises(AppError):
        other.predict("2101", api_name="/look_inside")

    # describe_model keeps its "last valid model" per session too.
    bad = describe(other, [[50, 128, 4]])
    assert bad[:3] == (SKIP, SKIP, SKIP) and "last valid model" not in bad[3]
    assert "last valid model (2 layers" in describe(trained, [[50, 128, 4]])[3]
    rows, total, _, _ = describe(other, [[48, 192, 3]] * 3)
    assert "in 3 layers" in total

    # And the first visitor still has its model.
    assert best_epoch_of(sample(trained, "2101")) >= 1


def test_stop_from_another_client_does_not_stop_mine(client):
    mine, other = client(), client()
    job = mine.submit(*train_args(rows=[[16, 64, 2]], epochs=300, stop_when_solved=False, **SMALL_TASK),
                      api_name="/train")
    stream = updates(job)
    next(stream)
    other.predict(api_name="/stop")
    # my run goes on streaming after the other visitor's Stop has returned ...
    after = [next(stream)[1] for _ in range(3)]
    assert not any("Stopped" in status for status in after), after
    # ... and stops when I press mine
    mine.predict(api_name="/stop")
    final = list(stream)[-1][1]
    assert "Stopped" in final and "trained 300 epochs" not in final, final


# ---------------------------------------------------------------------------------------------
# Sample tab: sampling, checkpoints
# ---------------------------------------------------------------------------------------------

def test_sample_reports_answer_verdict_and_origin(trained):
    answer = sample(trained, "2101")
    assert "`2101` → **`" in answer
    assert ("✓ correct" in answer) or ("✗ expected `0112`" in answer)
    assert best_epoch_of(answer) in (1, 2)
    with pytest.raises(AppError) as error:
        sample(trained, "21x1")
    assert "not in the vocabulary" in str(error.value)
    with pytest.raises(AppError) as error:
        sample(trained, "2101", greedy=False, seed="-3")
    assert "seed must be at least 0" in str(error.value)


def test_sampling_with_a_seed_is_repeatable(trained):
    one = trained.predict("2101", False, 1.5, 0, 1.0, 4, "7", api_name="/sample")
    two = trained.predict("2101", False, 1.5, 0, 1.0, 4, "7", api_name="/sample")
    assert one == two


def test_checkpoint_round_trip_into_a_new_session(trained, client):
    path = Path(trained.predict(api_name="/save_checkpoint"))
    assert path.suffix == ".safetensors" and path.stat().st_size > 1000
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8: 8 + header_len])
    assert header["__metadata__"]["format"] == "transformer-playground-checkpoint"

    fresh = client()
    info, examples, max_new, inside_text = fresh.predict(handle_file(str(path)),
                                                         api_name="/upload_checkpoint")
    assert "from the uploaded file" in info and path.name in info
    epoch = best_epoch_of(sample(trained, "2101"))
    assert f"Best model: **epoch {epoch}, validation loss " in info, "the checkpoint remembers its best epoch"
    assert "unknown" not in info, "and its validation loss"
    assert "nan" not in info and "held-out exact match" in info
    assert value_of(max_new) == 4  # the answer length of a 4-digit sort
    prompt = value_of(examples)
    assert prompt == inside_text and len(prompt) == 4
    assert set(prompt) <= set("012")
    answer_there, answer_here = sample(fresh, "2101"), sample(trained, "2101")
    # Same weights, same greedy answer; the origin line names the same best epoch.
    assert answer_there.split("\n")[0] == answer_here.split("\n")[0]
    assert best_epoch_of(answer_there) == best_epoch_of(answer_here)


def test_editing_the_table_after_training_does_not_change_the_saved_model(client):
    """Save writes the best model with the config it was trained under, whatever the table shows now."""
    c = client()
    train(c, rows=[[16, 64, 2]], epochs=1, **SMALL_TASK)
    describe(c, [[32, 64, 4], [48, 96, 4]], seq_len=4)  # a different, valid model on the Build tab
    path = c.predict(api_name="/save_checkpoint")
    fresh = client()
    info, *_ = fresh.predict(handle_file(path), api_name="/upload_checkpoint")
    assert "from the uploaded file" in info
    saved = load_checkpoint(path)
    assert saved.model_config.d_model_configs == [16] and saved.model_config.heads_per_layer == [2]
    assert len(saved.model.encoder_layers()) == 1 and saved.model.embedding.embedding_dim == 16


def test_uploading_something_else_is_a_clear_error(client, tmp_path):
    c = client()
    fake = tmp_path / "weights.safetensors"
    fake.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(AppError) as error:
        c.predict(handle_file(str(fake)), api_name="/upload_checkpoint")
    assert "weights.safetensors is not a readable .safetensors checkpoint" in str(error.value)

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(AppError) as error:
        c.predict(handle_file(str(text)), api_name="/upload_checkpoint")
    assert "Invalid file type" in str(error.value) and ".safetensors" in str(error.value)

    with pytest.raises(AppError) as error:
        sample(c, "2101")
    assert "no model to sample from yet" in str(error.value)


def test_look_inside_draws_every_layer_and_head(trained):
    attention, mask = trained.predict("2101", api_name="/look_inside")
    heatmaps = traces(figure(attention), "heatmap")
    heads = [h for _, _, h in SMALL_LAYERS]
    assert len(heatmaps) == sum(heads)  # one map per (layer, head)
    titles = [a["text"] for a in figure(attention)["layout"]["annotations"] if a.get("text")]
    assert "layer 1, head 2" in titles and "layer 2, head 3" in titles
    length = len(heatmaps[0]["x"])
    for h in heatmaps:
        z = array(h["z"]).reshape(length, length)
        assert np.allclose(np.triu(z, k=1), 0), "no head attends to the future"
        assert np.allclose(z.sum(axis=1), 1, atol=1e-4)
    (mask_map,) = traces(figure(mask), "heatmap")
    assert array(mask_map["z"]).size == length * length

    with pytest.raises(AppError) as error:
        trained.predict("21", api_name="/look_inside")
    assert "4 characters" in str(error.value)


# ---------------------------------------------------------------------------------------------
# The README's page flow learns the task
# ---------------------------------------------------------------------------------------------

def test_stop_once_solved_can_be_switched_off(client):
    """The new last argument of /train: off, a run trains every epoch even when solved."""
    c = client()
    job = c.submit(*train_args(rows=[[16, 64, 2]], epochs=4, **SMALL_TASK), False, api_name="/train")
    final = list(updates(job))[-1][1]
    assert "trained 4 epochs" in final, final


# ---------------------------------------------------------------------------------------------
# A public Space: hostile input, memory, queued runs
# ---------------------------------------------------------------------------------------------

def reachable_tensor_bytes(root) -> int:
    """Bytes of every distinct tensor storage reachable from `root` (not through code or modules)."""
    import gc
    import types

    import torch

    seen, storages, todo, total = set(), set(), [root], 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (types.FunctionType, types.ModuleType, type, str, bytes)):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            key = obj.untyped_storage().data_ptr()
            if key not in storages:
                storages.add(key)
                total += obj.untyped_storage().nbytes()
            continue
        todo.extend(gc.get_referents(obj))
    return total


def test_a_session_keeps_its_model_and_curves_but_never_the_datasets():
    """A run stopped after one step keeps the best model, not ~86 MB of training data."""
    session = Session()
    run = train_tab.train(table([[16, 64, 2]]), "configurable", 0.0, "sort", 64, 3, 20_000, 200, "",
                          5, 64, 3e-3, 0, 0, session, progress=lambda *args, **kwargs: None, limits=Limits.public())
    next(run)
    session.stop()
    list(run)
    assert session.best is not None and session.best.task.train_dataset is None
    model_bytes = sum(p.numel() * 4 for p in session.best.model.parameters())
    kept = reachable_tensor_bytes(session)
    assert kept < 2 * model_bytes + 1_000_000, f"the session keeps {kept:,} bytes of tensors"


def test_a_failed_upload_keeps_the_model_and_its_labels(trained, tmp_path):
    import safetensors.torch

    before = sample(trained, "2101")
    path = Path(trained.predict(api_name="/save_checkpoint"))
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for key, damage in [("val_prompts", '"2101"'), ("summary", "[1]"),
                        ("summary", '{"val_accuracy": "excellent"}')]:
        bad = tmp_path / f"damaged-{key}.safetensors"
        safetensors.torch.save_file(tensors, str(bad), metadata={**metadata, key: damage})
        with pytest.raises(AppError) as error:
            trained.predict(handle_file(str(bad)), api_name="/upload_checkpoint")
        assert f"damaged-{key}.safetensors has damaged metadata" in str(error.value)
        assert sample(trained, "2101") == before, "the visitor's model and its labels are unchanged"


def test_stop_also_cancels_a_run_still_waiting_in_the_queue(client):
    """Other visitors' runs hold every training slot; mine waits, I press Stop: it never trains."""
    (train_event,) = [fn for fn in app.demo.fns.values() if fn.api_name == "train"]
    others = [client() for _ in range(train_event.concurrency_limit)]
    mine = client()
    busy = [c.submit(*train_args(rows=[[16, 64, 2]], epochs=200, **SMALL_TASK), api_name="/train") for c in others]
    try:
        for job in busy:
            next(updates(job))  # every slot is taken
        queued = mine.submit(*train_args(rows=[[16, 64, 2]], epochs=200, **SMALL_TASK), api_name="/train")
        time.sleep(0.5)  # let it join the queue
        mine.predict(api_name="/stop")
    finally:
        for c in others:
            c.predict(api_name="/stop")
    outs = list(updates(queued))
    assert "Stopped** before it started" in outs[-1][1], outs[-1][1]
    assert len(outs) == 1, "no step was trained"
    with pytest.raises(AppError, match="no model to sample from yet"):
        sample(mine, "2101")


def test_stop_when_nothing_runs_does_not_stop_the_next_run(client):
    c = client()
    c.predict(api_name="/stop")
    outs = train(c, rows=[[16, 64, 2]], epochs=1, **SMALL_TASK)
    assert "Done" in outs[-1][1]


@pytest.mark.parametrize("endpoint, args, words", [
    ("describe_model", (table([[16, 64], [16, 64, 2]]), "configurable", 0.1, "sort", 6, 3, ""),
     "layer 1: needs d_model, dim_feedforward and nhead"),
    ("describe_model", (table([[16, 64, 2]]), "configurable", 0.1, "sort", 6, 0, ""),
     "number of distinct digits must be at least 2"),
    ("describe_model", (table([[16, 64, 2]]), "configurable", 0.1, "sort", 6, -3, ""),
     "number of distinct digits must be at least 2"),
    ("describe_model", (table([[16, 64, 2]]), "configurable", 0.1, "sort", float("nan"), 3, ""),
     "sequence length must be a whole number, got nan"),
    ("train", train_args(epochs=float("nan")), "epochs must be a whole number, got nan"),
    ("train", train_args(seq_len=float("inf")), "sequence length must be a whole number, got inf"),
    ("train", train_args(seed=2**64), "seed 18446744073709551616 is above the limit of 4,294,967,295"),
    ("train", train_args(kind="text", text="ab\ud800cd" * 50), "a lone surrogate U+D800"),
    ("sample", ("2101", True, 1.0, float("nan"), 1.0, 4, ""), "top-k must be a whole number, got nan"),
    ("mask", (2.5,), "mask length must be a whole number, got 2.5"),
    ("look_inside", (None,), "the prompt is empty"),
])
def test_named_hostile_values_get_specific_messages(app_url, endpoint, args, words):
    from raw_client import generic_error

    visitor = RawVisitor(app_url)
    try:
        if endpoint in ("sample", "look_inside"):
            assert visitor.call("train", *train_args(rows=[[16, 64, 2]], epochs=1, **SMALL_TASK))["success"]
        answer = visitor.call(endpoint, *args)
    finally:
        visitor.close()
    assert generic_error(answer) is None, answer
    message = answer["error"] if not answer["success"] else answer["data"][3]  # describe shows it inline
    assert words in message, message


# ---------------------------------------------------------------------------------------------
# Tasks from the registry: parity and balanced brackets on the page
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, prompt, answer", [("parity", "0110", "EOEE"), ("brackets", "(())", "Y")])
def test_registry_tasks_train_and_answer_on_the_page(client, kind, prompt, answer):
    """A task added to the registry alone trains, describes its vocabulary and is sampled."""
    c = client()
    outs = train(c, epochs=2, kind=kind, seq_len=4, num_digits="", train_size=64, val_size=8)
    assert "Done" in outs[-1][1] or "Solved" in outs[-1][1], outs[-1][1]
    shown = sample(c, prompt, max_new_tokens=len(answer))
    assert f"`{prompt}` → **`" in shown and ("✓ correct" in shown or f"✗ expected `{answer}`" in shown), shown


@pytest.mark.parametrize("kind", ["parity", "brackets", "addition", "text"])
def test_task_widgets_follow_the_registry(kind):
    """Labels, defaults and visibility of the task widgets come from the task's registry entry."""
    entry = TASKS[kind]
    seq_len, num_digits, text, help_text = train_tab.task_changed(kind)
    for update, name in ((seq_len, "seq_len"), (num_digits, "num_digits")):
        field = entry.field(name)
        assert update["visible"] is (field is not None)
        if field is not None:
            assert (update["label"], update["value"]) == (field.label, field.default)
    assert text["visible"] is entry.needs_text and help_text == entry.help


def test_every_way_a_run_can_end_has_its_mark_on_the_page():
    assert set(run.FINAL_MARKS) == set(typing.get_args(StopReason))


def test_the_default_preset_is_the_default_model_everywhere():
    """The page opens on the preset whose layers are core's default, the CLI's too."""
    assert PRESETS[DEFAULT_PRESET]["layers"] == [list(layer) for layer in DEFAULT_LAYERS]


# ---------------------------------------------------------------------------------------------
# Lessons: without the mask, the causality check, best vs last, attention while it trained
# ---------------------------------------------------------------------------------------------

def table_row(markdown: str, label: str) -> list[str]:
    """The cells after `label` in a Markdown table row."""
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in row.strip("|").split("|")[1:]]


def percent(cell: str) -> float:
    return float(cell.rstrip("%")) / 100


def test_without_the_mask_validation_loss_drops_while_exact_match_collapses(client):
    """The "Why the mask" lesson through the API: an unmasked run, then a masked one, compared."""
    c = client()
    unmasked = train(c, epochs=3, causal=False, **SORT6)[-1][1]
    assert "train once with the mask to compare" in unmasked, unmasked
    assert "Without the mask every position also reads the tokens after it" in unmasked
    status = train(c, epochs=3, **SORT6)[-1][1]  # as long, with the mask (the lesson's 8 epochs: test_browser)
    (with_loss, without_loss), (with_match, without_match) = (
        table_row(status, "validation loss"), table_row(status, "held-out exact match"))
    assert float(without_loss) < float(with_loss) / 2, status
    assert percent(without_match) < 0.3 < 0.6 < percent(with_match), status


def test_causality_check_is_exactly_zero_before_the_edit_with_the_mask_and_not_without(client):
    c = client()
    for causal, words in ((True, "moved by exactly 0"), (False, "positions before 3 moved")):
        train(c, epochs=1, causal=causal, **SMALL_TASK)
        figure_value, text = c.predict("2101000", 3, api_name="/causality_check")
        assert words in text, text
        changes = array(figure(figure_value)["data"][0]["y"])
        assert len(changes) == 7 and changes[3] > 0
        assert (changes[:3] == 0).all() if causal else (changes[:3] > 0).all(), changes
        if causal:
            assert "How far each position's prediction moved: 0: 0 · 1: 0 · 2: 0 · 3: " in text


def test_best_and_last_model_answer_side_by_side(trained):
    shown = trained.predict("2101", True, 1.0, 0, 1.0, 4, "", api_name="/sample_best_and_last")
    assert table_row(shown, "epoch") == ["2", "2"] or len(table_row(shown, "epoch")) == 2, shown
    for label in ("validation loss", "held-out exact match"):
        assert len(table_row(shown, label)) == 2, shown
    answers = table_row(shown, "answer to `2101`")
    assert all(("✓ correct" in a) or ("✗ expected `0112`" in a) for a in answers), answers


def test_an_upload_has_no_last_model_to_compare(trained, client):
    fresh = client()
    fresh.predict(handle_file(trained.predict(api_name="/save_checkpoint")), api_name="/upload_checkpoint")
    with pytest.raises(AppError, match="there is no last model to compare with"):
        fresh.predict("2101", True, 1.0, 0, 1.0, 4, "", api_name="/sample_best_and_last")


def test_attention_maps_are_kept_as_the_model_improves(client):
    c = client()
    train(c, epochs=3, stop_when_solved=False, **SMALL_TASK)
    first = figure(c.predict(1, api_name="/attention_over_training"))
    assert "Attention at epoch 1 (snapshot 1 of" in first["layout"]["title"]["text"]
    assert len(first["data"]) == sum(heads for _, _, heads in SMALL_LAYERS)
    with pytest.raises(AppError, match="9 is (greater than maximum value|above the limit of)"):
        c.predict(9, api_name="/attention_over_training")


def step_points(plot_value) -> int:
    trace = next(t for t in figure(plot_value)["data"] if t.get("name") == "train loss (per step)")
    return len(array(trace["y"]))


def test_one_step_and_one_epoch_train_exactly_that_much(client):
    """For a teacher walking a class through: each click trains exactly one step, or one epoch."""
    c = client()
    args = train_args(epochs=3, **SMALL_TASK)  # 256 examples in batches of 64: 4 steps an epoch
    plot, status = c.predict(*args, api_name="/train_step")
    assert step_points(plot) == 1 and "step 1/12" in status, status
    plot, status = c.predict(*args, api_name="/train_step")
    assert step_points(plot) == 2 and "step 2/12" in status, status
    plot, status = c.predict(*args, api_name="/train_epoch")  # the rest of epoch 1, then its validation
    assert step_points(plot) == 4 and status.startswith("epoch   1/3"), status
    assert "from the best model (epoch 1" in sample(c, "2101")
    plot, status = c.predict(*args, api_name="/train_step")  # epoch 2 goes on from where epoch 1 ended
    assert step_points(plot) == 5 and "step 5/12" in status, status
    changed = train_args(epochs=3, lr=1e-3, **SMALL_TASK)  # other settings: a new run from step 1
    plot, status = c.predict(*changed, api_name="/train_step")
    assert step_points(plot) == 1 and "step 1/12" in status, status
    for _ in range(3):
        plot, status = c.predict(*changed, api_name="/train_epoch")
    assert "Done" in status and "trained 3 epochs" in status, status
    plot, status = c.predict(*changed, api_name="/train_step")  # a finished run: the next click starts anew
    assert step_points(plot) == 1, status


def test_a_lesson_sets_every_widget_and_says_what_to_notice(client):
    values = client().predict("Why the mask", api_name="/lesson")
    notice = values[-1]
    assert "**Why the mask.**" in notice and "causal mask switched OFF" in notice
    assert value_of(values[lessons.SETTINGS.index("causal")]) is False  # the causal-mask checkbox, unticked
    assert value_of(values[lessons.SETTINGS.index("epochs")]) == 8
    with pytest.raises(AppError, match="Why is not in the list of choices"):
        client().predict("Why", api_name="/lesson")


def test_a_page_run_checks_its_model_config_once(monkeypatch):
    """Validated once per use: the config a page run trains is checked against the limits one time.
    (The step buttons' run trains in this process; Train's is checked in its own, by train_task.)"""
    checked = []
    original = ModelConfig.validate
    monkeypatch.setattr(ModelConfig, "validate",
                        lambda self, limits=None: checked.append(self) or original(self, limits))
    session = Session()
    train_tab.train_some([[16, 32, 2]], "configurable", 0.0, "sort", 4, 3, 64, 16, "", 1, 64, 3e-3, 0, 0,
                         session, until="epoch", limits=Limits.public())
    assert sum(config is session.best.config for config in checked) == 1


def test_the_page_exports_its_model_as_code_that_runs(trained, tmp_path):
    code = Path(trained.predict(api_name="/export_code"))
    checkpoint = Path(trained.predict(api_name="/save_checkpoint"))
    result = subprocess.run([sys.executable, str(code), "--checkpoint", str(checkpoint), "--prompt", "2101"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    answer = result.stdout.strip().split(" -> ")[1]
    assert f"**`{answer}`**" in sample(trained, "2101")  # what the page answers, greedy, 4 tokens


def test_the_page_shows_the_command_line_that_runs_its_setup_and_it_runs(client, tmp_path):
    args = train_args(rows=[[16, 32, 2], [24, 48, 3]], epochs=1, stop_when_solved=False, causal=False, **SMALL_TASK)
    command = client().predict(*args, api_name="/command_line")
    line = command.strip().strip("`").removeprefix("bash").strip()
    assert "--d-model 16,24 --dim-feedforward 32,48 --nhead 2,3" in line and "--no-causal" in line, line
    argv = shlex.split(line.replace("runs/mine", str(tmp_path / "out")))
    assert argv[:4] == ["python", "-m", "core", "train"]
    result = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=120,
                            check=False, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "best.safetensors").exists()


def test_every_run_enters_the_runs_table_and_two_overlay(client):
    c = client()
    train(c, epochs=1, **SMALL_TASK)
    train(c, epochs=2, lr=1e-3, causal=False, **SMALL_TASK)
    named = {t["name"] for t in figure(c.predict(["run 1", "run 2"], api_name="/compare_runs"))["data"]}
    assert {"run 1: validation", "run 2: validation", "run 1: train", "run 2: train"} <= named
    csv_path, json_path = c.predict(api_name="/download_runs")
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0].startswith("run,setup,best epoch") and len(lines) == 3
    assert "no mask" in lines[2] and "lr 0.001" in lines[2]
    runs = json.loads(Path(json_path).read_text())
    assert [len(run["history"]["epochs"]) for run in runs] == [1, 2]
    with pytest.raises(AppError, match="there is no run 9"):
        c.predict(["run 9"], api_name="/compare_runs")


# ---------------------------------------------------------------------------------------------
# Links: share a setup, a teacher's locks and limits
# ---------------------------------------------------------------------------------------------

class LinkRequest:
    """What restore reads of a gr.Request: the page URL's query parameters."""

    def __init__(self, query: str):
        self.query_params = dict(urllib.parse.parse_qsl(query.lstrip("?")))


def restored(query: str) -> tuple[dict, str, Session]:
    *updates, notice, session = share.restore(LinkRequest(query), Session())
    return dict(zip(share.SETTINGS, updates)), notice, session


def test_a_link_carries_every_setting_and_restores_it(client):
    settings = [table([[32, 64, 4], [16, 32, 2]]), "configurable", 0.1, "reverse", 5, 4, 512, 64, "",
                7, 32, 0.01, 9, 2, False, False, False, 0.7, 3, 0.9, 5, "11"]
    query = client().predict(*settings, [], [], api_name="/share_link")
    values, notice, _ = restored(query)
    assert notice == ""
    assert value_of(values["layers"]) == [[32, 64, 4], [16, 32, 2]]
    expected = dict(zip(share.SETTINGS, settings), layers=None)
    for name, update in values.items():
        if name not in ("layers", "text"):
            assert value_of(update) == expected[name], name


def test_a_damaged_link_keeps_the_defaults_field_by_field_and_says_why():
    values, notice, session = restored("?epochs=many&lr=0.01&layers=48x192&kind=palindrome&dropout=2&bogus=1")
    assert value_of(values["lr"]) == 0.01
    for name in ("epochs", "layers", "kind", "dropout"):
        assert value_of(values[name]) is None, name  # no new value: the default stays
        assert f"`{name}`" in notice
    assert "`bogus` is not a setting a link carries" in notice
    assert session.locks == {} and session.limit_caps == {}


def test_a_teachers_link_locks_hides_and_lowers_limits_but_never_raises_them():
    values, notice, session = restored("?epochs=5&lock=epochs,kind&hide=text&max_epochs=20&max_layers=999")
    assert values["epochs"]["interactive"] is False and values["text"]["visible"] is False
    assert session.locks == {"epochs": 5} and "`kind` is locked but the link does not set it" in notice
    limits = share.page_limits(session, Limits.public())
    assert limits.max_epochs == 20 and limits.max_layers == Limits.public().max_layers
    run = train_tab.train(table([[16, 32, 2]]), "configurable", 0.0, "sort", 4, 3, 64, 16, "", 6, 64, 3e-3, 0, 0,
                          session, progress=lambda *a, **k: None, limits=Limits.public())
    with pytest.raises(gr.Error, match="epochs is locked to 5 by this page's link"):
        next(run)
    session.locks = {}
    run = train_tab.train(table([[16, 32, 2]]), "configurable", 0.0, "sort", 4, 3, 64, 16, "", 30, 64, 3e-3, 0, 0,
                          session, progress=lambda *a, **k: None, limits=Limits.public())
    with pytest.raises(gr.Error, match="epochs 30 is above the limit of 20"):
        next(run)


def test_a_script_reads_the_run_as_numbers_while_and_after_it_trains(client):
    c = client()
    job = c.submit(*train_args(epochs=50, stop_when_solved=False, **SMALL_TASK), api_name="/train")
    stream = updates(job)
    next(stream)
    while_training = c.predict(api_name="/run_numbers")  # the same session, while /train streams
    c.predict(api_name="/stop")
    list(stream)
    after = c.predict(api_name="/run_numbers")
    assert while_training["loss"] > 0 and len(while_training["epochs"]) <= len(after["epochs"]) < 50
    assert set(after["epochs"][0]) >= {"epoch", "train_loss", "val_loss", "val_accuracy", "improved"}
    assert after["best_epoch"] == min(after["epochs"], key=lambda row: row["val_loss"])["epoch"]


@pytest.mark.slow
def test_the_readme_script_trains_reads_the_numbers_and_samples(app_url, capsys):
    """The gradio_client example in the README, run as written against a real server: the default
    sort run solves the task (100% held-out exact match) and stops by itself, and answers right."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    script = readme.split("```python\nfrom gradio_client import Client\n", 1)[1].split("```", 1)[0]
    script = "from gradio_client import Client\n" + script.replace('"http://127.0.0.1:7860/"', repr(app_url))
    exec(compile(script, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("**✓ Solved**") for line in printed), printed
    assert "1.0" in printed  # the last epoch's held-out exact match
    assert any("`210120` → **`001122`** &nbsp; ✓ correct" in line for line in printed), printed


def test_a_fresh_page_process_loads_gradio_without_rewriting_its_type_stubs():
    """Gradio rewrites its .pyi stubs on every import, half of its import time (page/__init__.py
    turns that off): in a new process the page has it off and still builds."""
    code = ("import page.layout, gradio.component_meta as meta, gradio.blocks_events as events\n"
            "for module in (meta, events):\n"
            "    assert module.create_or_modify_pyi.__module__ == 'page', module.create_or_modify_pyi\n"
            "page.layout.build_demo()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(app.__file__).parent)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_page_is_served_as_configured_not_by_chance(app_url):
    """SSR off, a bounded queue that says when it is full, and the "Use via API" link in the footer."""
    options = launch_options()
    assert options["ssr_mode"] is False and "api" in options["footer_links"]
    assert app.demo._queue.max_size == 100  # PLAYGROUND_QUEUE_MAX_SIZE's default
    config = httpx.get(f"{app_url.rstrip('/')}/config", timeout=30).json()
    assert "api" in config.get("footer_links", []), config.get("footer_links")



def test_a_session_keeps_a_bounded_number_of_small_attention_snapshots():
    """At the page's largest sizes a snapshot of every head would be megabytes: a session keeps at
    most MAX_SNAPSHOTS, each with at most SNAPSHOT_MAX_HEADS heads a layer, in float16."""
    session = Session()
    for epoch in range(1, 31):
        session.keep_snapshot(epoch, [np.random.rand(16, 5, 5) for _ in range(3)], list("21010"))
    kept = session.attention_over_training
    assert len(kept) <= MAX_SNAPSHOTS and kept[0][0] == 1 and kept[-1][0] == 30
    assert [epoch for epoch, _, _ in kept] == sorted(epoch for epoch, _, _ in kept)
    assert all(layer.shape == (SNAPSHOT_MAX_HEADS, 5, 5) and layer.dtype == np.float16
               for _, maps, _ in kept for layer in maps)


def test_a_kept_run_holds_a_thinned_curve_and_every_epoch(monkeypatch):
    monkeypatch.setattr(run, "RUN_CURVE_POINTS", 10)  # instead of training past 1,000 steps
    session = Session()
    for _ in train_tab.train(table([[16, 32, 2]]), "configurable", 0.0, "sort", 4, 3, 64, 16, "", 2, 4, 3e-3, 0, 0,
                             session, False, progress=lambda *a, **k: None, limits=Limits.public()):
        pass  # 2 epochs of 16 steps
    (kept,) = session.runs
    assert len(kept.history.step_losses) <= 10 < len(session.history.step_losses) == 32
    assert len(kept.history.epochs) == 2


def test_two_visitors_training_the_same_seed_at_once_get_the_same_run(client):
    """Each Train runs in a process of its own: runs side by side no longer draw from one shared random
    generator (dropout 0.1 here), so a seed gives a visitor the same run however many others train."""
    visitors = [client(), client()]
    jobs = [c.submit(*train_args(epochs=2, seed=5, **SMALL_TASK), api_name="/train") for c in visitors]
    for job in jobs:
        list(updates(job, 120.0))
        assert job.status().success, job.exception()

    def untimed(numbers):
        return [{k: v for k, v in row.items() if k not in ("elapsed_s", "tokens_per_s")} for row in numbers["epochs"]]
    first, second = (c.predict(api_name="/run_numbers") for c in visitors)
    assert len(first["epochs"]) == 2 and untimed(first) == untimed(second)
    assert first["loss"] == second["loss"]


def test_a_run_too_big_for_the_machine_is_told_how_to_fix_it_not_to_report_a_bug():
    """A training process killed for memory raises MemoryError (tests/test_processes.py); the page says
    what to change, where any other surprise gets "please report this"."""
    @user_errors
    def killed():
        raise MemoryError("the training process was killed, most likely because the machine ran out of memory: "
                          "train a smaller model")

    @user_errors
    def out_of_memory():
        raise MemoryError()
    with pytest.raises(gr.Error, match="train a smaller model") as told:
        killed()
    assert "report" not in told.value.message
    with pytest.raises(gr.Error, match="ran out of memory: try a smaller model"):
        out_of_memory()
