"""What a Space and an installer read: the front matter, the pins, the license, the package."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def front_matter() -> str:
    return (ROOT / "README.md").read_text().split("---\n")[1]


def test_the_spaces_sdk_version_is_the_gradio_pin():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", (ROOT / "requirements.txt").read_text(), re.M))
    sdk = re.search(r"^sdk_version: *(\S+)", front_matter(), re.M).group(1)
    assert sdk == pins["gradio"]


def test_a_license_and_tags_in_the_front_matter():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    matter = front_matter()
    assert re.search(r"^license: mit$", matter, re.M)
    assert re.search(r"^tags:\n(  - \S+\n)+", matter, re.M)
