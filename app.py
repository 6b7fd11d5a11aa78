"""Transformer Playground: the Space entry point. `python app.py` serves the page.

The page lives in `page/` (one module per tab); the engine in `core/`. Hosting limits come from
PLAYGROUND_* environment variables (see README, Hosting).
"""

from __future__ import annotations

import os

if __name__ != "__mp_main__":  # each training process imports this file again under that name: no page there
    from page.layout import build_demo, serve

    demo = build_demo()

if __name__ == "__main__":
    serve(demo, server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
          server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    demo.block_thread()
