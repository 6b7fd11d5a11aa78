"""The CUDA paths, on a machine with an NVIDIA GPU (skipped elsewhere; CI has none).

Nothing in the playground needs a GPU, but `--device cuda` and `auto` promise one works: training
in float32 and in bf16 autocast (PyTorch's own attention kernels, never the CPU's bf16 mode), the
key/value cache, checkpoints written on the GPU and read on a CPU, and torchrun over NCCL.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import attention_kernels_run, tiny_model

import core.training as training
from core.checkpoint import load_checkpoint
from core.config import DEFAULT_LAYERS, ModelConfig, SampleConfig, TaskConfig, TrainConfig
from core.cpu_kernels import cpu_bf16_kernels
from core.data import make_task
from core.sampling import generate
from core.training import FitResult, accuracy, train_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")


def fit_result(task, model_config, train_config):
    return [e for e in train_task(task, model_config, train_config) if isinstance(e, FitResult)][0]


def test_the_default_sort_run_solves_on_the_gpu():
    """The page's defaults with `device="cuda"`: solved, the best model kept on the GPU, and the
    same score when it is moved to the CPU."""
    task = make_task(TaskConfig())
    d_models, ffs, heads = (list(column) for column in zip(*DEFAULT_LAYERS))
    result = fit_result(task, ModelConfig(len(task.vocab), d_models, ffs, heads), TrainConfig(device="cuda"))
    assert result.stop_reason == "solved", result.stop_reason
    assert next(result.best_model.parameters()).device.type == "cuda"
    assert accuracy(result.best_model, task) == 1.0
    assert accuracy(result.best_model.cpu(), task) == 1.0


def test_bf16_and_fp32_loss_curves_agree_on_the_gpu():
    """bf16 autocast on CUDA changes rounding, not what is learned: per-epoch losses within 5%."""
    task = make_task(TaskConfig("reverse", seq_len=4, num_digits=3, train_size=256, val_size=32))
    model_config = ModelConfig(len(task.vocab), [32], [64], 2, 0.0)
    curves = {}
    for precision in ("fp32", "bf16"):
        train_config = TrainConfig(epochs=4, batch_size=32, precision=precision, solved_epochs=0, device="cuda")
        curves[precision] = [(r.train_loss, r.val_loss) for r in fit_result(task, model_config, train_config)
                             .history.epochs]
    for (train32, val32), (train16, val16) in zip(curves["fp32"], curves["bf16"]):
        assert train16 == pytest.approx(train32, rel=0.05) and val16 == pytest.approx(val32, rel=0.05)
    assert curves["fp32"] != curves["bf16"], "bf16 really ran"


def test_auto_precision_is_bf16_on_a_gpu_that_has_it():
    wide, narrow = ModelConfig(5, [128, 128], [256, 256], 4), ModelConfig(5, [48], [192], 3)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert training.autocast_dtype("auto", CUDA, wide) == expected
    assert training.autocast_dtype("auto", CUDA, narrow) is None
    assert training.autocast_dtype("fp32", CUDA, wide) is None


def test_gpu_bf16_keeps_pytorchs_attention_kernels(monkeypatch):
    """The CPU's bf16 mode is for CPUs only: on CUDA a bf16 step runs PyTorch's fused attention."""
    entered = []
    monkeypatch.setattr(training, "cpu_bf16_kernels", lambda *args: entered.append(1) or cpu_bf16_kernels(*args))
    kernels = attention_kernels_run(torch.bfloat16, "cuda")
    assert not entered
    assert any("flash" in k or "efficient" in k or "cudnn" in k for k in kernels), kernels


@pytest.mark.parametrize("sampling", [dict(greedy=True), dict(temperature=1.2, top_k=4, top_p=0.9, seed=3)])
@pytest.mark.parametrize("batch", [1, 3])
def test_the_cache_gives_the_same_tokens_on_the_gpu(sampling, batch):
    model = tiny_model(9, [16, 24, 16], nhead=[2, 3, 2], dropout=0.1, seed=5).to(CUDA)
    prompts = torch.randint(0, 9, (batch, 5), device=CUDA)  # (B, T)
    config = SampleConfig(max_new_tokens=20, **sampling)
    cached = generate(model, prompts, config, block_size=12)
    uncached = generate(model, prompts, config, block_size=12, use_cache=False)
    assert cached.device.type == "cuda" and cached.shape == (batch, 20)
    assert torch.equal(cached, uncached)


TINY = ["--task", "sort", "--seq-len", "4", "--num-digits", "3", "--train-size", "64", "--val-size", "16",
        "--d-model", "16", "--dim-feedforward", "32", "--nhead", "2", "--batch-size", "16", "--quiet"]
TORCHRUN = ("-m", "torch.distributed.run", "--standalone")


def run_core(*argv, cwd: Path, launcher=("-m",), expect_code: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.run([sys.executable, *launcher, "core", *map(str, argv)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == expect_code, job.stderr
    return job


def test_a_checkpoint_trained_on_the_gpu_samples_on_a_cpu(tmp_path):
    run_core("train", *TINY, "--epochs", "3", "--device", "cuda", "--precision", "bf16", "--out", "run",
             cwd=tmp_path)
    checkpoint = load_checkpoint(tmp_path / "run" / "best.safetensors")  # onto the CPU
    assert next(checkpoint.model.parameters()).device.type == "cpu"
    out = run_core("sample", "--checkpoint", "run/best.safetensors", "--prompt", "2101", "--greedy", cwd=tmp_path)
    assert out.stdout.startswith("2101 -> ")


def test_torchrun_trains_on_the_gpu_over_nccl(tmp_path):
    """One process per GPU, through the same loop: gradients over NCCL, the loop's votes over gloo."""
    gpus = torch.cuda.device_count()
    run_core("train", *TINY, "--epochs", "2", "--device", "cuda", "--out", "run", cwd=tmp_path,
             launcher=(*TORCHRUN, f"--nproc_per_node={gpus}", "-m"))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]


def test_torchrun_with_more_processes_than_gpus_says_how_many_to_start(tmp_path):
    """NCCL refuses two ranks on one GPU; the extra rank says so before joining the group."""
    gpus = torch.cuda.device_count()
    job = run_core("train", *TINY, "--epochs", "2", "--device", "cuda", "--out", "run", cwd=tmp_path,
                   launcher=(*TORCHRUN, f"--nproc_per_node={gpus + 1}", "-m"), expect_code=1)
    assert f"more processes on this machine than it has GPUs ({gpus}): use --nproc_per_node {gpus}" in job.stderr
