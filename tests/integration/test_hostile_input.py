"""Hostile input, end to end (smtp.c's framing and command table through
the real proxy): a line that never ends, an HTTP request on an SMTP port,
a bare LF ending a command, and commands before STARTTLS.  Each gets its
reply, the right close (or none), a reason in the session-end line, and
nothing reaches the backend that the client did not say in CRLF lines."""

import base64
import socket
import ssl
import time

import pytest

from conftest import LOOPBACK, SmtpLines


@pytest.fixture
def relay(proxy, recording_backend):
    return proxy([recording_backend.port])


def read_until_closed(sock, limit=1 << 20):
    """Everything the proxy sends until it closes (bounded by the
    socket's timeout and by limit bytes)."""
    got = b""
    while len(got) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break  # a close while the client still sends: an RST
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_endless_line_gets_500_and_close(relay, tls):
    """8 MiB without a LF: 500 5.5.6 after at most 64 KiB past the limit,
    then the connection closes, long before the command timeout."""
    s = SmtpLines(relay, tls=tls)
    assert s.cmd(b"EHLO client.example.test").startswith(b"250")
    sent = 0
    chunk = b"A" * 65536
    try:
        while sent < 8 << 20:
            s.send(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass
    tail = s.buf + read_until_closed(s.sock)
    assert b"500 5.5.6 Line too long\r\n" in tail, tail[-200:]
    relay.wait_for_log(r"msg=session-end .*reason=line-too-long")
    s.close()


def test_endless_line_inside_auth_gets_500_and_close(relay):
    s = SmtpLines(relay, tls=True)
    assert s.cmd(b"EHLO client.example.test").startswith(b"250")
    assert s.cmd(b"AUTH PLAIN").startswith(b"334")
    try:
        for _ in range(64):
            s.send(b"QUFB" * 16384)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass
    tail = s.buf + read_until_closed(s.sock)
    assert b"500 5.5.6 Line too long\r\n" in tail, tail[-200:]
    relay.wait_for_log(r"msg=session-end .*reason=line-too-long")
    s.close()


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"CONNECT mx.example.test:25 HTTP/1.1\r\n\r\n",
], ids=["GET", "POST", "CONNECT"])
def test_http_request_is_closed_at_once(relay, request_bytes):
    """One 5xx for the first line, then the close: the header lines that
    follow are never answered as SMTP commands."""
    with socket.create_connection((LOOPBACK, relay.starttls_port), timeout=10) as c:
        greeting = c.recv(4096)
        assert greeting.startswith(b"220 "), greeting
        c.sendall(request_bytes)
        answer = read_until_closed(c)
    assert answer == b"500 5.5.1 This is an SMTP service, not HTTP\r\n", answer
    relay.wait_for_log(r"msg=session-end .*reason=http-request")


def test_bare_lf_in_a_command_is_refused_and_forwards_nothing(relay, recording_backend):
    """MAIL ... LF RCPT ... CRLF: the MAIL line is refused (500 5.5.2),
    the RCPT is answered for what it is alone (no transaction), and the
    backend sees neither."""
    s = SmtpLines(relay, tls=True).login()
    s.send(b"MAIL FROM:<a@example.test>\nRCPT TO:<b@example.test>\r\n")
    first = s.reply()
    assert first.startswith(b"500 5.5.2 "), first
    second = s.reply()
    assert second.startswith(b"503 "), second
    assert s.cmd(b"QUIT").startswith(b"221")
    s.close()
    relay.wait_for_log(r"msg=session-end ")
    assert recording_backend.messages == []
    assert recording_backend.connections == []


@pytest.mark.parametrize("command", [
    b"VRFY root", b"EXPN staff", b"HELP", b"MAIL FROM:<a@example.test>",
    b"RCPT TO:<a@example.test>", b"DATA", b"ETRN example.test",
])
def test_commands_before_starttls_get_530(relay, command):
    s = SmtpLines(relay, tls=False)
    assert s.cmd(b"EHLO client.example.test").startswith(b"250")
    reply = s.cmd(command)
    assert reply == b"530 5.7.0 Must issue a STARTTLS command first", reply
    for allowed, code in ((b"NOOP", b"250"), (b"RSET", b"250"),
                          (b"HELO client.example.test", b"250")):
        assert s.cmd(allowed).startswith(code), allowed
    assert s.cmd(b"QUIT").startswith(b"221")
    s.close()


def test_auth_failures_are_capped_per_session(relay):
    """auth.max_failures (default 3): two wrong passwords get 535, the
    third 421 4.7.0 and the close; the session-end line says why."""
    s = SmtpLines(relay, tls=True)
    assert s.cmd(b"EHLO client.example.test").startswith(b"250")
    wrong = b"AUTH PLAIN AGRlbW8Ad3Jvbmc="  # demo / wrong
    for _ in range(2):
        assert s.cmd(wrong).startswith(b"535 5.7.8 "), "a failed login"
    last = s.cmd(wrong)
    assert last.startswith(b"421 4.7.0 ") and b"Too many failed logins" in last, last
    assert read_until_closed(s.sock) == b""
    s.close()
    relay.wait_for_log(r"msg=session-end .*reason=auth-failures")


def test_oversize_password_is_a_wrong_password(proxy, recording_backend):
    """Issue 18 item 7: a 9,000-octet password (PLAIN or LOGIN) is not
    '501 Malformed', which would tell a prober where the limit lies, but a
    failed login: the same 535 after the same auth.failure_delay, logged
    as result=failed for its user, and counted toward auth.max_failures
    (the third is the 421 and the close).  Bad base64 is still 501."""
    relay = proxy([recording_backend.port], **{"auth.failure_delay": "1s"})
    s = SmtpLines(relay, tls=True)
    assert s.cmd(b"EHLO client.example.test").startswith(b"250")
    huge = base64.b64encode(b"\0demo\0" + b"p" * 9000)
    assert s.cmd(b"AUTH PLAIN *bad*").startswith(b"501 5.5.2 ")
    started = time.monotonic()
    reply = s.cmd(b"AUTH PLAIN " + huge)
    assert reply == b"535 5.7.8 Authentication credentials invalid", reply
    assert time.monotonic() - started >= 0.9, "no failure delay"
    relay.wait_for_log(r"msg=auth .*user=demo .*delay_ms=1000 result=failed")
    assert s.cmd(b"AUTH LOGIN " + base64.b64encode(b"demo")).startswith(b"334")
    reply = s.cmd(base64.b64encode(b"q" * 9000))
    assert reply == b"535 5.7.8 Authentication credentials invalid", reply
    last = s.cmd(b"AUTH PLAIN " + huge)
    assert last.startswith(b"421 4.7.0 ") and b"Too many failed logins" in last, last
    assert read_until_closed(s.sock) == b""
    s.close()
    relay.wait_for_log(r"msg=session-end .*auth_failures=3 .*reason=auth-failures")
    assert recording_backend.connections == []
