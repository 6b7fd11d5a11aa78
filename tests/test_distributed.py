"""torchrun: two processes (gloo, on the CPU) train one model through the same loop as one process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["train", "--task", "sort", "--seq-len", "4", "--train-size", "64", "--val-size", "16", "--d-model", "16",
         "--dim-feedforward", "32", "--nhead", "2", "--batch-size", "16", "--dropout", "0", "--stop-when-solved",
         "0", "--quiet"]


def torchrun(processes: int, *argv, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={processes}", "-m", "core", *map(str, argv)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_learn_what_one_does_with_the_same_global_batch(tmp_path):
    runs = {n: torchrun(n, *SMALL, "--epochs", "3", "--out", f"run{n}", cwd=tmp_path) for n in (1, 2)}
    for job in runs.values():
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
        assert out.count("best checkpoint:") == 1  # only rank 0 prints
    one, two = (json.loads((tmp_path / f"run{n}" / "history.json").read_text()) for n in (1, 2))
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for key in ("train_loss", "val_loss"):
            assert abs(a[key] - b[key]) < 1e-5, (key, a, b)
        assert (a["val_accuracy"], a["improved"]) == (b["val_accuracy"], b["improved"])
    # The final models compute the same function. (Their weights are compared through what they
    # compute: attention ignores the key bias, whose gradient is rounding noise that AdamW's
    # normalisation turns into steps of either sign.)
    models = [load_checkpoint(tmp_path / f"run{n}" / "best.safetensors").model for n in (1, 2)]
    x = torch.randint(0, 3, (32, 7))  # (B, T): the sort task's vocabulary and input length
    with torch.no_grad():
        torch.testing.assert_close(models[1](x), models[0](x), rtol=1e-4, atol=1e-4)


def test_a_rank_that_dies_ends_the_job_and_leaves_a_whole_checkpoint(tmp_path):
    job = torchrun(2, *SMALL, "--epochs", "500", "--train-size", "256", "--out", "run", cwd=tmp_path)
    history = tmp_path / "run" / "history.json"
    deadline = time.monotonic() + 120
    while not (history.exists() and len(json.loads(history.read_text() or "[]")) >= 2):
        assert time.monotonic() < deadline and job.poll() is None, job.stderr.read() if job.poll() else "slow"
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signal.SIGKILL)  # one of the two ranks this test started dies
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0
    assert "error" in err.lower() or "failed" in err.lower(), err[-2000:]
    checkpoint = load_checkpoint(tmp_path / "run" / "best.safetensors")  # loads: whole
    assert checkpoint.summary["best_epoch"] >= 1
    assert json.loads(history.read_text())  # history.json too
