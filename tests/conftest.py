"""Shared pytest plumbing: point pytest-playwright at Debian's chromium.

Never run `playwright install`; the browser is /usr/bin/chromium (override with
CHROMIUM_PATH).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": CHROMIUM_ARGS,
        "headless": True,
    }


# ---------------------------------------------------------------------------------------------
# The app, served for real: the client tests and the browser tests share one server
# ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """`app.demo` served the way visitors get it (page.layout.serve, with its launch_options()); its URL."""
    import app

    url = app.serve(app.demo, server_name="127.0.0.1", server_port=_free_port(), quiet=True)
    try:
        yield url
    finally:
        app.demo.close()


@pytest.fixture(scope="session")
def client(app_url):
    """A factory of gradio_client Clients: each call is a new visitor with its own session.

    Session-scoped so module fixtures can hold a visitor too; every Client made is closed at the
    end.
    """
    from gradio_client import Client

    made = []

    def make() -> "Client":
        c = Client(app_url, analytics_enabled=False, verbose=False)
        made.append(c)
        return c

    yield make
    # Client.close() waits up to 1 s for its heartbeat thread: close them side by side.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(made))) as pool:
        list(pool.map(lambda c: c.close(), made))
