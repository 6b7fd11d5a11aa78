"""Checkpoints: safetensors + JSON metadata, atomic writes, clear errors, no pickle."""

import json
import os
import pickle
import struct

import pytest
import safetensors.torch
import torch
from helpers import model_config_for, one_torch_thread, same_weights, snapshot, tiny_task  # noqa: F401

from core.checkpoint import FORMAT_NAME, load_checkpoint, save_checkpoint
from core.config import Limits, ModelConfig, TaskConfig
from core.data import make_task
from core.model import build_model


def saved(tmp_path, model_type="configurable", d_models=(16, 24), nhead=2, task=None,
          name="best.safetensors"):
    task = task or tiny_task("sort", seq_len=4, num_digits=3)
    if model_type == "simple":
        d_models = [d_models[0]] * len(d_models)
    config = model_config_for(task, d_models, nhead=nhead, dropout=0.1, model_type=model_type)
    torch.manual_seed(0)
    model = build_model(config)
    path = save_checkpoint(tmp_path / name, model, config, task, {"best_epoch": 3, "best_val_loss": 0.25})
    return path, model, config, task


def logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def read_header(path):
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8: 8 + length])


def rewrite(src, dst, metadata=None, tensors=None):
    """Copy a checkpoint with edited metadata and/or tensors."""
    with safetensors.safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(metadata or {})
    if tensors is not None:
        state = tensors(state)
    safetensors.torch.save_file(state, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("model_type", ["configurable", "simple"])
def test_round_trip_reproduces_logits_and_restores_everything(tmp_path, model_type):
    path, model, config, task = saved(tmp_path, model_type)
    checkpoint = load_checkpoint(path)
    x = torch.randint(0, len(task.vocab), (3, task.block_size))
    assert torch.equal(logits(checkpoint.model, x), logits(model, x))
    assert type(checkpoint.model) is type(model)
    assert not checkpoint.model.training
    assert checkpoint.model_config == config
    assert checkpoint.task.vocab == task.vocab
    assert checkpoint.task.config == task.config
    assert checkpoint.task.block_size == task.block_size
    assert checkpoint.task.expected_answer("2101") == "0112"
    assert checkpoint.summary["best_epoch"] == 3 and checkpoint.summary["best_val_loss"] == 0.25
    assert checkpoint.summary["versions"]["torch"] == torch.__version__
    assert same_weights(snapshot(checkpoint.model), snapshot(model))


def test_held_out_prompts_travel_with_the_checkpoint(tmp_path):
    """After loading, the examples offered are prompts the model never trained on."""
    task = tiny_task("sort", seq_len=4, num_digits=3, train_size=64, val_size=16)
    path, *_ = saved(tmp_path, task=task)
    loaded = load_checkpoint(path).task
    assert loaded.val_prompts == task.val_prompts
    assert loaded.examples(5) == task.val_prompts[:5]
    trained_on = {task.vocab.decode(x[: task.problem.prompt_len].tolist()) for x, _ in task.train_dataset}
    assert not trained_on & set(loaded.examples(16))


def test_per_layer_heads_and_widths_survive(tmp_path):
    task = tiny_task("addition", num_digits=2)
    config = ModelConfig(len(task.vocab), [8, 16, 12], [16, 32, 8], [2, 4, 3], 0.0)
    model = build_model(config)
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", model, config, task))
    assert [layer.self_attn.num_heads for layer in checkpoint.model.encoder_layers()] == [2, 4, 3]
    x = torch.randint(0, len(task.vocab), (2, task.block_size))
    assert torch.equal(logits(checkpoint.model, x), logits(model, x))


def test_text_checkpoint_keeps_the_vocabulary_but_not_the_text(tmp_path):
    text = "a secret diary entry about zebras. " * 12
    task = make_task(TaskConfig("text", seq_len=8, train_size=8, val_size=4, text=text))
    path, model, _, _ = saved(tmp_path, task=task, d_models=(8,))
    assert b"zebras" not in path.read_bytes()
    checkpoint = load_checkpoint(path)
    assert checkpoint.task.vocab == task.vocab
    assert checkpoint.task.config.text is None and checkpoint.task.problem is None


def test_file_is_plain_safetensors_with_our_metadata(tmp_path):
    path, model, config, task = saved(tmp_path)
    header = read_header(path)
    meta = header["__metadata__"]
    assert meta["format"] == FORMAT_NAME
    assert json.loads(meta["model_config"]) == config.to_dict()
    assert json.loads(meta["vocab"]) == task.vocab.tokens
    assert set(header) - {"__metadata__"} == set(model.state_dict())
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # an ordinary readable file


def test_loading_never_unpickles(tmp_path, monkeypatch):
    path, model, _, task = saved(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint must load without pickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    checkpoint = load_checkpoint(path)
    x = torch.randint(0, len(task.vocab), (1, 5))
    assert torch.equal(logits(checkpoint.model, x), logits(model, x))


def test_save_leaves_no_temporary_files(tmp_path):
    saved(tmp_path)
    saved(tmp_path)  # overwriting too
    assert sorted(os.listdir(tmp_path)) == ["best.safetensors"]


def test_failed_save_keeps_the_existing_file_intact(tmp_path, monkeypatch):
    path, model, config, task = saved(tmp_path)
    before = path.read_bytes()

    def crash_mid_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, config, task, {"best_epoch": 9})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["best.safetensors"]
    monkeypatch.undo()
    assert load_checkpoint(path).summary["best_epoch"] == 3


def test_save_creates_the_folder(tmp_path):
    path, *_ = saved(tmp_path / "runs" / "today")
    assert path.is_file()


# --- files that are not (good) checkpoints --------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint file at nothing.safetensors"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_text_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are my notes, not a model\n")
    with pytest.raises(ValueError, match="notes.safetensors is not a readable .safetensors checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path, *_ = saved(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.safetensors is not a readable .safetensors checkpoint "
                                         r"\(is it truncated or another kind of file\?\)"):
        load_checkpoint(cut)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable .safetensors checkpoint"):
        load_checkpoint(path)


def test_safetensors_file_without_our_metadata(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match="other.safetensors is a safetensors file but not a Transformer "
                                         "Playground checkpoint"):
        load_checkpoint(path)


def test_tensors_that_do_not_fit_the_config(tmp_path):
    path, *_ = saved(tmp_path, d_models=(16, 24))
    config = json.loads(read_header(path)["__metadata__"]["model_config"])
    wider = rewrite(path, tmp_path / "wider.safetensors",
                    metadata={"model_config": json.dumps({**config, "d_model_configs": [16, 32]})})
    with pytest.raises(ValueError, match="wider.safetensors: its tensors don't fit its model config"):
        load_checkpoint(wider)


def test_missing_tensor(tmp_path):
    path, *_ = saved(tmp_path)
    fewer = rewrite(path, tmp_path / "fewer.safetensors",
                    tensors=lambda state: {k: v for k, v in state.items() if k != "head.weight"})
    with pytest.raises(ValueError, match="its tensors don't fit its model config .*head.weight"):
        load_checkpoint(fewer)


@pytest.mark.parametrize("metadata, message", [
    ({"model_config": "{not json"}, "damaged metadata"),
    ({"vocab": "[1, 2"}, "damaged metadata"),
    ({"block_size": "six"}, "damaged metadata"),
    ({"model_config": json.dumps({"vocab_size": 3, "d_model_configs": [10],
                                  "dim_feedforward_configs": [8], "nhead": 4})},
     "damaged metadata: layer 1: d_model 10 is not divisible by nhead 4"),
    ({"vocab": json.dumps(["0", "1"])}, "damaged metadata: its vocabulary has 2 tokens but the model has 3"),
])
def test_damaged_metadata(tmp_path, metadata, message):
    path, *_ = saved(tmp_path)
    bad = rewrite(path, tmp_path / "bad.safetensors", metadata=metadata)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(bad)


def test_missing_metadata_entry(tmp_path):
    path, *_ = saved(tmp_path)
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "vocab"}
        state = {k: f.get_tensor(k) for k in f.keys()}
    bad = tmp_path / "novocab.safetensors"
    safetensors.torch.save_file(state, str(bad), metadata=meta)
    with pytest.raises(ValueError, match="novocab.safetensors has damaged metadata"):
        load_checkpoint(bad)


# --- checkpoints from strangers (issue: hostile uploads) ---------------------------------------

def claiming(tmp_path, name, **metadata):
    """A tiny real checkpoint whose metadata then claims something else."""
    path, *_ = saved(tmp_path)
    return rewrite(path, tmp_path / name, metadata={k: json.dumps(v) if not isinstance(v, str) else v
                                                    for k, v in metadata.items()})


def test_a_small_file_claiming_a_huge_model_builds_nothing(tmp_path, monkeypatch):
    """11 kB that claim 151 M parameters: refused from the header, citing the page's limit."""
    import core.checkpoint as checkpoint_module

    built = []
    real_build = checkpoint_module.build_model
    monkeypatch.setattr(checkpoint_module, "build_model",
                        lambda config, device=None: built.append(torch.get_default_device())
                        or real_build(config, device))
    huge = {"vocab_size": 3, "d_model_configs": [2048] * 3, "dim_feedforward_configs": [8192] * 3, "nhead": 4}
    path = claiming(tmp_path, "huge.safetensors", model_config=huge)
    assert path.stat().st_size < 50_000
    with pytest.raises(ValueError, match=r"huge.safetensors .*larger than this place allows.*above the limit of "
                                         r"256 \(set by PLAYGROUND_MAX_D_MODEL\)"):
        load_checkpoint(path, limits=Limits.public())
    assert all(device.type == "meta" for device in built), "only ever built on the meta device"


@pytest.mark.parametrize("metadata, words", [
    (dict(task_config={"kind": "sort", "seq_len": 10**6, "num_digits": 3}), "makes model inputs of"),
    (dict(model_config={"vocab_size": 3, "d_model_configs": [512], "dim_feedforward_configs": [64], "nhead": 2}),
     "d_model 512 is above the limit of 256"),
])
def test_uploads_are_held_to_the_limits_of_the_place_that_loads_them(tmp_path, metadata, words):
    path = claiming(tmp_path, "big.safetensors", **metadata)
    with pytest.raises(ValueError, match=words):
        load_checkpoint(path, limits=Limits.public())


def test_a_block_size_that_does_not_match_the_task_is_refused(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 8
    task = make_task(TaskConfig("text", seq_len=8, train_size=8, val_size=4, text=text))
    path, *_ = saved(tmp_path, task=task, d_models=(8,))
    bad = rewrite(path, tmp_path / "long.safetensors", metadata={"block_size": "100000"})
    with pytest.raises(ValueError, match="long.safetensors has damaged metadata: its block size 100000 does "
                                         "not match its task, which needs 8"):
        load_checkpoint(bad)


@pytest.mark.parametrize("metadata, words", [
    ({"val_prompts": '"2101"'}, "its val_prompts should be a JSON list"),
    ({"val_prompts": '["99x9"]'}, "not in the vocabulary"),
    ({"summary": "[1, 2]"}, "its summary should be a JSON object"),
    ({"summary": '{"val_accuracy": "high"}'}, "its accuracy must be a number"),
    ({"summary": '{"best_epoch": 2.5}'}, "its best epoch must be a whole number"),
    ({"summary": '{"best_val_loss": NaN}'}, "its best validation loss must be a finite number"),
    ({"task_config": '{"kind": "sort", "num_digits": 0}'}, "number of distinct digits must be at least 2"),
    ({"vocab": '["0", "1", "\\u0000"]'}, "vocabulary"),
])
def test_every_metadata_field_is_type_checked(tmp_path, metadata, words):
    bad = rewrite(saved(tmp_path)[0], tmp_path / "odd.safetensors", metadata=metadata)
    with pytest.raises(ValueError, match=f"odd.safetensors has damaged metadata: .*{words}"):
        load_checkpoint(bad)


def test_a_huge_header_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "padded.safetensors"
    header = json.dumps({"__metadata__": {"format": FORMAT_NAME, "junk": "x" * 12_000_000}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ValueError, match=r"padded.safetensors has a header of 12,000,\d+ bytes, far above"):
        load_checkpoint(path)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, bad_value):
    def poison(state):
        state["head.bias"][0] = bad_value
        return state

    bad = rewrite(saved(tmp_path)[0], tmp_path / "diverged.safetensors", tensors=poison)
    with pytest.raises(ValueError, match="diverged.safetensors has weights that are NaN or infinite .in head.bias"):
        load_checkpoint(bad)


def test_wrong_dtype_is_refused(tmp_path):
    bad = rewrite(saved(tmp_path)[0], tmp_path / "half.safetensors",
                  tensors=lambda state: {k: v.half() for k, v in state.items()})
    with pytest.raises(ValueError, match="half.safetensors: its tensors don't fit its model config"):
        load_checkpoint(bad)


def test_a_checkpoint_of_another_format_version_is_refused_by_name(tmp_path):
    newer = rewrite(saved(tmp_path)[0], tmp_path / "newer.safetensors", metadata={"format_version": "2"})
    with pytest.raises(ValueError, match="newer.safetensors is a checkpoint of format version '2'; this version "
                                         "of the playground reads version 1"):
        load_checkpoint(newer)
