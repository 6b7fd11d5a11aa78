"""What a Space and an installer read: the front matter, the pins, the license, the package."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def front_matter() -> str:
    return (ROOT / "README.md").read_text().split("---\n")[1]


def test_the_spaces_sdk_version_is_the_gradio_pin():
    sdk = re.search(r"^sdk_version: *(\S+)", front_matter(), re.M).group(1)
    assert sdk == pins((ROOT / "requirements.txt").read_text())["gradio"]


def test_a_license_and_tags_in_the_front_matter():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    matter = front_matter()
    assert re.search(r"^license: mit$", matter, re.M)
    assert re.search(r"^tags:\n(  - \S+\n)+", matter, re.M)


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*\"?([A-Za-z0-9_.-]+)==([^\s;\",]+)", text, re.M))


def test_the_package_and_requirements_txt_pin_the_same_versions():
    pyproject = (ROOT / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S).group(1)
    assert pins(dependencies) == pins((ROOT / "requirements.txt").read_text())
    # the optional row kernel: the extra and the test tools pin the same numba
    extra = re.search(r"^fast-sampling = \[(.*?)\]", pyproject, re.M).group(1)
    assert pins(extra)["numba"] == pins((ROOT / "requirements-dev.txt").read_text())["numba"]


def test_requirements_point_pip_at_pytorchs_cpu_wheels():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert "torch==2.13.0" in lines  # 2.13.0+cpu satisfies it: a local version label is ignored by ==


def test_pip_install_gives_a_working_command(tmp_path):
    """`pip install .` (here into a prefix, the dependencies from the test environment) installs the
    packages, the assets and the `transformer-playground` command, which trains, samples and serves."""
    prefix, source = tmp_path / "prefix", tmp_path / "source"  # a copy: the build leaves build/ behind
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "runs",
                                                                "__pycache__", ".pytest_cache", ".hypothesis"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--prefix", str(prefix),
                             str(source)], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    site = next(prefix.glob("lib/python*/site-packages"))
    assert (site / "assets" / "presets.json").is_file() and (site / "page" / "layout.py").is_file()
    command = prefix / "bin" / "transformer-playground"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path[1:]])}
    work = tmp_path / "elsewhere"  # not the repository: only the installed files are importable
    work.mkdir()

    def run(*argv):
        done = subprocess.run([sys.executable, str(command), *argv], capture_output=True, text=True, cwd=work,
                              env=env, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("train", "--task", "sort", "--seq-len", "4", "--train-size", "64", "--val-size", "16", "--d-model", "16",
        "--dim-feedforward", "32", "--nhead", "2", "--epochs", "1", "--out", "run", "--quiet")
    assert "->" in run("sample", "--checkpoint", "run/best.safetensors", "--prompt", "2101", "--greedy")
    assert "--port" in run("serve", "--help")
    assert "serve" in run("--help")
    imported = subprocess.run([sys.executable, "-c", "import page.layout, core; print(page.layout.__file__)"],
                              capture_output=True, text=True, cwd=work, env=env, timeout=120, check=False)
    assert imported.stdout.startswith(str(site)), imported.stderr
