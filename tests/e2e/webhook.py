"""A real HTTP endpoint on loopback that receives Apprise `json://` notifications."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    """Collects the JSON bodies posted to it, with their paths."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict] = []

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def messages(self, title_contains: str) -> list[dict]:
        return [m for m in self.received if title_contains in m.get("title", "")]


@contextmanager
def webhook() -> Iterator[Webhook]:
    """Serve on a free port until the block exits."""
    collected: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            collected.append({**json.loads(body or b"{}"), "path": self.path})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook = Webhook(server.server_address[1])
    hook.received = collected
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def hanging_endpoint(path: str = "hang") -> Iterator[str]:
    """A json:// URL whose server accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(32)
        yield f"json://127.0.0.1:{listener.getsockname()[1]}/{path}"
