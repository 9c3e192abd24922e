"""OAUTHBEARER (RFC 7628) and XOAUTH2 through the back ends that check
tokens: a real Dovecot with an oauth2 passdb asking a token-introspection
endpoint the test runs (oauth_server.py), and an auth_http service the test
runs.  The client is python's smtplib with an authobject.

Checked, through each back end and for each mechanism: a good token lets
the client in and the message reaches the backend with XCLIENT LOGIN set
to the canonical login the back end answered; a bad token, and a token for
another user, get RFC 7628's exchange (334 with the JSON status, the
client's ^A, then 535 5.7.8), the same replies; a back end that is down
gives 454 4.7.0 at once.  The mechanisms are offered only after TLS, only
when the back end has them (Dovecot's own offer), and never with the
passwd file (refused at load with the line of the item).

swaks is not used here: it has no XOAUTH2 or OAUTHBEARER of its own.
"""

import re
import smtplib
import ssl
import urllib.parse

import pytest

from conftest import LOOPBACK, config_check
from dovecot_server import DovecotAuth
from http_service import HTTPService, QuietHandler
from oauth_server import TokenServer, oauthbearer, xoauth2

MESSAGE = b"Subject: oauth\r\n\r\nchecked by token\r\n"
MECHS = ["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"]
# The identity provider's tokens: {token: the user it was issued to}.
TOKENS = {
    "tok-alice-1.A_b~c+/=": "alice@example.test",
    "tok-bob-2": "bob@example.test",
}
ALICE = "tok-alice-1.A_b~c+/="
GENERIC = {"status": "invalid_token"}


@pytest.fixture
def tokens():
    t = TokenServer(TOKENS).start()
    yield t
    t.stop()


@pytest.fixture
def dovecot(tokens):
    started = []

    def start(mechanisms="plain login oauthbearer xoauth2"):
        d = DovecotAuth({"carol": ("Carol-Sings-9", "")}, mechanisms,
                        oauth2_url=tokens.url)
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.cleanup()


class AuthService(HTTPService):
    """auth_http with tokens: Auth-Method oauthbearer or xoauth2, the login
    the client named in Auth-User, the token in Auth-Pass.  A good token
    for that user is OK with Auth-User the canonical login; otherwise a
    refusal with Auth-OAuth-Status (for tokens that start with "scoped")
    or without it."""

    def __init__(self):
        self.requests = []
        service = self

        class Handler(QuietHandler):
            def do_GET(self):
                h = dict(self.headers.items())
                service.requests.append(h)
                user = urllib.parse.unquote(h.get("Auth-User", ""))
                token = urllib.parse.unquote(h.get("Auth-Pass", ""))
                self.send_response(200)
                owner = TOKENS.get(token)
                if (h.get("Auth-Method") in ("oauthbearer", "xoauth2")
                        and owner is not None and owner == user.lower()):
                    self.send_header("Auth-Status", "OK")
                    self.send_header("Auth-User", owner)
                else:
                    self.send_header("Auth-Status", "Invalid token")
                    if token.startswith("scoped"):
                        self.send_header(
                            "Auth-OAuth-Status",
                            '{"status":"insufficient_scope","scope":"smtp"}')
                self.end_headers()

        super().__init__(Handler)
        self.start()


@pytest.fixture
def service():
    s = AuthService()
    yield s
    s.stop()


def auth_proxy(proxy, backend, kind, settings, **overrides):
    """A proxy whose logins go to the auth back end kind (auth.<kind>:
    settings), with every mechanism offered."""
    opts = {
        "auth.backend": kind,
        "auth.passwd_file": None,
        "auth.mechanisms": MECHS,
        "auth.max_failures": 10,
        f"auth.{kind}": {**settings, "timeout": "3s"},
    }
    opts.update(overrides)
    return proxy([backend.port], **opts)


def dovecot_proxy(proxy, backend, d, **overrides):
    p = auth_proxy(proxy, backend, "dovecot", {"socket": f"unix:{d.socket}"},
                   **overrides)
    p.wait_for_log(r"msg=auth-dovecot-up .*mechanisms=")
    return p


def http_proxy(proxy, backend, port, **overrides):
    return auth_proxy(proxy, backend, "http",
                      {"url": f"http://{LOOPBACK}:{port}/auth"}, **overrides)


def client(p):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=20)
    s.ehlo()
    return s


def attempt(s, mech, user, token):
    """One AUTH: (code, text, the JSON status of the error challenge)."""
    obj = (oauthbearer if mech == "OAUTHBEARER" else xoauth2)(user, token)
    try:
        code, text = s.auth(mech, obj)
    except smtplib.SMTPAuthenticationError as exc:
        code, text = exc.smtp_code, exc.smtp_error
    return code, text, obj.status


def good_then_bad(p, backend, mech, user, canonical):
    """A good token delivers with XCLIENT LOGIN the canonical login; a bad
    token and another user's token get the exchange and 535 alike."""
    with client(p) as s:
        assert mech in s.esmtp_features["auth"].split()
        code, text, status = attempt(s, mech, user, ALICE)
        assert (code, status) == (235, None), text
        s.sendmail(canonical, ["rcpt@example.test"], MESSAGE)
    (m,) = backend.wait_for_messages(1)
    assert m["xclient"]["LOGIN"] == canonical
    answers = []
    with client(p) as s:
        for who, token in ((user, "not-a-token"), (user, "tok-bob-2"),
                           ("nobody@example.test", ALICE)):
            code, text, status = attempt(s, mech, who, token)
            answers.append((code, text))
            assert code == 535, text
            assert status is not None and "status" in status
        # Still usable after three refusals: the good token works.
        assert attempt(s, mech, user, ALICE)[0] == 235
    assert len(set(answers)) == 1
    assert answers[0] == (535, b"5.7.8 Authentication credentials invalid")
    return status


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
def test_dovecot_oauth2_passdb(proxy, recording_backend, dovecot, tokens, mech):
    recording_backend.xclient_attributes = ("NAME", "ADDR", "PORT", "HELO", "LOGIN")
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d)
    # Dovecot lowercases the login (auth_username_format %Lu): that is
    # the name XCLIENT carries.
    good_then_bad(p, recording_backend, mech, "Alice@Example.Test",
                  "alice@example.test")
    assert ALICE in tokens.tokens_seen and "not-a-token" in tokens.tokens_seen
    p.wait_for_log(rf"msg=auth .*backend=dovecot login=alice@example\.test .*"
                   rf"user=Alice@Example\.Test mechanism={mech} .*result=ok")
    p.wait_for_log(rf"msg=auth .*backend=dovecot .*mechanism={mech} .*result=failed")
    # Dovecot's own status, relayed: XOAUTH2's is Google's {"status":"401",...}.
    with client(p) as s:
        _, _, status = attempt(s, mech, "alice@example.test", "bad")
    assert status == ({"status": "401", "schemes": "bearer", "scope": "mail"}
                      if mech == "XOAUTH2" else GENERIC)
    # Never in a log line: the token.
    assert ALICE not in p.log()


def test_dovecot_offer_is_the_intersection(proxy, recording_backend, dovecot):
    """Configured OAUTHBEARER and XOAUTH2, Dovecot offering only XOAUTH2:
    only XOAUTH2 is offered, OAUTHBEARER is an unknown mechanism."""
    d = dovecot(mechanisms="plain xoauth2")
    p = dovecot_proxy(proxy, recording_backend, d)
    assert re.search(r"msg=auth-dovecot-up socket=\S+ mechanisms=PLAIN,XOAUTH2$",
                     p.log(), re.M)
    with client(p) as s:
        assert s.esmtp_features["auth"].split() == ["PLAIN", "XOAUTH2"]
        assert s.docmd("AUTH", "OAUTHBEARER")[0] == 504
        assert attempt(s, "XOAUTH2", "alice@example.test", ALICE)[0] == 235
    # PLAIN goes to the passwd-file passdb beside the oauth2 one.
    with client(p) as s:
        assert s.login("carol", "Carol-Sings-9")[0] == 235


def test_dovecot_down_gives_454(proxy, recording_backend, dovecot):
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d)
    d.stop()
    with client(p) as s:
        code, text, status = attempt(s, "XOAUTH2", "alice@example.test", ALICE)
    assert (code, status) == (454, None)
    assert text.startswith(b"4.7.0 ")


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
def test_http_token_in_auth_pass(proxy, recording_backend, service, mech):
    recording_backend.xclient_attributes = ("NAME", "ADDR", "PORT", "HELO", "LOGIN")
    p = http_proxy(proxy, recording_backend, service.port)
    status = good_then_bad(p, recording_backend, mech, "ALICE@example.test",
                           "alice@example.test")
    assert status == GENERIC  # the service gave none: the generic one
    first = service.requests[0]
    assert first["Auth-Method"] == mech.lower()
    assert first["Auth-User"] == "ALICE@example.test"
    assert first["Auth-Pass"] == ALICE
    assert first["Auth-SSL"] == "on"
    # The service's own status, relayed.
    with client(p) as s:
        _, _, status = attempt(s, mech, "alice@example.test", "scoped-token")
    assert status == {"status": "insufficient_scope", "scope": "smtp"}
    assert ALICE not in p.log()


def test_http_large_token(proxy, recording_backend, service):
    """Tokens of a few KB (JWTs) travel whole to the service."""
    big = "eyJ" + "a" * 6000 + ".sig"
    TOKENS[big] = "alice@example.test"
    try:
        p = http_proxy(proxy, recording_backend, service.port)
        with client(p) as s:
            code, text, _ = attempt(s, "XOAUTH2", "alice@example.test", big)
        assert code == 235, text
        assert service.requests[-1]["Auth-Pass"] == big
    finally:
        del TOKENS[big]


def test_not_offered_before_starttls(proxy, recording_backend, service):
    p = http_proxy(proxy, recording_backend, service.port)
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=20) as s:
        s.ehlo()
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", "XOAUTH2 dXNlcj1hAWF1dGg9QmVhcmVyIHQBAQ==")[0] == 538
        s.starttls(context=ssl.create_default_context(cafile=str(p.ca)))
        s.ehlo()
        assert s.esmtp_features["auth"].split() == MECHS
        assert attempt(s, "OAUTHBEARER", "alice@example.test", ALICE)[0] == 235


def test_not_offered_with_the_passwd_file(proxy, recording_backend, tmp_path):
    """The passwd file never offers them; configuring them is refused at
    the line of the item."""
    p = proxy([recording_backend.port])
    with client(p) as s:
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert s.docmd("AUTH", "XOAUTH2")[0] == 504
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "listeners:\n  - address: 127.0.0.1:2525\n    mode: starttls\n"
        "tls:\n  certificates:\n    - {cert: /nonexistent, key: /nonexistent}\n"
        "auth:\n  passwd_file: /nonexistent\n  mechanisms:\n    - PLAIN\n"
        "    - XOAUTH2\n"
        "backends:\n  servers:\n    - {address: 127.0.0.1:2526}\n")
    r = config_check(cfg)
    assert r.returncode != 0
    assert (f"{cfg}:11: auth.mechanisms[1]: XOAUTH2 needs a back end that checks "
            "tokens") in r.stdout + r.stderr
