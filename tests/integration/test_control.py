"""Control socket, msaproxyctl, reload and drain, end to end
(proxy/ops/control.c, server.c, generation.c, listen.c, proxy/ctl/).

Reload (SIGHUP or `msaproxyctl reload`) swaps in a new generation: a
config that fails to load is refused with its FILE:LINE error and the
running one stays; sessions in progress keep the generation they started
on; listeners come and go without a restart; rate-limit state survives.
Drain (SIGTERM, SIGINT, `msaproxyctl drain`) stops accepting, lets a
transaction in progress finish (its message is delivered and
acknowledged), answers 421 and exits.
"""

import collections
import json
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import LOOPBACK, free_port, hash_password, port_accepts, to_yaml, wait_until
from smtp_backend import RecordingBackend

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
    # The long options, as scripts spell them.
    import subprocess
    from conftest import MSAPROXYCTL_BIN
    long = subprocess.run([MSAPROXYCTL_BIN, "--socket", str(p.control_socket), "--json",
                           "status"], capture_output=True, text=True, timeout=30)
    assert long.returncode == 0 and json.loads(long.stdout)["pid"] == p.proc.pid

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
    assert usage.returncode == 2 and "usage: user limits LOGIN" in usage.stderr
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


def test_user_reset_clears_buckets_and_login_score(proxy, recording_backend):
    p = proxy([recording_backend.port],
              **{"limits.user": {"messages": "5/1h", "messages_quota": "100/1d"},
                 "limits.login": {"failures": "1/1h", "max_delay": "1s"},
                 "auth.failure_delay": "0s"})
    r = p.ctl("user", "reset", "demo", check=False)
    assert r.returncode == 1 and "demo has no limit state" in r.stderr, r.stderr
    with login(p) as s:
        for _ in range(2):
            s.sendmail("a@example.test", ["r@example.test"], MSG)
    # Failures against one allowed: the next attempt is held back.  (Not
    # from 127.0.0.1, which limits.ip.allow exempts from the scores.)
    ctx = ssl.create_default_context(cafile=str(p.ca))

    def from_elsewhere():
        return smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=15,
                                source_address=("127.0.7.1", 0))

    with from_elsewhere() as s:
        with pytest.raises((smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected)):
            s.login("demo", "wrong")
    p.wait_for_log(r"msg=auth .*user=demo .*delay_ms=1000 result=failed")
    before = json.loads(p.ctl("-j", "user", "limits", "demo").stdout)
    assert before["messages"]["available"] == 3 and before["quota"]["available"] == 98
    since = p.mark()
    assert p.ctl("user", "reset", "demo").stdout == ""
    p.wait_for_log(r"msg=user-reset user=demo", since=since)
    after = json.loads(p.ctl("-j", "user", "limits", "demo").stdout)
    assert after["tracked"] is False
    assert after["messages"]["available"] == 5 and after["quota"]["available"] == 100
    # The login is no longer slowed down.
    since = p.mark()
    with from_elsewhere() as s:
        s.login("demo", "demo-pass-1")
    p.wait_for_log(r"msg=auth .*user=demo .*delay_ms=0 result=ok", since=since)
    r = p.ctl("user", "reset", "demo", check=False)
    assert r.returncode == 1 and "no limit state" in r.stderr, r.stderr
    usage = p.ctl("user", "reset", check=False)
    assert usage.returncode == 2 and "usage: user limits LOGIN | user reset LOGIN" in usage.stderr


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


@pytest.mark.deadline(150)
def test_reloads_under_load_lose_and_duplicate_nothing(proxy, recording_backend, certs):
    """Many concurrent STARTTLS+AUTH submissions (and some on implicit TLS)
    while the configuration is reloaded four times: a listener added (and
    used at once), a limit changed, the certificate replaced, nothing
    changed.  No session may fail, and the backend must receive every
    message exactly once."""
    mport = free_port()
    p = proxy([recording_backend.port], **{"metrics.listen": f"{LOOPBACK}:{mport}"})
    extra = free_port()
    users = [("demo", "demo-pass-1"), ("alice", "alice-pass-2"), ("bob", "bob-pass-3")]
    threads_n, min_each, max_each = 8, 4, 40
    extra_ready, reloads_done = threading.Event(), threading.Event()
    lock = threading.Lock()
    sent, failures, on_extra = [], [], []
    give_up = time.monotonic() + 100

    def client(n):
        user, password = users[n % len(users)]
        ctx = ssl.create_default_context(cafile=str(p.ca))
        for i in range(max_each):
            if i >= min_each and reloads_done.is_set():
                return
            if time.monotonic() > give_up:
                with lock:
                    failures.append(f"client {n}: out of time after {i} messages")
                return
            token = f"load-{n}-{i}"
            use_extra = n % 2 == 0 and i % 2 == 1 and extra_ready.is_set()
            try:
                if n % 2 == 1:
                    s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=20)
                else:
                    s = smtplib.SMTP(LOOPBACK, extra if use_extra else p.starttls_port,
                                     timeout=20)
                    s.starttls(context=ctx)
                with s:
                    s.login(user, password)
                    refused = s.sendmail(f"{user}@example.test", ["r@example.test"],
                                         f"Subject: {token}\r\nX-Token: {token}\r\n"
                                         f"\r\nbody of {token}\r\n".encode())
                    assert refused == {}, refused
                with lock:
                    sent.append(token)
                    if use_extra:
                        on_extra.append(token)
            except Exception as exc:  # every failure is a finding
                with lock:
                    failures.append(f"{token}: {exc!r}")

    def progress(n):
        """Wait until n more messages went through (bounded)."""
        with lock:
            target = len(sent) + n
        wait_until(lambda: len(sent) >= target or failures, 30, f"{n} more messages")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    try:
        progress(threads_n)
        # 1. A new listener: bound by the time reload answers, used at once.
        p.config["listeners"] = list(p.config["listeners"]) + [
            {"address": f"{LOOPBACK}:{extra}", "mode": "starttls"}]
        p.config_path.write_text(to_yaml(p.config) + "\n")
        p.ctl("reload")
        extra_ready.set()
        progress(threads_n)
        # 2. A limit changed (and one that is not hit).
        p.rewrite_config(**{"limits.user": {"messages": "90000/1m"},
                            "limits.max_recipients": 50})
        p.ctl("reload")
        progress(threads_n)
        # 3. Another certificate (same names, same CA).
        p.rewrite_config(**{"tls.certificates": [{"cert": str(certs.rsa_cert),
                                                  "key": str(certs.rsa_key)}]})
        p.ctl("reload")
        progress(threads_n)
        # 4. Nothing changed at all.
        p.ctl("reload")
        progress(threads_n)
    finally:
        reloads_done.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert len(sent) >= threads_n * min_each and on_extra
    status = json.loads(p.ctl("-j", "status").stdout)
    assert status["generation"] == 5 and status["reload_failures"] == 0
    assert json.loads(p.ctl("-j", "user", "limits", "demo").stdout)[
        "messages"]["count"] == 90000

    # Every message at the backend exactly once, and nothing else.
    got = recording_backend.wait_for_messages(len(sent), timeout=30)
    time.sleep(0.3)
    tokens = collections.Counter(
        re.search(rb"^X-Token: (\S+)\r$", m["content"], re.M).group(1).decode()
        for m in recording_backend.messages)
    assert len(got) == len(sent)
    assert tokens == collections.Counter(sent)
    assert max(tokens.values()) == 1

    # Sessions were in flight across the reloads: started before one, on
    # the old generation, and ended after it.
    open_ids, spanning = set(), 0
    for line in p.log().splitlines():
        if m := re.search(r"msg=session-start session=(\w+)", line):
            open_ids.add(m.group(1))
        elif m := re.search(r"msg=session-end session=(\w+)", line):
            open_ids.discard(m.group(1))
        elif "msg=reloaded " in line:
            spanning += len(open_ids)
    assert spanning > 0

    # The metrics saw the same: messages, reloads, the new listener's sessions.
    with urllib.request.urlopen(f"http://{LOOPBACK}:{mport}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert f"\nmsaproxy_messages_total {len(sent)}\n" in text
    assert '\nmsaproxy_config_reloads_total{result="success"} 4\n' in text
    line = (f'msaproxy_sessions_total{{listener="{LOOPBACK}:{extra}",outcome="ok"}} '
            f"{len(on_extra)}")
    wait_until(lambda: line in urllib.request.urlopen(
        f"http://{LOOPBACK}:{mport}/metrics", timeout=10).read().decode(), 5,
        "the new listener's sessions to be counted")


# ---------------------------------------------------------------------------
# Backends out of rotation
# ---------------------------------------------------------------------------

@pytest.fixture
def two_backends():
    """Two recording backends, a and b, stopped after the test."""
    started = []
    try:
        for _ in range(2):
            b = RecordingBackend()
            b.start()
            started.append(b)
        yield started
    finally:
        for b in started:
            b.stop()


def addr(backend):
    return f"{LOOPBACK}:{backend.port}"


def backends_state(p):
    return {x["backend"]: x for x in
            (json.loads(line) for line in p.ctl("-j", "backends").stdout.splitlines())}


def send_one(p, tag):
    with login(p) as s:
        s.sendmail("a@example.test", ["r@example.test"],
                   f"Subject: {tag}\r\n\r\n{tag}\r\n".encode())


def test_backend_disable_and_enable(proxy, two_backends):
    a, b = two_backends
    # One worker: its round robin alone decides, a first.
    p = proxy([a.port, b.port], workers=1)
    state = backends_state(p)
    assert list(state) == [addr(a), addr(b)]
    assert all(x["health"] == "up" and x["admin"] == "enabled"
               and x["connections"] == 0 and x["weight"] == 1 for x in state.values())
    assert p.ctl("backends").stdout == (
        f"{addr(a)} up enabled connections=0 weight=1\n"
        f"{addr(b)} up enabled connections=0 weight=1\n")

    # A session connected to a before it is disabled finishes there.
    held = login(p)
    held.sendmail("a@example.test", ["r@example.test"], MSG)
    assert len(a.wait_for_messages(1)) == 1

    since = p.mark()
    r = p.ctl("backend", "disable", addr(a))
    assert r.stdout == "" and r.stderr == ""
    p.wait_for_log(rf"msg=backend-disabled backend={addr(a)} enabled=1 of=2", since=since)
    state = backends_state(p)
    assert state[addr(a)]["admin"] == "disabled" and state[addr(a)]["health"] == "up"
    assert state[addr(a)]["connections"] == 1  # the held session's
    assert state[addr(b)]["admin"] == "enabled"
    assert f"{addr(a)} up disabled connections=1" in p.ctl("backends").stdout

    for i in range(4):
        send_one(p, f"while-disabled-{i}")
    assert len(b.wait_for_messages(4)) == 4
    held.sendmail("a@example.test", ["r@example.test"], MSG)  # still on a
    held.quit()
    assert len(a.wait_for_messages(2)) == 2
    wait_until(lambda: backends_state(p)[addr(a)]["connections"] == 0, 5,
               "the held session's backend connection to close")
    assert len(a.messages) == 2 and len(b.messages) == 4

    p.ctl("backend", "enable", addr(a))
    p.wait_for_log(rf"msg=backend-enabled backend={addr(a)} enabled=2 of=2")
    assert backends_state(p)[addr(a)]["admin"] == "enabled"
    for i in range(4):
        send_one(p, f"enabled-again-{i}")
    wait_until(lambda: len(a.messages) + len(b.messages) == 10, 10, "4 more messages")
    assert len(a.messages) > 2 and len(b.messages) > 4, (len(a.messages), len(b.messages))


def test_backend_command_errors(proxy, two_backends):
    a, b = two_backends
    p = proxy([a.port, b.port])
    for args, why in ((("backend", "disable", f"{LOOPBACK}:1"),
                       f"no backend {LOOPBACK}:1 in the configuration"),
                      (("backend", "disable", "mx.example.test"),
                       "no backend mx.example.test in the configuration"),
                      (("backend",), "usage: backend enable|disable NAME"),
                      (("backend", "disable"), "usage: backend enable|disable NAME"),
                      (("backend", "pause", addr(a)), "usage: backend enable|disable NAME"),
                      (("backend", "disable", addr(a), "now"),
                       "usage: backend enable|disable NAME")):
        r = p.ctl(*args, check=False)
        assert r.returncode == (2 if why.startswith("usage: ") else 1), args
        assert r.stderr.startswith("msaproxyctl: error: ") and why in r.stderr, r.stderr
    # Nothing changed; the same request twice is no error.
    assert all(x["admin"] == "enabled" for x in backends_state(p).values())
    p.ctl("backend", "enable", addr(a))
    p.ctl("backend", "disable", addr(b))
    p.ctl("backend", "disable", addr(b))
    assert backends_state(p)[addr(b)]["admin"] == "disabled"


def test_disabling_every_backend_gives_451_4_4_1(proxy, recording_backend):
    p = proxy([recording_backend.port])
    name = f"{LOOPBACK}:{recording_backend.port}"
    r = p.ctl("backend", "disable", name)
    assert r.stdout == ("warning: no backend is enabled: new transactions get "
                        "451 4.4.1\n")
    p.wait_for_log(r"msg=backends-all-disabled")
    with login(p) as s:
        code, text = s.mail("a@example.test")
        assert code == 451 and text.startswith(b"4.4.1"), (code, text)
        assert s.noop()[0] == 250  # the session goes on
        p.ctl("backend", "enable", name)
        s.rset()
        s.sendmail("a@example.test", ["r@example.test"], MSG)
    # Nothing was acknowledged while it was out: one message, the last.
    assert len(recording_backend.wait_for_messages(1)) == 1
    time.sleep(0.2)
    assert len(recording_backend.messages) == 1
    p.wait_for_log(r"msg=backend-unavailable .*tried=0")


def metric_lines(port, name):
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as r:
        return [line for line in r.read().decode().splitlines()
                if line.startswith(name + "{")]


def test_backend_state_survives_reload(proxy, two_backends):
    a, b = two_backends
    mport = free_port()
    p = proxy([a.port, b.port], workers=1, **{"metrics.listen": f"{LOOPBACK}:{mport}"})
    p.ctl("backend", "disable", addr(a))
    assert metric_lines(mport, "msaproxy_backend_enabled") == [
        f'msaproxy_backend_enabled{{backend="{addr(a)}"}} 0',
        f'msaproxy_backend_enabled{{backend="{addr(b)}"}} 1']
    # A reload that keeps both (and changes something else) keeps a out.
    p.rewrite_config(**{"limits.max_recipients": 50})
    p.ctl("reload")
    assert json.loads(p.ctl("-j", "status").stdout)["generation"] == 2
    state = backends_state(p)
    assert state[addr(a)]["admin"] == "disabled" and state[addr(b)]["admin"] == "enabled"
    assert f'msaproxy_backend_enabled{{backend="{addr(a)}"}} 0' in \
        metric_lines(mport, "msaproxy_backend_enabled")
    for i in range(3):
        send_one(p, f"after-reload-{i}")
    assert len(b.wait_for_messages(3)) == 3 and a.messages == []

    # Removed, then added back: a fresh entry, enabled.
    servers = p.config["backends"]["servers"]
    p.config["backends"]["servers"] = [x for x in servers if x["address"] != addr(a)]
    p.config_path.write_text(to_yaml(p.config) + "\n")
    p.ctl("reload")
    assert list(backends_state(p)) == [addr(b)]
    assert metric_lines(mport, "msaproxy_backend_up") == [
        f'msaproxy_backend_up{{backend="{addr(b)}"}} 1']
    r = p.ctl("backend", "enable", addr(a), check=False)
    assert r.returncode == 1 and "no backend" in r.stderr
    p.config["backends"]["servers"] = servers
    p.config_path.write_text(to_yaml(p.config) + "\n")
    p.ctl("reload")
    assert backends_state(p)[addr(a)]["admin"] == "enabled"
    for i in range(4):
        send_one(p, f"back-{i}")
    wait_until(lambda: len(a.messages) + len(b.messages) == 7, 10, "4 more messages")
    assert len(a.messages) >= 1


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
    """SIGINT drains with shutdown.fast_timeout (1s), not shutdown.timeout
    (60s here): a proxy still running 20 s on has not honoured it."""
    p = proxy([recording_backend.port],
              **{"shutdown.fast_timeout": "1s", "shutdown.timeout": "60s"})
    busy, busy_f = _open_transaction(p)
    busy.sendall(b"DATA\r\n")
    assert read_reply(busy_f).startswith("354")
    busy.sendall(b"Subject: never finished\r\n\r\npart")
    p.exit_expected = True
    p.proc.send_signal(signal.SIGINT)
    assert read_reply(busy_f).startswith("421 4.3.2")
    try:
        assert p.proc.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("still running 20 s after SIGINT: shutdown.fast_timeout (1s) "
                    "not honoured, or shutdown.timeout (60s) used instead")
    p.wait_for_log(r"msg=drain-deadline worker=\d+ sessions=1")
    # The backend never saw a complete message: nothing delivered, nothing lost.
    time.sleep(0.3)
    assert recording_backend.messages == []
    busy.close()
