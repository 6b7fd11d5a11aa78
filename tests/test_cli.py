"""`python -m core`: train writes a checkpoint and history, sample answers, mistakes exit 2 in one line."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import one_torch_thread  # noqa: F401

import core.cli as cli
import core.training as training
from core.checkpoint import load_checkpoint
from core.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--task", "sort", "--seq-len", "4", "--num-digits", "3", "--train-size", "64", "--val-size", "16",
        "--d-model", "16", "--dim-feedforward", "32", "--nhead", "2", "--batch-size", "16"]
EPOCH_KEYS = {"epoch", "train_loss", "val_loss", "val_accuracy", "improved", "elapsed_s"}


def run_main(argv, capsys):
    """main() as the shell sees it: exit code, stdout, stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message):
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the sample tests."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    return out


def test_train_writes_checkpoint_and_history(tmp_path, capsys):
    code, out, err = run_main(["train", *TINY, "--epochs", "3", "--out", tmp_path], capsys)
    assert code == 0, err
    assert (tmp_path / "best.safetensors").is_file()
    history = json.loads((tmp_path / "history.json").read_text())
    assert isinstance(history, list) and [row["epoch"] for row in history] == [1, 2, 3]
    for row in history:
        assert EPOCH_KEYS <= row.keys()
        assert 0 <= row["val_accuracy"] <= 1 and row["elapsed_s"] > 0
    assert history[0]["improved"] is True
    # a line per epoch, then the summary naming the checkpoint
    assert len(re.findall(r"^epoch +\d/3 ", out, flags=re.M)) == 3
    assert f"best checkpoint: {tmp_path / 'best.safetensors'}" in out
    summary = load_checkpoint(tmp_path / "best.safetensors").summary
    best = min(history, key=lambda row: row["val_loss"])
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best_val_loss"] == best["val_loss"]
    assert sorted(os.listdir(tmp_path)) == ["best.safetensors", "config.json", "history.json", "last.safetensors"]


def test_checkpoint_is_written_only_on_improvement(tmp_path, capsys, monkeypatch):
    scripted = iter([1.0, 2.0, 0.5, 0.7, 0.6])
    real_evaluate = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *a: (real_evaluate(*a), next(scripted))[1])
    saves = []
    real_save = cli.save_checkpoint

    def counting_save(path, model, model_config, task, summary=None):
        saves.append(summary["best_epoch"])
        return real_save(path, model, model_config, task, summary)

    monkeypatch.setattr(cli, "save_checkpoint", counting_save)
    code, _, err = run_main(["train", *TINY, "--epochs", "5", "--out", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["improved"] for row in history] == [True, False, True, False, False]
    assert saves == [1, 3]  # once per improvement, never per epoch
    assert load_checkpoint(tmp_path / "best.safetensors").summary["best_epoch"] == 3


def test_sample_prints_an_answer(trained, capsys):
    code, out, err = run_main(["sample", "--checkpoint", trained / "best.safetensors", "--prompt", "2101",
                               "--greedy"], capsys)
    assert code == 0, err
    match = re.fullmatch(r"2101 -> ([012]{4})  \((correct|expected 0112)\)\n", out)
    assert match, out
    assert (match[1] == "0112") == (match[2] == "correct")


def test_sample_with_settings_is_reproducible(trained, capsys):
    argv = ["sample", "--checkpoint", trained / "best.safetensors", "--prompt", "0210",
            "--temperature", "1.5", "--top-k", "2", "--top-p", "0.9", "--seed", "3"]
    first = run_main(argv, capsys)
    assert first[0] == 0 and first == run_main(argv, capsys)


def test_train_and_sample_text(tmp_path, capsys):
    text_file = tmp_path / "poem.txt"
    text_file.write_text("roses are red, violets are blue. " * 20, encoding="utf-8")
    code, _, err = run_main(["train", "--task", "text", "--text-file", text_file, "--seq-len", "8",
                             "--train-size", "32", "--val-size", "8", "--d-model", "16",
                             "--dim-feedforward", "32", "--nhead", "2", "--epochs", "1", "--batch-size", "16",
                             "--out", tmp_path / "run", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "history.json").read_text())[0]["val_accuracy"] is None
    code, out, err = run_main(["sample", "--checkpoint", tmp_path / "run" / "best.safetensors",
                               "--prompt", "roses are", "--max-new-tokens", "12", "--seed", "0"], capsys)
    assert code == 0, err
    assert out.startswith("roses are") and len(out.rstrip("\n")) == len("roses are") + 12


@pytest.mark.parametrize("argv, message", [
    (["train", "--bogus"], r"unrecognized arguments: --bogus \(see --help\)"),
    (["train", "--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    (["train", "--task", "palindrome"], "argument --task: invalid choice: 'palindrome'"),
    (["train", "--d-model", "abc"], "error: --d-model item 1 must be a whole number, got 'abc'"),
    (["train", "--d-model", "48,0,48"], "error: layer 2: d_model must be at least 1, got 0"),
    (["train", "--d-model", "48,48", "--dim-feedforward", "96"],
     "d_model_configs has 2 layers but dim_feedforward_configs has 1"),
    (["train", "--d-model", "48", "--dim-feedforward", "96", "--nhead", "5"],
     "layer 1: d_model 48 is not divisible by nhead 5"),
    (["train", "--task", "text"], r"--task text needs --text-file PATH"),
    (["train", "--task", "text", "--text-file", "/nonexistent/poem.txt"], "cannot read --text-file"),
    (["train", "--lr", "5"], "learning rate must be above 0 and at most 1"),
    (["sample", "--prompt", "0120"], "the following arguments are required: --checkpoint"),
    (["sample", "--checkpoint", "/nonexistent/best.safetensors", "--prompt", "0120"],
     "no checkpoint file at best.safetensors"),
    ([], "the following arguments are required: command"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path):
    code, out, err = run_main(argv + (["--out", tmp_path / "out"] if argv[:1] == ["train"] else []), capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "out" / "best.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_cpu_machine(capsys, tmp_path):
    code, _, err = run_main(["train", *TINY, "--device", "cuda", "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "device 'cuda' asked for, but this machine has no CUDA GPU")
    assert not (tmp_path / "out").exists()  # nothing written before the mistake was found


def test_sample_with_a_bad_prompt(trained, capsys):
    code, _, err = run_main(["sample", "--checkpoint", trained / "best.safetensors", "--prompt", "21x1"],
                            capsys)
    assert_one_line_error(code, err, "'x' is not in the vocabulary")


def test_sample_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    fake = tmp_path / "best.safetensors"
    fake.write_text("hello")
    code, _, err = run_main(["sample", "--checkpoint", fake, "--prompt", "0120"], capsys)
    assert_one_line_error(code, err, "not a readable .safetensors checkpoint")


def test_python_dash_m_core_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "core", "train", *TINY, "--epochs", "1",
                             "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "best.safetensors").is_file()
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1
    assert "best checkpoint:" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "core", "train", "--nhead", "5", "--out", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert_one_line_error(bad.returncode, bad.stderr, "d_model 48 is not divisible by nhead 5")


# --- file-system problems and hard kills ---------------------------------------------------------

@pytest.mark.parametrize("where, message", [
    ("a file", "cannot write to --out .*: File exists; give a folder you can write to"),
    ("under a file", "cannot write to --out .*: Not a directory"),
    ("/proc", "cannot write to --out /proc: "),  # a folder not even root can write
])
def test_out_that_cannot_be_written_is_one_line_and_exit_2(where, message, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    out = {"a file": blocker, "under a file": blocker / "run", "/proc": Path("/proc")}[where]
    code, _, err = run_main(["train", *TINY, "--epochs", "1", "--out", out], capsys)
    assert_one_line_error(code, err, message)


def test_kill_9_during_training_never_leaves_a_damaged_checkpoint_or_history(tmp_path):
    """A real process killed at several moments; what it leaves always loads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "core", "train", *TINY, "--train-size", "256", "--epochs", "500",
            "--quiet", "--out", str(tmp_path)]
    for delay in (0.05, 0.4, 0.9):
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not (tmp_path / "history.json").exists() and time.monotonic() < deadline:
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.01)
            time.sleep(delay)  # somewhere in an epoch, or in a write
        finally:
            process.kill()
            process.wait(timeout=30)
        history = json.loads((tmp_path / "history.json").read_text())
        assert history and history[0]["epoch"] == 1
        checkpoint = load_checkpoint(tmp_path / "best.safetensors")
        assert checkpoint.summary["best_epoch"] >= 1


@pytest.mark.parametrize("kind, prompt, answer", [("parity", "0110", "EOEE"), ("brackets", "(())", "Y")])
def test_registry_tasks_train_and_sample_from_the_command_line(kind, prompt, answer, tmp_path, capsys):
    code, out, err = run_main(["train", "--task", kind, "--seq-len", "4", "--train-size", "64", "--val-size", "8",
                               "--d-model", "16", "--dim-feedforward", "32", "--nhead", "2", "--epochs", "2",
                               "--out", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    code, out, err = run_main(["sample", "--checkpoint", tmp_path / "best.safetensors", "--prompt", prompt,
                               "--greedy"], capsys)
    assert code == 0, err
    shown = out.strip()
    assert shown.startswith(f"{prompt} -> ") and ("(correct)" in shown or f"(expected {answer})" in shown), shown
    assert len(shown.split(" -> ")[1].split()[0]) == len(answer)  # the task's answer length by default


def test_no_causal_trains_without_the_mask_and_the_checkpoint_says_so(tmp_path, capsys):
    code, _, err = run_main(["train", *TINY, "--epochs", "1", "--no-causal", "--out", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    checkpoint = load_checkpoint(tmp_path / "best.safetensors")
    assert checkpoint.model_config.causal is False and checkpoint.model.causal is False


# --- resume, config files --------------------------------------------------------------------

STEADY = [*TINY, "--epochs", "4", "--stop-when-solved", "0", "--quiet"]


def comparable(history_rows):
    """An epoch's numbers, without the wall-clock ones (which differ between any two runs)."""
    return [{k: v for k, v in row.items() if k not in ("elapsed_s", "tokens_per_s")} for row in history_rows]


def test_a_resumed_run_has_the_history_of_an_uninterrupted_one(tmp_path, capsys, monkeypatch):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(["train", *STEADY, "--out", str(whole)]) == 0
    saves = []

    def interrupted_after_two_epochs(path, state):
        result = original(path, state)
        saves.append(state.epoch)
        if len(saves) == 2:
            raise KeyboardInterrupt  # Ctrl-C right after epoch 2 was written
        return result
    original = cli.save_run_state
    monkeypatch.setattr(cli, "save_run_state", interrupted_after_two_epochs)
    assert main(["train", *STEADY, "--out", str(broken)]) == 130
    monkeypatch.setattr(cli, "save_run_state", original)
    assert len(json.loads((broken / "history.json").read_text())) == 2
    code, out, err = run_main(["train", "--resume", broken], capsys)
    assert code == 0, err
    assert "resuming after epoch 2" in out
    resumed = json.loads((broken / "history.json").read_text())
    assert comparable(resumed) == comparable(json.loads((whole / "history.json").read_text()))
    a, b = load_checkpoint(whole / "best.safetensors"), load_checkpoint(broken / "best.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_resume_needs_an_earlier_run(tmp_path, capsys):
    code, _, err = run_main(["train", "--resume", tmp_path / "nothing"], capsys)
    assert_one_line_error(code, err, "cannot resume from")


def test_a_config_file_sets_defaults_that_flags_override_and_config_json_records_the_run(tmp_path, capsys):
    settings = tmp_path / "run.json"
    settings.write_text(json.dumps({"task": "reverse", "seq_len": 4, "epochs": 3, "train_size": 64, "val_size": 16,
                                    "d_model": "16", "dim_feedforward": "32", "nhead": "2"}))
    code, _, err = run_main(["train", "--config", settings, "--epochs", "1", "--out", tmp_path / "out", "--quiet"],
                            capsys)
    assert code == 0, err
    recorded = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (recorded["task"], recorded["epochs"], recorded["d_model"]) == ("reverse", 1, "16")
    assert len(json.loads((tmp_path / "out" / "history.json").read_text())) == 1
    settings.write_text(json.dumps({"tsak": "sort"}))
    code, _, err = run_main(["train", "--config", settings], capsys)
    assert_one_line_error(code, err, "has unknown settings tsak")
