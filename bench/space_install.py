"""What a Hugging Face Space (Linux x86_64, Python 3.11) would install from requirements.txt.

pip resolves requirements.txt against the public indexes only (this machine's pip configuration
is set aside) for that platform, without installing anything (`--dry-run --report`); then each
file's size is asked of its server. The report lists every package, the total, and whether
anything of the CUDA stack (nvidia-*, triton) would come along: torch should be 2.13.0+cpu.

`python -m bench.space_install [--requirements requirements.txt]` (`make space-report`). It
needs the internet; without it, it says so and exits 2. Exit 1 if a CUDA package would install.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

CUDA_PREFIXES = ("nvidia-", "triton")
# a Space's Linux x86_64: pip takes a given platform tag literally, so name the older manylinux ones too
PLATFORMS = [flag for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                              "manylinux1_x86_64", "linux_x86_64") for flag in ("--platform", tag)]


def resolve(requirements: Path) -> list[dict]:
    """pip's dry-run report of what it would install for a Space, as its "install" entries."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT"):
            env.pop(name, None)
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--retries", "1", "--report", str(report), *PLATFORMS, "--python-version", "3.11",
                   "--only-binary=:all:", "--target", str(Path(folder) / "target"), "-r", str(requirements)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pip failed")
        return json.loads(report.read_text())["install"]


def size_of(url: str) -> int | None:
    """The file's size from its server's answer to HEAD (None if it gives none)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as answer:
            length = answer.headers.get("Content-Length")
            return int(length) if length else None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=Path("requirements.txt"))
    args = parser.parse_args(argv)
    try:
        packages = resolve(args.requirements)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"could not resolve against the public indexes (is the internet reachable?): {error}")
        return 2
    total, cuda = 0, []
    for package in sorted(packages, key=lambda p: p["metadata"]["name"].lower()):
        name, version = package["metadata"]["name"], package["metadata"]["version"]
        size = size_of(package["download_info"]["url"])
        total += size or 0
        cuda += [name] if name.lower().startswith(CUDA_PREFIXES) else []
        print(f"{name:<28} {version:<16} {'?' if size is None else f'{size / 2**20:8.1f} MB'}")
    print(f"{len(packages)} packages, {total / 2**20:,.0f} MB to download")
    print(f"CUDA stack: {', '.join(cuda)}" if cuda else "CUDA stack: none (torch is the CPU build)")
    return 1 if cuda else 0


if __name__ == "__main__":
    sys.exit(main())
