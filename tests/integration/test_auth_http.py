"""auth.backend http: an nginx-style auth_http service the test runs
(python's http.server in a thread, answering as nginx's
ngx_mail_auth_http_module documents).

Checked: the request carries nginx's headers (Auth-Method, Auth-User and
Auth-Pass escaped as nginx does, Auth-Protocol, Auth-Login-Attempt,
Client-IP, Auth-SSL...); Auth-Status OK lets the client in and Auth-User
renames the login (XCLIENT LOGIN); a refusal is 535 5.7.8, or the
service's Auth-Error-Code with its text, after Auth-Wait seconds; a
service that is down, answers 500, or is slower than auth.http.timeout
gives 454 4.7.0; a slow answer for one session does not hold another.
"""

import base64
import smtplib
import ssl
import threading
import time
import urllib.parse

import pytest

from conftest import LOOPBACK, config_check, free_port
from http_service import HTTPService, QuietHandler
from smtp_backend import RecordingBackend

MESSAGE = b"Subject: auth_http\r\n\r\nchecked over http\r\n"
PASSWORDS = {
    "alice": "Wonder-Land-42",
    "bob": "p a%ss\u00e9",  # a space, a '%' and UTF-8: nginx escapes the first two
    "slow": "Slow-Poke-1",
    "wait": "whatever",
    "carol": "Carol-Sings-9",
}


class AuthService(HTTPService):
    """The auth_http contract: 200 with Auth-Status, per user."""

    def __init__(self):
        self.requests = []
        self.slow_s = 0
        self.servers = {}  # user: (Auth-Server, Auth-Port) to answer with
        service = self

        class Handler(QuietHandler):
            def do_GET(self):
                h = {k: v for k, v in self.headers.items()}
                service.requests.append((self.path, h))
                # Header values arrive as latin-1 text: back to bytes, then
                # nginx's unescaping.
                raw_user = h.get("Auth-User", "").encode("latin-1")
                raw_pass = h.get("Auth-Pass", "").encode("latin-1")
                user = urllib.parse.unquote_to_bytes(raw_user).decode()
                password = urllib.parse.unquote_to_bytes(raw_pass).decode()
                if user == "error500":
                    self.send_response(500)
                    self.end_headers()
                    return
                if user == "slow":
                    time.sleep(service.slow_s)
                self.send_response(200)
                if user == "wait":
                    self.send_header("Auth-Status", "Try later, please")
                    self.send_header("Auth-Wait", "1")
                    self.send_header("Auth-Error-Code", "535 5.7.0")
                elif PASSWORDS.get(user) == password:
                    self.send_header("Auth-Status", "OK")
                    if user in service.servers:
                        server, port = service.servers[user]
                        self.send_header("Auth-Server", server)
                        self.send_header("Auth-Port", str(port))
                    if user == "alice":
                        self.send_header("Auth-User", "alice@example.test")
                else:
                    self.send_header("Auth-Status", "Invalid login or password")
                self.end_headers()

        super().__init__(Handler)


@pytest.fixture
def service():
    s = AuthService().start()
    yield s
    s.stop()


def http_proxy(proxy, backend, url, **overrides):
    opts = {
        "auth.backend": "http",
        "auth.passwd_file": None,
        "auth.http": {"url": url, "timeout": "2s"},
    }
    opts.update(overrides)
    return proxy([backend.port], **opts)


def client(p):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=20,
                         local_hostname="client.example.test")
    s.ehlo()
    return s


def auth(s, user, password, mech="PLAIN"):
    s.user, s.password = user, password
    try:
        return s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login,
                      initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, exc.smtp_error


def test_ok_with_nginx_headers_and_auth_user(proxy, recording_backend, service):
    recording_backend.xclient_attributes = ("NAME", "ADDR", "PORT", "HELO", "LOGIN")
    p = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{service.port}/mail/auth")
    with client(p) as s:
        code, text = auth(s, "alice", PASSWORDS["alice"])
        assert code == 235, text
        s.sendmail("alice@example.test", ["rcpt@example.test"], MESSAGE)
    (m,) = recording_backend.wait_for_messages(1)
    assert m["xclient"]["LOGIN"] == "alice@example.test"
    path, h = service.requests[0]
    assert path == "/mail/auth"
    assert h["Host"] == f"{LOOPBACK}:{service.port}"
    assert h["Auth-Method"] == "plain"
    assert h["Auth-User"] == "alice"
    assert h["Auth-Pass"] == PASSWORDS["alice"]
    assert h["Auth-Protocol"] == "smtp"
    assert h["Auth-Login-Attempt"] == "1"
    assert h["Client-IP"] == "127.0.0.1"
    assert h["Auth-SSL"] == "on"
    assert h["Auth-SSL-Protocol"].startswith("TLSv1.")
    assert h["Auth-SSL-Cipher"]
    assert h["Auth-SMTP-Helo"] == "client.example.test"
    p.wait_for_log(r"msg=auth .*backend=http login=alice@example\.test .*user=alice "
                   r"mechanism=PLAIN .*result=ok")


def test_auth_server_chooses_the_backend(proxy, recording_backend, service):
    """Auth-Server/Auth-Port pin the session to that one of backends.servers;
    one that is not in the list is refused (454), never connected to."""
    other = RecordingBackend()
    other.start()
    try:
        p = proxy([recording_backend.port, other.port], **{
            "auth.backend": "http", "auth.passwd_file": None,
            "auth.http": {"url": f"http://{LOOPBACK}:{service.port}/", "timeout": "2s"},
            "backends.balance": "round-robin"})
        service.servers["carol"] = (LOOPBACK, other.port)
        for _ in range(3):  # round robin alone would use the first one too
            with client(p) as s:
                assert auth(s, "carol", PASSWORDS["carol"])[0] == 235
                s.sendmail("carol@example.test", ["rcpt@example.test"], MESSAGE)
        assert len(other.wait_for_messages(3)) == 3
        assert recording_backend.messages == []

        service.servers["carol"] = (LOOPBACK, free_port())
        with client(p) as s:
            code, text = auth(s, "carol", PASSWORDS["carol"])
        assert code == 454 and text.startswith(b"4.7.0"), (code, text)
        p.wait_for_log(r"msg=auth-server-unknown .*detail=\"not in backends\.servers\"")
        p.wait_for_log(r'reason="Auth-Server not in backends\.servers" .*user=carol .*'
                       r"result=tempfail")
    finally:
        other.stop()


def test_escaping_and_login_mechanism(proxy, recording_backend, service):
    p = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{service.port}/")
    b64 = lambda t: base64.b64encode(t.encode()).decode()
    with client(p) as s:
        # smtplib's own AUTH is ASCII only: the LOGIN exchange by hand.
        assert s.docmd("AUTH", "LOGIN " + b64("bob"))[0] == 334
        code, text = s.docmd(b64(PASSWORDS["bob"]))
        assert code == 235, text
    _, h = service.requests[0]
    assert h["Auth-Method"] == "login"
    # nginx escapes bytes up to 0x20 and '%'; UTF-8 goes as it is.
    assert h["Auth-Pass"].encode("latin-1") == "p%20a%25ss\u00e9".encode()


def test_refused_and_unknown_alike(proxy, recording_backend, service):
    p = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{service.port}/")
    replies = []
    for user in ("alice", "nobody"):
        with client(p) as s:
            replies.append(auth(s, user, "wrong-password-1"))
    assert replies[0] == replies[1]
    assert replies[0][0] == 535 and replies[0][1].startswith(b"5.7.8")
    # The service's text is logged, not sent (no Auth-Error-Code).
    assert b"Invalid" not in replies[0][1]
    p.wait_for_log(r'msg=auth .*backend=http .*reason="Invalid login or password" '
                   r"user=nobody .*result=failed")


def test_auth_wait_and_error_code(proxy, recording_backend, service):
    p = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{service.port}/")
    with client(p) as s:
        t0 = time.monotonic()
        code, text = auth(s, "wait", PASSWORDS["wait"])
        took = time.monotonic() - t0
    assert (code, text) == (535, b"5.7.0 Try later, please")
    assert took >= 0.95


def test_down_500_and_slow_give_454(proxy, recording_backend, service):
    dead = free_port()
    p = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{dead}/")
    with client(p) as s:
        code, text = auth(s, "alice", PASSWORDS["alice"])
    assert code == 454 and text.startswith(b"4.7.0"), (code, text)
    p.wait_for_log(r'msg=auth .*backend=http .*reason="connect refused" .*result=tempfail')

    p2 = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{service.port}/")
    with client(p2) as s:
        code, text = auth(s, "error500", "x-password")
    assert code == 454 and text.startswith(b"4.7.0")
    p2.wait_for_log(r'reason="http status 500" .*result=tempfail')

    # A slow answer (3s, timeout 2s): 454 in time, and another session
    # logging in meanwhile is not held behind it.
    service.slow_s = 3
    result = {}

    def slow_login():
        with client(p2) as s:
            t0 = time.monotonic()
            result["reply"] = auth(s, "slow", PASSWORDS["slow"])
            result["took"] = time.monotonic() - t0

    t = threading.Thread(target=slow_login)
    t.start()
    time.sleep(0.3)
    with client(p2) as s:
        t0 = time.monotonic()
        code, text = auth(s, "alice", PASSWORDS["alice"])
        fast = time.monotonic() - t0
    t.join(10)
    assert code == 235, text
    assert fast < 1.0
    assert result["reply"][0] == 454 and result["reply"][1].startswith(b"4.7.0")
    assert 1.8 < result["took"] < 2.8


def test_config_url_checked(tmp_path):
    for url, why in (("https://127.0.0.1/auth", "https is not supported"),
                     ("http://auth.example.test/auth", "not a host name")):
        cfg = tmp_path / "m.yaml"
        cfg.write_text(
            "listeners:\n  - address: 127.0.0.1:2525\n    mode: starttls\n"
            "tls:\n  certificates:\n    - {cert: /nonexistent, key: /nonexistent}\n"
            f"auth:\n  backend: http\n  http:\n    url: {url}\n"
            "backends:\n  servers:\n    - {address: 127.0.0.1:2526}\n")
        r = config_check(cfg)
        assert r.returncode != 0
        assert f"{cfg}:10: auth.http.url:" in r.stdout + r.stderr
        assert why in r.stdout + r.stderr


def test_metrics_count_the_back_end(proxy, recording_backend, service):
    from test_metrics import scrape
    port = free_port()
    p = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{service.port}/",
                   **{"metrics.listen": f"{LOOPBACK}:{port}",
                      "auth.http": {"url": f"http://{LOOPBACK}:{service.port}/",
                                    "timeout": "1s"}})
    service.slow_s = 2
    for user, password in (("alice", PASSWORDS["alice"]), ("alice", "wrong-1"),
                           ("slow", PASSWORDS["slow"])):
        with client(p) as s:
            auth(s, user, password)
    m = scrape(port)
    res = "msaproxy_auth_backend_requests_total"
    assert m.get(res, backend="http", result="ok") == 1
    assert m.get(res, backend="http", result="refused") == 1
    assert m.get(res, backend="http", result="temp") == 1
    assert m.get("msaproxy_auth_backend_timeouts_total") == 1
    assert m.get("msaproxy_auth_backend_inflight") == 0
    assert m.get("msaproxy_auth_backend_seconds_total", backend="http") >= 1.0
    assert m.get("msaproxy_auth_cache_hits_total") == 0


def test_cache_ttl(proxy, recording_backend, service):
    """auth.http.cache_ttl: a plain yes is remembered for the TTL; a wrong
    password, and a login the service renames, are always asked."""
    p = http_proxy(proxy, recording_backend, f"http://{LOOPBACK}:{service.port}/",
                   **{"auth.http": {"url": f"http://{LOOPBACK}:{service.port}/",
                                    "timeout": "2s", "cache_ttl": "2s"}})

    def asked(user):
        return sum(1 for _, h in service.requests if h.get("Auth-User") == user)

    for _ in range(3):
        with client(p) as s:
            assert auth(s, "bob", PASSWORDS["bob"].replace("\u00e9", "e"))[0] == 535
    assert asked("bob") == 3  # failures are never cached
    for _ in range(3):
        with client(p) as s:
            assert auth(s, "carol", PASSWORDS["carol"])[0] == 235
    assert asked("carol") == 1
    p.wait_for_log(r"msg=auth .*backend=http .*user=carol .*result=ok cache=hit")
    with client(p) as s:  # another password: asked, refused
        assert auth(s, "carol", "Carol-Sings-0")[0] == 535
    assert asked("carol") == 2
    for _ in range(2):  # renamed by Auth-User: asked every time
        with client(p) as s:
            assert auth(s, "alice", PASSWORDS["alice"])[0] == 235
    assert asked("alice") == 2
    time.sleep(2.2)  # the TTL passed: asked again
    with client(p) as s:
        assert auth(s, "carol", PASSWORDS["carol"])[0] == 235
    assert asked("carol") == 3
