"""Control socket, msaproxyctl, reload and drain, end to end
(proxy/control.c, server.c, generation.c, listen.c, proxy/ctl/).

Reload (SIGHUP or `msaproxyctl reload`) swaps in a new generation: a
config that fails to load is refused with its FILE:LINE error and the
running one stays; sessions in progress keep the generation they started
on; listeners come and go without a restart; rate-limit state survives.
Drain (SIGTERM, SIGINT, `msaproxyctl drain`) stops accepting, lets a
transaction in progress finish (its message is delivered and
acknowledged), answers 421 and exits.
"""

import json
import signal
import smtplib
import socket
import ssl
import threading
import time

import pytest

from conftest import LOOPBACK, free_port, hash_password, port_accepts, wait_until

MSG = b"Subject: control\r\n\r\nhello\r\n"


def connect(p, port=None, implicit=True):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    if implicit:
        return smtplib.SMTP_SSL(LOOPBACK, port or p.implicit_port, context=ctx, timeout=15)
    s = smtplib.SMTP(LOOPBACK, port or p.starttls_port, timeout=15)
    s.starttls(context=ctx)
    return s


def login(p, user="demo", password="demo-pass-1", **kw):
    s = connect(p, **kw)
    s.login(user, password)
    return s


def read_reply(sock_file):
    """One SMTP reply (all its lines) from a socket file, as text."""
    lines = []
    while True:
        line = sock_file.readline()
        if not line:
            break
        lines.append(line.decode())
        if len(line) < 4 or line[3:4] != b"-":
            break
    return "".join(lines)


# ---------------------------------------------------------------------------
# Looking inside
# ---------------------------------------------------------------------------

def test_status_stats_and_sessions(proxy, recording_backend):
    p = proxy([recording_backend.port])
    status = json.loads(p.ctl("-j", "status").stdout)
    assert status["pid"] == p.proc.pid
    assert status["state"] == "running"
    assert status["generation"] == 1 and status["workers"] == 2
    assert "generation 1" in p.ctl("status").stdout

    with login(p) as s:
        s.sendmail("a@example.test", ["r@example.test"], MSG)
        lines = [json.loads(x) for x in p.ctl("-j", "sessions").stdout.splitlines()]
        mine = [x for x in lines if x["user"] == "demo"]
        assert len(mine) == 1, lines
        assert mine[0]["state"] == "idle" and mine[0]["messages"] == 1
        assert mine[0]["tls"].startswith("TLSv1.")
        assert mine[0]["listener"] == f"{LOOPBACK}:{p.implicit_port}"
        human = p.ctl("sessions").stdout
        assert " demo idle TLSv1." in human, human
        stats = json.loads(p.ctl("-j", "stats").stdout)
        assert stats["sessions_active"] >= 1
        assert stats["sessions_accepted"] >= 1
    wait_until(lambda: json.loads(p.ctl("-j", "stats").stdout)["sessions_active"] == 0,
               5, "the session to end")
    p.wait_for_log(r"msg=control-request request=\"json sessions\"")


def test_bad_requests_get_clear_errors(proxy, recording_backend):
    p = proxy([recording_backend.port])
    bad = p.ctl("frobnicate", check=False)
    assert bad.returncode == 1
    assert 'unknown command "frobnicate"' in bad.stderr
    usage = p.ctl("user", "limits", check=False)
    assert usage.returncode == 1 and "usage: user limits LOGIN" in usage.stderr
    nobody = p.ctl("user", "limits", "nobody", check=False)
    assert nobody.returncode == 1 and "no such user" in nobody.stderr
    # A client that never finishes its line costs the proxy 2 s, no more.
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(p.control_socket))
        c.sendall(b"stat")
        c.settimeout(5)
        assert c.recv(100) == b""
    p.wait_for_log(r"msg=control-request-bad")
    assert p.ctl("status").returncode == 0

    def raw(request):
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(p.control_socket))
            c.settimeout(5)
            try:
                c.sendall(request)
            except OSError:
                pass  # closed on us mid-send: an answer too
            data = b""
            try:
                while chunk := c.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass
            return data

    # Over 1023 bytes without a newline: closed without an answer.
    since = p.mark()
    assert raw(b"status " + b"x" * 2000 + b"\n") == b""
    p.wait_for_log(r"msg=control-request-bad", since=since)
    # Too many words, an empty line, a NUL-cut line: clear errors.
    assert raw(b"ban " + b"a " * 20 + b"\n") == b"error: too many words\n"
    assert raw(b"\n") == b"error: empty request\n"
    assert raw(b"json\n") == b"error: empty request\n"
    assert raw(b"stat\x00us\n").startswith(b'error: unknown command "stat"')
    assert p.ctl("status").returncode == 0
    # Nothing listening: exit 3, and a message.
    gone = p.ctl_dir / "nothing.sock"
    r = p.ctl("-s", str(gone), "status", check=False)
    assert r.returncode == 3 and "nothing.sock" in r.stderr


def test_user_limits_show_bucket_levels(proxy, recording_backend):
    p = proxy([recording_backend.port],
              **{"limits.user": {"messages": "5/1h", "recipients": "off",
                                 "bytes": "1GB/1h", "messages_quota": "100/1d"}})
    before = json.loads(p.ctl("-j", "user", "limits", "demo").stdout)
    assert before["tracked"] is False
    assert before["messages"]["available"] == 5
    assert before["recipients"] is None
    with login(p) as s:
        for _ in range(2):
            s.sendmail("a@example.test", ["r@example.test"], MSG)
    after = json.loads(p.ctl("-j", "user", "limits", "demo").stdout)
    assert after["tracked"] is True
    assert after["messages"]["available"] == 3
    assert after["quota"]["available"] == 98
    assert "messages 3 available of 5" in p.ctl("user", "limits", "demo").stdout


# ---------------------------------------------------------------------------
# Reload
# ---------------------------------------------------------------------------

def test_reload_picks_up_new_users_and_keeps_sessions(proxy, recording_backend, users, tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text(users.path.read_text())
    passwd.chmod(0o600)
    p = proxy([recording_backend.port], **{"auth.passwd_file": str(passwd)})
    with pytest.raises(smtplib.SMTPAuthenticationError):
        login(p, "carol", "carol-pass-4")

    old = login(p)  # started on generation 1, stays on it
    passwd.write_text(passwd.read_text() + f"carol:{hash_password('carol-pass-4')}\n")
    since = p.mark()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for_log(r"msg=reloaded generation=2 .*users=4", since=since)
    with login(p, "carol", "carol-pass-4") as s:
        s.sendmail("carol@example.test", ["r@example.test"], MSG)
    old.sendmail("a@example.test", ["r@example.test"], MSG)
    sessions = [json.loads(x) for x in p.ctl("-j", "sessions").stdout.splitlines()]
    assert [x["generation"] for x in sessions if x["user"] == "demo"] == [1]
    old.quit()
    recording_backend.wait_for_messages(2)
    assert json.loads(p.ctl("-j", "status").stdout)["generation"] == 2


def test_broken_config_is_refused_and_the_old_one_runs(proxy, recording_backend):
    p = proxy([recording_backend.port])
    good = p.config_path.read_text()
    p.config_path.write_text(good + "limits:\n  max_line: 12\n")
    r = p.ctl("reload", check=False)
    assert r.returncode == 1
    assert "msaproxy.yaml:" in r.stderr, r.stderr
    p.wait_for_log(r"msg=reload-failed generation=1 error=")
    p.config_path.write_text(good)
    with login(p) as s:
        s.sendmail("a@example.test", ["r@example.test"], MSG)
    status = json.loads(p.ctl("-j", "status").stdout)
    assert status["generation"] == 1 and status["reload_failures"] == 1
    p.ctl("reload")
    assert json.loads(p.ctl("-j", "status").stdout)["generation"] == 2


def test_limit_state_survives_reload(proxy, recording_backend):
    p = proxy([recording_backend.port], **{"limits.user": {"messages": "3/1h"}})
    with login(p) as s:
        for _ in range(3):
            s.sendmail("a@example.test", ["r@example.test"], MSG)
    # A reload (here also changing an unrelated key) is no way around it.
    p.rewrite_config(**{"limits.max_recipients": 50})
    p.ctl("reload")
    with login(p) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            s.sendmail("a@example.test", ["r@example.test"], MSG)
        assert exc.value.smtp_code == 451
    assert json.loads(p.ctl("-j", "user", "limits", "demo").stdout)[
        "messages"]["available"] == 0


def test_listeners_come_and_go_without_restart(proxy, recording_backend):
    p = proxy([recording_backend.port])
    extra = free_port()
    listeners = list(p.config["listeners"])
    p.config["listeners"] = listeners + [
        {"address": f"{LOOPBACK}:{extra}", "mode": "starttls"}]
    p.config_path.write_text(__import__("conftest").to_yaml(p.config) + "\n")
    p.ctl("reload")
    wait_until(lambda: port_accepts(extra), 5, "the new listener")
    with login(p, port=extra, implicit=False) as s:
        s.sendmail("a@example.test", ["r@example.test"], MSG)

    # Removed again: that port closes, the others never stopped.
    held = login(p)  # a session on a kept listener
    p.config["listeners"] = listeners
    p.config_path.write_text(__import__("conftest").to_yaml(p.config) + "\n")
    p.ctl("reload")
    wait_until(lambda: not port_accepts(extra), 5, "the removed listener to close")
    held.sendmail("a@example.test", ["r@example.test"], MSG)
    held.quit()
    with login(p, implicit=False) as s:
        s.sendmail("a@example.test", ["r@example.test"], MSG)
    recording_backend.wait_for_messages(3)


def test_certificate_reload(proxy, recording_backend, certs):
    p = proxy([recording_backend.port])

    def served_key_type():
        ctx = ssl.create_default_context(cafile=str(p.ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((LOOPBACK, p.implicit_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                return t.cipher()[0]

    assert "ECDSA" in served_key_type()
    p.rewrite_config(**{"tls.certificates": [{"cert": str(certs.rsa_cert),
                                              "key": str(certs.rsa_key)}]})
    p.ctl("reload")
    assert "RSA" in served_key_type()


def test_no_session_fails_during_reloads_under_load(proxy, recording_backend):
    p = proxy([recording_backend.port])
    stop = threading.Event()
    done, failures = [], []

    def client():
        while not stop.is_set():
            try:
                with login(p) as s:
                    s.sendmail("a@example.test", ["r@example.test"], MSG)
                done.append(1)
            except Exception as exc:  # every failure is a finding
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(5):
            time.sleep(0.4)
            p.rewrite_config(**{"limits.max_recipients": 100 + i})
            p.ctl("reload")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert len(done) >= 10
    assert json.loads(p.ctl("-j", "status").stdout)["generation"] == 6
    recording_backend.wait_for_messages(len(done))


# ---------------------------------------------------------------------------
# Drain
# ---------------------------------------------------------------------------

def _open_transaction(p):
    """A raw STARTTLS session that has MAIL and RCPT accepted; returns the
    TLS socket and its file."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    raw = socket.create_connection((LOOPBACK, p.starttls_port), timeout=10)
    f = raw.makefile("rb")
    assert read_reply(f).startswith("220")
    raw.sendall(b"EHLO c.example\r\n")
    read_reply(f)
    raw.sendall(b"STARTTLS\r\n")
    assert read_reply(f).startswith("220")
    t = ctx.wrap_socket(raw, server_hostname="localhost")
    tf = t.makefile("rb")
    t.sendall(b"EHLO c.example\r\n")
    read_reply(tf)
    t.sendall(b"AUTH PLAIN AGRlbW8AZGVtby1wYXNzLTE=\r\n")
    assert read_reply(tf).startswith("235")
    t.sendall(b"MAIL FROM:<a@example.test>\r\n")
    assert read_reply(tf).startswith("250")
    t.sendall(b"RCPT TO:<r@example.test>\r\n")
    assert read_reply(tf).startswith("250")
    return t, tf


@pytest.mark.parametrize("how", ["SIGTERM", "ctl"])
def test_drain_finishes_transactions_then_421(proxy, recording_backend, how):
    p = proxy([recording_backend.port], **{"shutdown.timeout": "8s"})
    busy, busy_f = _open_transaction(p)
    idle = connect(p)
    idle.login("demo", "demo-pass-1")

    p.exit_expected = True
    if how == "SIGTERM":
        p.proc.send_signal(signal.SIGTERM)
    else:
        p.ctl("drain")
    p.wait_for_log(r"msg=draining timeout_ms=8000")
    # The idle session is told at once.
    code, text = idle.getreply()
    assert code == 421 and b"4.3.2" in text
    # No new sessions.
    wait_until(lambda: not port_accepts(p.implicit_port), 5, "listeners to close")
    # The transaction in progress finishes: delivered and acknowledged.
    busy.sendall(b"DATA\r\n")
    assert read_reply(busy_f).startswith("354")
    busy.sendall(MSG + b".\r\n")
    assert read_reply(busy_f).startswith("250")
    assert read_reply(busy_f).startswith("421 4.3.2")
    recording_backend.wait_for_messages(1)
    assert p.proc.wait(timeout=10) == 0
    busy.close()


def test_drain_deadline_cuts_a_stalled_transaction(proxy, recording_backend):
    p = proxy([recording_backend.port], **{"shutdown.fast_timeout": "1s"})
    busy, busy_f = _open_transaction(p)
    busy.sendall(b"DATA\r\n")
    assert read_reply(busy_f).startswith("354")
    busy.sendall(b"Subject: never finished\r\n\r\npart")
    started = time.monotonic()
    p.exit_expected = True
    p.proc.send_signal(signal.SIGINT)
    assert read_reply(busy_f).startswith("421 4.3.2")
    assert p.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    p.wait_for_log(r"msg=drain-deadline worker=\d+ sessions=1")
    # The backend never saw a complete message: nothing delivered, nothing lost.
    time.sleep(0.3)
    assert recording_backend.messages == []
    busy.close()
