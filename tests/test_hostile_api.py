"""Random and hostile values sent to every API endpoint of a launched server.

A visitor (here over plain HTTP, so NaN, infinities and lone surrogates get through as they do
from any script) owns a trained model. Hypothesis then sends each public endpoint values of
every odd kind. The test fails on a generic error, a traceback in a response, or any change to
the visitor's best model. Train and upload are only ever sent invalid inputs, since a valid one
would rightly replace the model.
"""

from __future__ import annotations

import json
import math

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_client import RawVisitor, generic_error

from core.checkpoint import save_checkpoint
from core.config import ModelConfig, TaskConfig
from core.data import make_task
from core.model import build_model

HEADERS = ["d_model", "dim_feedforward", "nhead"]
NASTY_NUMBERS = [math.nan, math.inf, -math.inf, 2**64, 10**30, -1, 0, 0.5, 1e308, -2**63, True]
NASTY_TEXT = ["", " ", "\ud800", "a\udfffb", "\x00", "\x1b[31m", "<script>alert(1)</script>", "2101\n",
              "💥" * 3, "x" * 5000, "NaN", "1e999", "0x10"]


def table(rows):
    return {"headers": HEADERS, "data": rows, "metadata": None}


numbers = st.one_of(st.sampled_from(NASTY_NUMBERS), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(NASTY_TEXT), st.none())
texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40), numbers, st.none())
anything = st.one_of(numbers, texts, st.lists(numbers, max_size=3), st.dictionaries(st.text(max_size=5), numbers,
                                                                                     max_size=2))
cells = st.one_of(numbers, st.sampled_from([16, 32, 48]))
tables = st.one_of(
    st.lists(st.lists(cells, min_size=0, max_size=5), max_size=4).map(table),  # ragged, junk cells
    st.lists(st.lists(st.sampled_from([16, 32, 2, 4, 4096, 10**9]), min_size=3, max_size=3), max_size=30).map(table),
    anything,
)

GOOD_TRAIN = [table([[16, 64, 2]]), "configurable", 0.1, "sort", 4, 3, 64, 16, "", 1, 64, 3e-3, 0, 0]
BAD_TRAIN_VALUES = {  # index in /train's inputs -> values that are never valid there
    0: st.one_of(st.sampled_from([table([]), table([[16, 64]]), table([[50, 64, 4]]), table([[4096, 64, 2]]),
                                  table([[16, 64, 2, 1]]), "junk", None])),
    1: st.sampled_from(["bogus", None, 3, ""]),
    2: st.sampled_from([math.nan, math.inf, -0.5, 1.0, "x", None]),
    3: st.sampled_from(["poetry", None, 7, "\ud800"]),
    4: st.sampled_from([math.nan, math.inf, 0, -3, 2.5, 10**6, "six", None]),
    5: st.sampled_from([math.nan, 0, 1, -3, 11, 2.5, None]),
    6: st.sampled_from([math.nan, 0, -1, 10**7, 2**64, 1.5, "many"]),
    9: st.sampled_from([math.nan, math.inf, 0, -1, 10**6, 1.5, None]),
    10: st.sampled_from([math.nan, 0, -64, 10**5, 6.4]),
    11: st.sampled_from([math.nan, math.inf, 0, -1, 5, "fast"]),
    12: st.sampled_from([math.nan, -1, 2**64, 10**30, 0.5, "seed"]),
    13: st.sampled_from([math.nan, math.inf, -1, 1.5, "never"]),
}


@st.composite
def bad_train_args(draw):
    args = list(GOOD_TRAIN)
    index = draw(st.sampled_from(sorted(BAD_TRAIN_VALUES)))
    args[index] = draw(BAD_TRAIN_VALUES[index])
    if index == 3 or draw(st.booleans()):  # sometimes also a text with characters it can't send back
        args[3], args[8] = ("text", draw(st.sampled_from(["ab\ud800cd" * 60, "a\x00b" * 100, ""])))
    return args


ENDPOINT_ARGS = {
    "describe_model": st.tuples(tables, anything, numbers, anything, numbers, numbers, texts),
    "mask": st.tuples(numbers),
    "add_layer": st.tuples(tables),
    "remove_layer": st.tuples(tables),
    "preset": st.tuples(texts),
    "sample": st.tuples(texts, anything, numbers, numbers, numbers, numbers, texts),
    "look_inside": st.tuples(texts),
    "stop": st.tuples(),
    "save_checkpoint": st.tuples(),
    "train": bad_train_args().map(tuple),
    "train_step": bad_train_args().map(tuple),
    "train_epoch": bad_train_args().map(tuple),
    "sample_best_and_last": st.tuples(texts, anything, numbers, numbers, numbers, numbers, texts),
    "causality_check": st.tuples(texts, numbers),
    "attention_over_training": st.tuples(numbers),
    "lesson": st.tuples(texts),
    "compare_runs": st.tuples(anything),
    "share_link": st.tuples(tables, anything, numbers, anything, numbers, numbers, numbers, numbers, texts,
                            numbers, numbers, numbers, numbers, numbers, anything, anything, anything, numbers,
                            numbers, numbers, numbers, texts, anything, anything),
    "command_line": bad_train_args().map(tuple),
    "run_numbers": st.tuples(),
    "export_code": st.tuples(),
    "download_runs": st.tuples(),
}


@pytest.fixture(scope="module")
def visitor(app_url):
    """A visitor with a trained model (sort of 4 digits over 0-2)."""
    v = RawVisitor(app_url)
    answer = v.call("train", *GOOD_TRAIN)
    assert answer["success"], answer
    yield v
    v.close()


def fingerprint(visitor: RawVisitor) -> str:
    """What the visitor's best model answers, and which epoch it says it is from."""
    answer = visitor.call("sample", "2101", True, 1.0, 0, 1.0, 4, "")
    assert answer["success"], answer
    return answer["data"][0]


@settings(max_examples=110, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_endpoint_answers_hostile_values_specifically(visitor, data):
    before = fingerprint(visitor)
    name = data.draw(st.sampled_from(sorted(ENDPOINT_ARGS)), label="endpoint")
    args = data.draw(ENDPOINT_ARGS[name], label="args")
    answer = visitor.call(name, *args)
    problem = generic_error(answer)
    assert problem is None, f"/{name}{args!r:.300} gave {problem}"
    assert fingerprint(visitor) == before, f"/{name} changed the visitor's best model"


# --- hostile uploads: files that are not (valid) checkpoints ---------------------------------

def _checkpoint(tmp_path):
    task = make_task(TaskConfig("sort", 4, 3, 64, 16))
    config = ModelConfig(len(task.vocab), [16], [32], 2, 0.0)
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "good.safetensors", build_model(config), config, task,
                           {"best_epoch": 1, "best_val_loss": 0.5, "val_accuracy": 0.5})


DAMAGE = {
    "model_config": ['{"vocab_size": 3}', json.dumps({"vocab_size": 3, "d_model_configs": [2048] * 3,
                                                      "dim_feedforward_configs": [8192] * 3, "nhead": 4}),
                     "[]", "null", "{broken"],
    "task_config": [json.dumps({"kind": "sort", "seq_len": 10**6}), json.dumps({"kind": "sort", "num_digits": 0}),
                    json.dumps({"kind": "addition", "num_digits": -3}), '"sort"'],
    "vocab": ['["0","1","2\\ud800"]', '[0, 1, 2]', '"012"'],
    "block_size": ["100000", "-1", "2.5", '"7"', "1e400"],
    "val_prompts": ['"2101"', '[1, 2]', '["9999"]', json.dumps(["2101"] * 65)],
    "summary": ['[1, 2]', '{"val_accuracy": "high"}', '{"best_epoch": -1}', '{"best_val_loss": NaN}'],
}


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(DAMAGE)), data=st.data())
def test_damaged_uploads_are_refused_and_keep_the_model(visitor, tmp_path_factory, key, data):
    folder = tmp_path_factory.mktemp("upload")
    good = _checkpoint(folder)
    with safetensors.safe_open(str(good), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    metadata[key] = data.draw(st.sampled_from(DAMAGE[key]), label=key)
    bad = folder / "bad.safetensors"
    safetensors.torch.save_file(tensors, str(bad), metadata=metadata)
    before = fingerprint(visitor)
    answer = visitor.call("upload_checkpoint", visitor.upload(bad))
    assert not answer["success"] and generic_error(answer) is None, answer
    assert "bad.safetensors" in answer["error"], "the message says which file is at fault"
    assert fingerprint(visitor) == before
