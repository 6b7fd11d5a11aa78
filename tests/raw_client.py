"""A visitor that speaks the page's HTTP API directly, as any script on the internet can.

gradio_client refuses to send NaN, infinities or lone surrogates (it encodes strict JSON);
a hostile script does not. This client sends whatever JSON Python's encoder writes
(`allow_nan`, `ensure_ascii`), through the same queue the page uses, and returns each call's
final message as the server sent it, so tests can read exactly what a visitor would see.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

GENERIC_ERROR_WORDS = ("upstream Gradio app has raised an exception", "Traceback (most recent call last)",
                       "Something went wrong on the server")


class RawVisitor:
    """One browser session (one session hash, so one `gr.State`) over plain HTTP."""

    def __init__(self, url: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.session_hash = uuid.uuid4().hex[:12]
        self.http = httpx.Client(timeout=timeout)
        config = self.http.get(f"{self.url}/config").json()
        self.api = self.url + config.get("api_prefix", "/gradio_api")
        self.endpoints = {d["api_name"]: d for d in config["dependencies"]
                          if d.get("api_name") and d.get("api_visibility") != "private"}
        self.state_ids = {c["id"] for c in config["components"] if c.get("type") == "state"}

    def close(self) -> None:
        self.http.close()

    def call(self, api_name: str, *data: Any) -> dict[str, Any]:
        """Run an endpoint to its end: {"success": bool, "data": [...] | None, "error": str | None}.

        An answer that never reached a handler (an HTTP error from the queue) comes back the same
        way, with `status` set, so callers check one shape.
        """
        endpoint = self.endpoints[api_name]
        values = iter(data)  # the page sends null for each gr.State input; the server fills it in
        full = [None if i in self.state_ids else next(values, None) for i in endpoint["inputs"]]
        body = json.dumps({"data": full, "fn_index": endpoint["id"], "session_hash": self.session_hash,
                           "event_data": None, "trigger_id": None})  # allow_nan and ensure_ascii are on
        headers = {"content-type": "application/json"}
        if endpoint.get("queue") is False:
            response = self.http.post(f"{self.api}/run/predict", content=body, headers=headers)
            return self._direct_answer(response)
        joined = self.http.post(f"{self.api}/queue/join", content=body, headers=headers)
        if joined.status_code != 200:
            return self._direct_answer(joined)
        return self._await(joined.json()["event_id"])

    def upload(self, path: str | Path) -> dict[str, Any]:
        """Put a file in the server's upload area; the FileData value an endpoint takes."""
        path = Path(path)
        with path.open("rb") as file:
            response = self.http.post(f"{self.api}/upload", files={"files": (path.name, file)})
        response.raise_for_status()
        (server_path,) = response.json()
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def _await(self, event_id: str) -> dict[str, Any]:
        updates: list[Any] = []
        with self.http.stream("GET", f"{self.api}/queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event_id):
                    continue
                kind = message.get("msg")
                if kind == "process_generating":
                    updates.append(message["output"].get("data"))
                if kind == "process_completed":
                    output = message.get("output") or {}
                    return {"success": bool(message.get("success")), "data": output.get("data"),
                            "error": output.get("error"), "updates": updates}
                if kind == "unexpected_error":
                    return {"success": False, "data": None, "error": message.get("message"), "updates": updates}
        return {"success": False, "data": None, "error": "the event stream closed without an answer",
                "updates": updates}

    @staticmethod
    def _direct_answer(response: httpx.Response) -> dict[str, Any]:
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text}
        if response.status_code == 200:
            return {"success": True, "data": payload.get("data"), "error": None, "updates": []}
        detail = payload.get("detail", payload.get("error")) if isinstance(payload, dict) else payload
        return {"success": False, "data": None, "error": json.dumps(detail) if not isinstance(detail, str) else detail,
                "status": response.status_code, "updates": []}


def generic_error(answer: dict[str, Any]) -> str | None:
    """Why an answer is not a specific message a visitor can act on (None when it is fine)."""
    if answer["success"]:
        return None
    error = answer.get("error")
    if not error:
        return "an error with no message (Gradio's generic placeholder)"
    for words in GENERIC_ERROR_WORDS:
        if words in error:
            return f"a generic error: {error[:300]}"
    return None
