"""From one process to two: the command line under torchrun on the text task, tokens per second.

Both runs train the same model on the same global batch (`python -m torch.distributed.run
--standalone --nproc_per_node N -m core train ...`, gloo on the CPU, one torch thread per
process). The figure is each run's median tokens/s over its epochs after the first (as
history.json records them, counting every rank's share) and their ratio. On a 2-core machine two
processes can at best double the one process's speed; what they lose goes to synchronising
gradients every step.

`python -m bench.scaling [--epochs 4]` from the repository root (part of `make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_RUN = ["train", "--task", "text", "--text-file", str(ROOT / "assets" / "sample_text.txt"), "--seq-len", "64",
            "--d-model", "128,128,128,128", "--dim-feedforward", "512,512,512,512", "--nhead", "4",
            "--batch-size", "32", "--train-size", "2048", "--val-size", "256", "--precision", "fp32", "--quiet"]


def tokens_per_second(processes: int, epochs: int, folder: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = folder / f"run{processes}"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                    "-m", "core", *TEXT_RUN, "--epochs", str(epochs), "--out", str(out)],
                   env=env, check=True, capture_output=True, timeout=1800)
    rows = json.loads((out / "history.json").read_text())
    return statistics.median(row["tokens_per_s"] for row in rows[1:] or rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        speed = {n: tokens_per_second(n, args.epochs, Path(folder)) for n in (1, 2)}
    print(f"torchrun, text 4 x 128, T 64, global batch 32: 1 process {speed[1]:,.0f} tok/s | "
          f"2 processes {speed[2]:,.0f} tok/s | {speed[2] / speed[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
