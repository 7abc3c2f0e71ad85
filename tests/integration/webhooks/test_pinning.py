"""A pinned request reaches the address that was checked, whatever the name resolves to by then, and says
the name in its Host header (the receiver routes and the certificate is checked by it)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from genqueue.webhooks.urls import pinned


def test_the_request_goes_to_the_checked_address_with_the_name_as_host():
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers["host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        # a name that resolves nowhere: only the pinned address can be reached
        target, headers, extensions = pinned(f"http://hooks.invalid:{port}/in", "127.0.0.1")
        with httpx.Client(trust_env=False) as client:  # as the delivery task calls it
            response = client.post(target, content=b"{}", headers=headers, extensions=extensions)
        assert response.status_code == 204
        assert seen == [f"hooks.invalid:{port}"]
    finally:
        server.shutdown()
        server.server_close()
