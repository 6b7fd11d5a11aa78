"""Training keeps freed memory for the next step (core/allocator.py), measured in page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import model_config_for, one_torch_thread, tiny_task  # noqa: F401

from core.allocator import _is_glibc, keep_freed_memory
from core.config import TrainConfig
from core.training import train_task

ROOT = Path(__file__).resolve().parent.parent

# Three "steps", each allocating 64 MB in 4 MB blocks, writing every page and freeing them all, as
# a training step does with its tensors; prints the page faults of the third step.
STEPS = textwrap.dedent("""
    import resource, sys
    sys.path.insert(0, {root!r})
    if {keep}:
        from core.allocator import keep_freed_memory
        assert keep_freed_memory()
    def step():
        blocks = [bytearray(4 << 20) for _ in range(16)]
        for block in blocks:
            block[::4096] = bytes(len(block) // 4096)  # a write on every page
    step(); step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")
PAGES_PER_STEP = (64 << 20) // 4096


def _third_step_faults(keep: bool) -> int:
    script = STEPS.format(root=str(ROOT), keep=keep)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout)


@pytest.mark.skipif(not _is_glibc(), reason="the setting is glibc's")
def test_a_step_reuses_the_pages_the_last_step_freed():
    assert _third_step_faults(keep=False) > PAGES_PER_STEP / 2  # glibc's own rules: fresh pages every step
    assert _third_step_faults(keep=True) < PAGES_PER_STEP / 20


def test_training_asks_for_it():
    keep_freed_memory.cache_clear()
    task = tiny_task(train_size=16, val_size=8)
    for _ in train_task(task, model_config_for(task), TrainConfig(epochs=1, batch_size=8)):
        pass
    assert keep_freed_memory.cache_info().currsize == 1  # fit called it (a second call changes nothing)
