"""auth.backend dovecot against a real Dovecot (dovecot_server.py).

Dovecot's auth process checks the logins over its auth-client socket:
PLAIN and LOGIN (sent to Dovecot as PLAIN) get 235 and the message reaches
the backend with XCLIENT LOGIN set to the name Dovecot answered (user=,
the canonical login); a wrong password and an unknown user get the same
535 5.7.8; Dovecot stopped, or too slow, gives 454 4.7.0 within
auth.dovecot.timeout, and a restarted Dovecot is found again without
restarting the proxy; EHLO offers only what Dovecot offers.
"""

import os
import re
import signal
import smtplib
import ssl
import time

import pytest

from conftest import LOOPBACK, config_check, free_port
from dovecot_server import DovecotAuth

USERS = {
    # alice logs in as "alice"; Dovecot names her alice@example.test.
    "alice": ("Wonder-Land-42", "user=alice@example.test"),
    "bob": ("Builder-Bob-7", ""),
    # Another name for alice: Dovecot answers with the same canonical one.
    "alice.alias": ("Alias-Pass-5", "user=alice@example.test"),
}
MESSAGE = b"Subject: dovecot\r\n\r\nchecked by dovecot\r\n"


@pytest.fixture
def dovecot():
    started = []

    def start(mechanisms="plain login", tcp_port=None):
        d = DovecotAuth(USERS, mechanisms, tcp_port)
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.cleanup()


def dovecot_proxy(proxy, backend, d, **overrides):
    opts = {
        "auth.backend": "dovecot",
        "auth.passwd_file": None,
        "auth.dovecot": {"socket": f"unix:{d.socket}", "timeout": "2s"},
    }
    opts.update(overrides)
    return proxy([backend.port], **opts)


def client(p, source=None):
    """source: another 127/8 address (127.0.0.1 is outside the limits in
    the tests' config)."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=20,
                         source_address=(source, 0) if source else None)
    s.ehlo()
    return s


def auth(s, user, password, mech="PLAIN"):
    """One AUTH attempt (login() would retry with another mechanism):
    (code, text)."""
    s.user, s.password = user, password
    try:
        code, text = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login,
                            initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, exc.smtp_error
    return code, text


def wait_ready(p, since=0):
    p.wait_for_log(r"msg=auth-dovecot-up .*mechanisms=", since=since)


def test_plain_login_canonical_user_reaches_backend(proxy, recording_backend, dovecot):
    d = dovecot()
    recording_backend.xclient_attributes = ("NAME", "ADDR", "PORT", "HELO", "LOGIN")
    p = dovecot_proxy(proxy, recording_backend, d)
    wait_ready(p)
    with client(p) as s:
        assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
        code, text = auth(s, "alice", USERS["alice"][0])
        assert code == 235, text
        s.sendmail("alice@example.test", ["rcpt@example.test"], MESSAGE)
    (m,) = recording_backend.wait_for_messages(1)
    assert m["xclient"]["LOGIN"] == "alice@example.test"
    line = p.wait_for_log(r"msg=auth .*backend=dovecot login=alice@example\.test .*"
                          r"user=alice mechanism=PLAIN .*result=ok")
    assert line


def test_limits_count_the_canonical_login(proxy, recording_backend, dovecot):
    """alice and alice.alias are one user to Dovecot: one message allowance."""
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d,
                      **{"limits.user": {"messages": "1/1h"}})
    wait_ready(p)
    with client(p, "127.0.0.2") as s:
        assert auth(s, "alice", USERS["alice"][0])[0] == 235
        s.sendmail("alice@example.test", ["rcpt@example.test"], MESSAGE)
    with client(p, "127.0.0.2") as s:
        assert auth(s, "alice.alias", USERS["alice.alias"][0])[0] == 235
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            s.sendmail("alice@example.test", ["rcpt@example.test"], MESSAGE)
    assert exc.value.smtp_code == 451
    assert exc.value.smtp_error.startswith(b"4.7.1 Message rate limit reached")
    p.wait_for_log(r"msg=limit .*user=alice@example\.test limit=messages")
    # bob has his own.
    with client(p, "127.0.0.2") as s:
        assert auth(s, "bob", USERS["bob"][0])[0] == 235
        s.sendmail("bob@example.test", ["rcpt@example.test"], MESSAGE)
    assert len(recording_backend.wait_for_messages(2)) == 2


def test_login_mechanism_goes_as_plain(proxy, recording_backend, dovecot):
    d = dovecot()
    recording_backend.xclient_attributes = ("NAME", "ADDR", "PORT", "HELO", "LOGIN")
    p = dovecot_proxy(proxy, recording_backend, d)
    wait_ready(p)
    with client(p) as s:
        code, text = auth(s, "bob", USERS["bob"][0], mech="LOGIN")
        assert code == 235, text
        s.sendmail("bob@example.test", ["rcpt@example.test"], MESSAGE)
    (m,) = recording_backend.wait_for_messages(1)
    assert m["xclient"]["LOGIN"] == "bob"
    p.wait_for_log(r"msg=auth .*backend=dovecot login=bob .*user=bob mechanism=LOGIN .*"
                   r"result=ok")


def test_wrong_password_and_unknown_user_alike(proxy, recording_backend, dovecot):
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d)
    wait_ready(p)
    replies = []
    for user, password in (("alice", "not-her-password"), ("nobody", "whatever-1")):
        with client(p) as s:
            replies.append(auth(s, user, password))
    assert replies[0][0] == replies[1][0] == 535
    assert replies[0][1] == replies[1][1]
    assert replies[0][1].startswith(b"5.7.8")
    p.wait_for_log(r"msg=auth .*backend=dovecot .*user=alice .*result=failed")
    p.wait_for_log(r"msg=auth .*backend=dovecot .*user=nobody .*result=failed")
    # Dovecot's reason is logged, never sent to the client.
    assert b"reason" not in replies[0][1].lower()


def test_oversize_password_is_refused_without_asking_dovecot(
        proxy, recording_backend, dovecot):
    """A password longer than msaproxy reads (256 octets or more) is a
    wrong password with every back end; Dovecot never sees even part of
    it (a cut password might be someone's)."""
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d)
    wait_ready(p)
    with client(p) as s:
        code, text = auth(s, "alice", "a" * 300)
    assert code == 535 and text.startswith(b"5.7.8"), (code, text)
    p.wait_for_log(r"msg=auth .*backend=dovecot .*reason=password-too-long "
                   r".*result=failed")


def test_dovecot_down_then_back(proxy, recording_backend, dovecot):
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d)
    wait_ready(p)
    with client(p) as s:
        assert auth(s, "bob", USERS["bob"][0])[0] == 235

    since = p.mark()
    d.stop()
    p.wait_for_log(r"msg=auth-dovecot-down", since=since)
    with client(p) as s:
        t0 = time.monotonic()
        code, text = auth(s, "bob", USERS["bob"][0])
        took = time.monotonic() - t0
    assert code == 454 and text.startswith(b"4.7.0"), (code, text)
    assert took < 2.5  # auth.dovecot.timeout is 2s
    p.wait_for_log(r"msg=auth .*backend=dovecot .*user=bob .*result=tempfail",
                   since=since)
    # A temporary failure is not the client's: no failure delay, no count.
    assert "result=failed" not in p.log()[since:]

    since = p.mark()
    d.start()
    wait_ready(p, since=since)
    with client(p) as s:
        code, text = auth(s, "bob", USERS["bob"][0])
    assert code == 235, text


def test_slow_dovecot_times_out(proxy, recording_backend, dovecot):
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d,
                      **{"auth.dovecot": {"socket": f"unix:{d.socket}",
                                          "timeout": "1s"}})
    wait_ready(p)
    pid = d.auth_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        with client(p) as s:
            t0 = time.monotonic()
            code, text = auth(s, "bob", USERS["bob"][0])
            took = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert code == 454 and text.startswith(b"4.7.0"), (code, text)
    assert 0.9 < took < 2.0
    p.wait_for_log(r"msg=auth .*reason=\"?dovecot timeout.*result=tempfail")
    # Dovecot's late answer is dropped; the next login works.
    with client(p) as s:
        assert auth(s, "bob", USERS["bob"][0])[0] == 235


def test_offer_is_what_dovecot_offers(proxy, recording_backend, dovecot):
    d = dovecot(mechanisms="plain")
    p = dovecot_proxy(proxy, recording_backend, d)
    wait_ready(p)
    assert re.search(r"msg=auth-dovecot-up socket=\S+ mechanisms=PLAIN$", p.log(), re.M)
    with client(p) as s:
        assert s.esmtp_features["auth"].split() == ["PLAIN"]
        code, _ = s.docmd("AUTH", "LOGIN")
        assert code == 504
        assert auth(s, "bob", USERS["bob"][0])[0] == 235


def test_config_needs_the_socket(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "listeners:\n  - address: 127.0.0.1:2525\n    mode: starttls\n"
        "tls:\n  certificates:\n    - {cert: /nonexistent, key: /nonexistent}\n"
        "auth:\n  backend: dovecot\n"
        "backends:\n  servers:\n    - {address: 127.0.0.1:2526}\n")
    r = config_check(cfg)
    assert r.returncode != 0
    assert f"{cfg}:7: auth.dovecot.socket: required with auth.backend dovecot" in (
        r.stdout + r.stderr)


def test_tcp_socket(proxy, recording_backend, dovecot):
    """auth.dovecot.socket as IP:port: Dovecot's inet_listener."""
    port = free_port()
    d = dovecot(tcp_port=port)
    p = dovecot_proxy(proxy, recording_backend, d,
                      **{"auth.dovecot": {"socket": f"{LOOPBACK}:{port}",
                                          "connections": 1}})
    p.wait_for_log(rf"msg=auth-dovecot-up socket={LOOPBACK}:{port} ")
    with client(p) as s:
        assert auth(s, "alice", USERS["alice"][0])[0] == 235
    with client(p) as s:
        assert auth(s, "alice", "not-it")[0] == 535
    p.wait_for_log(r"msg=auth .*login=alice@example\.test .*user=alice .*result=ok")


def test_cache_ttl_answers_while_dovecot_is_away(proxy, recording_backend, dovecot):
    """auth.dovecot.cache_ttl: a verified login is answered from the cache
    for the TTL, even while Dovecot is down (the trade docs/AUTH.md names);
    a new login, or a wrong password, is not."""
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d,
                      **{"auth.dovecot": {"socket": f"unix:{d.socket}", "timeout": "2s",
                                          "cache_ttl": "1m"}})
    wait_ready(p)
    with client(p) as s:
        assert auth(s, "bob", USERS["bob"][0])[0] == 235
    since = p.mark()
    d.stop()
    p.wait_for_log(r"msg=auth-dovecot-down", since=since)
    with client(p) as s:
        assert auth(s, "bob", USERS["bob"][0])[0] == 235
    p.wait_for_log(r"msg=auth .*backend=dovecot .*user=bob .*result=ok cache=hit")
    with client(p) as s:
        assert auth(s, "bob", "not-bobs")[0] == 454  # asked: Dovecot is down


def test_failures_count_under_dovecots_name(proxy, recording_backend, dovecot):
    """Dovecot names a failed login too (FAIL user=, after its
    auth_username_format %Lu): "ALICE" and "Alice" are one login to
    limits.login, so the second failure is already held back."""
    d = dovecot()
    p = dovecot_proxy(proxy, recording_backend, d,
                      **{"limits.login": {"failures": "1/1h", "max_delay": "1s"}})
    wait_ready(p)
    for i, name in enumerate(("ALICE", "Alice")):
        with client(p, f"127.0.6.{i + 1}") as s:
            assert auth(s, name, "wrong")[0] == 535
    p.wait_for_log(r"msg=auth .*user=ALICE .*delay_ms=0 result=failed")
    p.wait_for_log(r"msg=auth .*user=Alice .*delay_ms=1000 result=failed")
    # bob's allowance is his own.
    with client(p, "127.0.6.3") as s:
        assert auth(s, "bob", "wrong")[0] == 535
    p.wait_for_log(r"msg=auth .*user=bob .*delay_ms=0 result=failed")
