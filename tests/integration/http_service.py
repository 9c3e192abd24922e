"""A test's own HTTP service: python's http.server in a thread on a free
loopback port, for the auth_http back end and the token-introspection
endpoint.

HTTPService(handler): handler is a BaseHTTPRequestHandler subclass; .port
is where it listens once made; start() serves (and returns self), stop()
shuts it down and joins the thread (bounded).  Subclasses build their
handler class over their own state and call super().__init__(Handler).
"""

import http.server
import threading

from conftest import LOOPBACK


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0, one request per connection, no access log on stderr."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass


class HTTPService:
    def __init__(self, handler):
        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
