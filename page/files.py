"""Files a visitor downloads (checkpoints, code, runs), kept in one folder per browser session and
removed when the session ends.

Gradio copies a returned file into its own cache, which it cleans; the file we wrote stays where
we wrote it, so without this every Save would leave one behind and a busy Space would fill its disk.
Each new file of a kind replaces the last one, and the folder goes when the visitor leaves.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import gradio as gr

FILES_ROOT = Path(tempfile.gettempdir()) / "transformer-playground-files"


def session_folder(request: gr.Request | None) -> Path:
    """This session's folder. The session hash comes from the browser, so it is hashed, never used as a path."""
    session = getattr(request, "session_hash", None) or "no-session"
    return FILES_ROOT / hashlib.sha256(session.encode()).hexdigest()[:32]


def fresh_folder(request: gr.Request | None, kind: str) -> Path:
    """An empty folder for this session's latest file(s) of `kind`; the previous ones are removed."""
    folder = session_folder(request) / kind
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def remove_session_files(request: gr.Request):
    """The page's unload event: the visitor left, so their files go."""
    shutil.rmtree(session_folder(request), ignore_errors=True)
