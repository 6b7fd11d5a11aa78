"""The model as standalone PyTorch code: the exported file, run in a fresh interpreter, loads the
checkpoint and gives the engine's logits and answers."""

import json
import subprocess
import sys

import pytest
import torch
from helpers import one_torch_thread  # noqa: F401

from core.checkpoint import save_checkpoint
from core.cli import main
from core.config import ModelConfig, SampleConfig, TaskConfig
from core.data import make_task
from core.export import export_code
from core.model import build_model
from core.sampling import sample_text

DRIVER = """
import json, runpy, sys, torch
module = runpy.run_path(sys.argv[1])  # not __main__: its functions, without running main()
model = module["load_model"](sys.argv[2])
ids = torch.tensor(json.loads(sys.argv[3]))
print(json.dumps(model(ids).tolist()))
"""


def exported(tmp_path, config, task, seed=0):
    torch.manual_seed(seed)
    model = build_model(config).eval()
    checkpoint = save_checkpoint(tmp_path / "best.safetensors", model, config, task)
    script = tmp_path / "model.py"
    script.write_text(export_code(config, task))
    return model, checkpoint, script


def run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("model_type, d_models, heads, causal", [
    ("configurable", [16, 32, 24], [2, 4, 3], True),  # two projections
    ("simple", [16, 16], 2, True),
    ("configurable", [16], 2, False),
])
def test_the_exported_file_gives_the_same_logits_in_a_fresh_interpreter(tmp_path, model_type, d_models, heads,
                                                                         causal):
    task = make_task(TaskConfig("sort", seq_len=4, train_size=16, val_size=4))
    config = ModelConfig(len(task.vocab), d_models, [2 * d for d in d_models], heads, 0.1, model_type, causal)
    model, checkpoint, script = exported(tmp_path, config, task)
    ids = torch.randint(0, len(task.vocab), (2, task.block_size))  # (B, T)
    result = run("-c", DRIVER, script, checkpoint, json.dumps(ids.tolist()))
    assert result.returncode == 0, result.stderr
    theirs = torch.tensor(json.loads(result.stdout))
    with torch.no_grad():
        ours = model(ids)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    source = script.read_text()
    assert ("class SimpleTransformer" if model_type == "simple" else "class ConfigurableTransformer") in source
    assert "import core" not in source and "# (B, T) -> (B, T, C" in source


def test_the_exported_file_answers_a_prompt_as_the_engine_does(tmp_path):
    task = make_task(TaskConfig("reverse", seq_len=5, train_size=16, val_size=4))
    config = ModelConfig(len(task.vocab), [16, 32], [32, 64], [2, 4], 0.0)
    model, checkpoint, script = exported(tmp_path, config, task, seed=3)
    result = run(script, "--checkpoint", checkpoint, "--prompt", "21012")
    assert result.returncode == 0, result.stderr
    ours = sample_text(model, task, "21012", SampleConfig(max_new_tokens=task.sample_tokens, greedy=True))
    assert result.stdout.strip() == f"21012 -> {ours}"


def test_export_from_the_command_line(tmp_path, capsys):
    task = make_task(TaskConfig("sort", seq_len=4, train_size=16, val_size=4))
    config = ModelConfig(len(task.vocab), [16], [32], 2, 0.0)
    _, checkpoint, _ = exported(tmp_path, config, task)
    out = tmp_path / "exported.py"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert "exported.py" in capsys.readouterr().out
    result = run(out, "--checkpoint", checkpoint, "--prompt", "2101")
    assert result.returncode == 0 and result.stdout.startswith("2101 -> "), result.stderr
