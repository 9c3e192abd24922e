"""Logs, end to end: the session-end summary, key=value and JSON lines,
debug tracing per session, syslog output, and that no password ever
reaches a log, at any level.

Real clients (smtplib over STARTTLS and implicit TLS, raw AUTH exchanges
through smtplib.docmd) talk to the built proxy in front of the aiosmtpd
recording backend; the syslog "daemon" is a unix datagram socket this test
binds in its own temp directory (log.syslog_socket), never /dev/log.
"""

import base64
import json
import re
import smtplib
import socket
import ssl

import pytest
from conftest import LOOPBACK, wait_until

SENDER = "demo@example.test"
RECIPIENTS = ["bob@example.test", "carol@example.test"]
MESSAGE = (b"From: <demo@example.test>\r\nTo: <bob@example.test>\r\n"
           b"Subject: logs\r\n\r\nHello.\r\n")

KV_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def kv_fields(line):
    return {k: v for k, v in KV_FIELD.findall(line)}


def tls_context(ca):
    return ssl.create_default_context(cafile=str(ca))


def client(p, mode="starttls"):
    if mode == "implicit":
        c = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, timeout=30,
                             context=tls_context(p.ca))
    else:
        c = smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=30)
        c.starttls(context=tls_context(p.ca))
    c.ehlo("client.example.test")
    return c


def send_one(p, user, password, mode="starttls"):
    with client(p, mode) as c:
        c.login(user, password)
        assert c.sendmail(SENDER, RECIPIENTS, MESSAGE) == {}


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def session_ids(log, **match):
    """Session ids of the session-end lines whose fields include match."""
    ids = []
    for line in log.splitlines():
        if "msg=session-end" in line:
            f = kv_fields(line)
            if all(f.get(k) == v for k, v in match.items()):
                ids.append(f["session"])
    return ids


# ---------------------------------------------------------------------------
# The summary line
# ---------------------------------------------------------------------------


def test_session_end_summary(proxy, recording_backend, users):
    p = proxy([recording_backend.port], **{"log.level": "info"})
    send_one(p, "demo", users.passwords["demo"])
    recording_backend.wait_for_messages(1)
    line = p.wait_for_log(r"^.*msg=session-end .*user=demo .*$").group(0)
    f = kv_fields(line)
    assert f["level"] == "info"
    assert f["client"] == LOOPBACK
    assert int(f["port"]) > 0
    assert f["listener"] == f"{LOOPBACK}:{p.starttls_port}"
    assert f["tls"] in ("TLSv1.2", "TLSv1.3")
    assert f["cipher"].startswith(("TLS_", "ECDHE-"))
    assert f["messages"] == "1"
    assert f["recipients"] == "2"
    assert f["bytes"] == str(len(MESSAGE))
    assert f["backend"] == f"{LOOPBACK}:{recording_backend.port}"
    assert f["errors"] == "0"
    assert f["auth_failures"] == "0"
    assert f["outcome"] == "ok"
    assert f["reason"] == "quit"
    assert int(f["duration_ms"]) >= 0


def test_session_end_outcomes(proxy, recording_backend):
    """A session that never finished TLS and one that never authenticated."""
    p = proxy([recording_backend.port], **{"log.level": "info"})
    # (The fixture's readiness probes make sessions too: match the port.)
    with socket.create_connection((LOOPBACK, p.implicit_port), timeout=10) as s:
        port = s.getsockname()[1]
        s.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        s.recv(100)
    line = p.wait_for_log(rf"^.*msg=session-end .* port={port} .*$").group(0)
    f = kv_fields(line)
    assert (f["tls"], f["cipher"], f["user"], f["backend"]) == ("no", "-", "-", "-")
    assert f["outcome"] == "tls-failed", line
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=30) as c:
        port = c.sock.getsockname()[1]
        c.ehlo("client.example.test")
    f = kv_fields(p.wait_for_log(rf"^.*msg=session-end .* port={port} .*$").group(0))
    assert (f["tls"], f["messages"], f["outcome"], f["reason"]) == ("no", "0", "ok", "quit")


# ---------------------------------------------------------------------------
# JSON lines
# ---------------------------------------------------------------------------


def test_json_lines(proxy, recording_backend, users):
    """Every line, debug included, is one JSON object; a client's odd login
    name survives as a string; integers are numbers, names are strings."""
    p = proxy([recording_backend.port], **{"log.format": "json", "log.level": "debug"})
    send_one(p, "demo", users.passwords["demo"])
    odd = 'ev"il\\\u00fc=x y'
    with client(p) as c:
        blob = b64(f"\0{odd}\0wrong-password-json")
        assert c.docmd("AUTH", f"PLAIN {blob}")[0] == 535
    wait_until(lambda: p.log().count('"msg":"session-end"') >= 2, 10, "two session-end lines")
    events = []
    for line in p.log().splitlines():
        obj = json.loads(line)  # every line, or the test fails here
        assert isinstance(obj, dict)
        assert set(obj) >= {"ts", "level", "msg"}
        events.append(obj)
    ends = [e for e in events if e["msg"] == "session-end"]
    good = next(e for e in ends if e["user"] == "demo")
    assert isinstance(good["session"], str)
    assert good["messages"] == 1 and good["recipients"] == 2
    assert good["bytes"] == len(MESSAGE)
    assert isinstance(good["duration_ms"], int)
    assert good["outcome"] == "ok"
    # The bytes of the name, one \u00XX per byte outside printable ASCII.
    want = odd.encode().decode("latin-1")
    failed = [e for e in events if e["msg"] == "auth" and e["result"] == "failed"]
    assert [e["user"] for e in failed] == [want]
    assert any(e["msg"] == "smtp-command" and e["verb"] == "MAIL" for e in events)
    assert all("session" in e for e in events if e["level"] == "debug")


# ---------------------------------------------------------------------------
# Debug tracing
# ---------------------------------------------------------------------------


def test_debug_traces_each_command_and_reply(proxy, recording_backend, users):
    p = proxy([recording_backend.port], **{"log.level": "debug"})
    send_one(p, "demo", users.passwords["demo"])
    recording_backend.wait_for_messages(1)
    log = p.wait_for_log(r"msg=session-end .*user=demo") and p.log()
    (sid,) = session_ids(log, user="demo")
    mine = [kv_fields(l) for l in log.splitlines() if f" session={sid} " in l + " "]
    verbs = [f["verb"] for f in mine if f["msg"] == "smtp-command"]
    codes = [f["code"] for f in mine if f["msg"] == "smtp-reply"]
    assert verbs == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "RCPT",
                     "DATA", "QUIT"]
    assert codes == ["220", "250", "220", "250", "235", "250", "250", "250",
                     "354", "250", "221"]
    assert any(f["msg"] == "backend-reply" for f in mine)
    # Every debug line names its session.
    for line in log.splitlines():
        if " level=debug " in line:
            assert re.search(r" session=[0-9a-f]+( |$)", line), line


# ---------------------------------------------------------------------------
# Passwords never reach a log
# ---------------------------------------------------------------------------


def auth_exchanges(p, users):
    """Every way a password crosses the wire, right and wrong; returns the
    strings that must never appear in the log."""
    secrets = []

    def note(*values):
        secrets.extend(v for v in values if v)

    demo_pw, alice_pw, bob_pw = (users.passwords[u] for u in ("demo", "alice", "bob"))
    wrong = ["Wr0ng-plain-initial-7f3a", "Wr0ng-plain-334-91c2", "Wr0ng-login-5d8e",
             "Wr0ng-before-tls-c4b1"]
    # Before TLS (refused with 538, but the client sent it anyway).
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=30) as c:
        c.ehlo("client.example.test")
        blob = b64(f"\0demo\0{wrong[3]}")
        note(wrong[3], blob)
        assert c.docmd("AUTH", f"PLAIN {blob}")[0] == 538
    # PLAIN with an initial response: wrong, then right.
    with client(p) as c:
        for pw, code in ((wrong[0], 535), (demo_pw, 235)):
            blob = b64(f"\0demo\0{pw}")
            note(pw, blob)
            assert c.docmd("AUTH", f"PLAIN {blob}")[0] == code
    # PLAIN after a 334: wrong, then right (alice).
    with client(p) as c:
        for pw, code in ((wrong[1], 535), (alice_pw, 235)):
            blob = b64(f"alice\0alice\0{pw}")
            note(pw, blob)
            assert c.docmd("AUTH", "PLAIN")[0] == 334
            assert c.docmd(blob)[0] == code
    # LOGIN, user and password in two steps: wrong, then right (bob), on
    # implicit TLS; then LOGIN with the user as initial response.
    with client(p, "implicit") as c:
        for pw, code in ((wrong[2], 535), (bob_pw, 235)):
            note(pw, b64(pw))
            assert c.docmd("AUTH", "LOGIN")[0] == 334
            assert c.docmd(b64("bob"))[0] == 334
            assert c.docmd(b64(pw))[0] == code
    with client(p) as c:
        assert c.docmd("AUTH", f"LOGIN {b64('demo')}")[0] == 334
        assert c.docmd(b64(demo_pw))[0] == 235
        assert c.sendmail(SENDER, RECIPIENTS, MESSAGE) == {}
    # smtplib's own login (it picks a mechanism) and a message.
    send_one(p, "alice", alice_pw)
    return secrets


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_passwords_never_logged(proxy, recording_backend, users, fmt):
    p = proxy([recording_backend.port], **{"log.level": "debug", "log.format": fmt})
    secrets = auth_exchanges(p, users)
    recording_backend.wait_for_messages(2)
    # The last session (alice's message) has ended: everything is logged.
    p.wait_for_log(r'session-end.*(user=alice .*messages=1 |"user":"alice".*"messages":1,)')
    log = p.log()
    assert log.count("auth-response") >= 4  # the exchanges were traced
    for secret in secrets:
        assert secret not in log, f"{secret!r} is in the log"
        # and no JSON-escaped form of it either
        assert json.dumps(secret)[1:-1] not in log
    for pw in users.passwords.values():
        assert pw not in log


# ---------------------------------------------------------------------------
# syslog
# ---------------------------------------------------------------------------


class SyslogSocket:
    """A unix datagram socket standing in for the syslog daemon."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.lines = []

    def drain(self):
        while True:
            try:
                self.lines.append(self.sock.recv(65536).decode())
            except (socket.timeout, BlockingIOError):
                return self.lines

    def wait_for(self, needle, timeout=10):
        return wait_until(lambda: [l for l in self.drain() if needle in l], timeout,
                          f"a syslog line with {needle!r}")

    def close(self):
        self.sock.close()


@pytest.fixture
def syslog_socket(tmp_path):
    s = SyslogSocket(tmp_path / "log.sock")
    yield s
    s.close()


SYSLOG_LINE = re.compile(
    r"^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d msaproxy\[(\d+)\]: (.*)$", re.S)


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_syslog_output(proxy, recording_backend, users, syslog_socket, fmt):
    p = proxy([recording_backend.port],
              **{"log": {"level": "info", "format": fmt, "output": "syslog",
                         "facility": "local3",
                         "syslog_socket": str(syslog_socket.path)}})
    (ready,) = [line for line in syslog_socket.wait_for("ready")
                if "blocklist-ready" not in line]
    send_one(p, "demo", users.passwords["demo"])
    (end,) = syslog_socket.wait_for("demo", timeout=10) and [
        l for l in syslog_socket.lines if "session-end" in l and "demo" in l]
    for line in (ready, end):
        m = SYSLOG_LINE.match(line)
        assert m, line
        pri, pid, body = int(m.group(1)), int(m.group(2)), m.group(3)
        assert pri == 19 * 8 + 6  # local3.info
        assert pid == p.proc.pid
        if fmt == "json":
            obj = json.loads(body)
            assert "ts" not in obj and obj["level"] == "info"
        else:
            assert body.startswith("level=info msg=") and " ts=" not in body
    if fmt == "json":
        summary = json.loads(SYSLOG_LINE.match(end).group(3))
        assert (summary["user"], summary["messages"], summary["outcome"]) == ("demo", 1, "ok")
    else:
        assert " user=demo " in end and " messages=1 " in end
    # Nothing went to stderr: the daemon was there all along.
    assert "msg=" not in p.log() and '"msg"' not in p.log()


def test_syslog_unreachable_falls_back_to_stderr(proxy, recording_backend, users, tmp_path):
    p = proxy([recording_backend.port],
              **{"log.output": "syslog", "log.syslog_socket": str(tmp_path / "nobody.sock")})
    p.wait_for_log(r"level=info msg=ready")
    send_one(p, "demo", users.passwords["demo"])
    p.wait_for_log(r"msg=session-end .*user=demo")
