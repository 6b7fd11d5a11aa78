"""The `transformer-playground` command that `pip install .` installs.

`transformer-playground serve [--host H] [--port P]` serves the page; every other command
(`train`, `sample`, `export`, `bench`) is `python -m core`'s, unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="transformer-playground serve", description="Serve the page.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="0.0.0.0 to be reached from other machines")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    from .layout import build_demo, serve  # gradio loads only to serve

    demo = build_demo()
    serve(demo, server_name=args.host, server_port=args.port)
    demo.block_thread()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    from core.cli import main as core_main

    if argv[:1] in ([], ["-h"], ["--help"]):
        print("transformer-playground serve [--host H] [--port P]   serve the page\n"
              "transformer-playground train | sample | export | bench   as python -m core (--help for each)")
        return 0
    return core_main(argv)


if __name__ == "__main__":
    sys.exit(main())
