"""A token-introspection endpoint (RFC 7662 style) and OAuth SASL helpers,
for the OAUTHBEARER and XOAUTH2 tests.

TokenServer(tokens): an HTTPService (http_service.py) on a free loopback
port.  tokens: {token: username}.  POST with a form body token=... (what
Dovecot's oauth2 passdb sends with introspection_mode = post), or GET with
?token=..., is answered {"active": true, "username": ...} for a known
token and {"active": false} otherwise.  .url is the endpoint, .tokens_seen
what it was asked.

oauthbearer(user, token) and xoauth2(user, token): smtplib authobjects
(SMTP.auth(mech, obj)): the initial response, then, on the server's error
challenge, its JSON status kept in obj.status and the ^A RFC 7628 asks for.
"""

import json
import urllib.parse

from conftest import LOOPBACK
from http_service import HTTPService, QuietHandler


class TokenServer(HTTPService):
    def __init__(self, tokens):
        self.tokens = dict(tokens)
        self.tokens_seen = []
        server = self

        class Handler(QuietHandler):
            def answer(self, token):
                server.tokens_seen.append(token)
                user = server.tokens.get(token)
                body = json.dumps({"active": True, "username": user} if user
                                  else {"active": False}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                self.answer((form.get("token") or [""])[0])

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                self.answer((q.get("token") or [""])[0])

        super().__init__(Handler)
        self.url = f"http://{LOOPBACK}:{self.port}/introspect"


class _OAuth:
    def __init__(self, initial):
        self.initial = initial
        self.status = None  # the server's JSON status, on an error challenge

    def __call__(self, challenge=None):
        if challenge is None:
            return self.initial
        self.status = json.loads(challenge)
        return "\x01"


def oauthbearer(user, token):
    """RFC 7628: gs2 header with the authzid, host and port, the token."""
    return _OAuth(f"n,a={user},\x01host=mx.test\x01port=465\x01"
                  f"auth=Bearer {token}\x01\x01")


def xoauth2(user, token):
    return _OAuth(f"user={user}\x01auth=Bearer {token}\x01\x01")
