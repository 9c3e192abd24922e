"""systemd readiness (issue 18, item 15): msaproxy speaks sd_notify(3)'s
protocol itself (proxy/ops/sdnotify.c).  The test plays systemd: it binds
a unix datagram socket, sets NOTIFY_SOCKET (a path, and an abstract '@'
name), starts the real proxy and reads what arrives.  READY=1 comes only
once both listeners accept; RELOADING=1 (with MONOTONIC_USEC=) and
READY=1 surround each reload, by msaproxyctl and by SIGHUP, a failed one
too (STATUS= says so); STOPPING=1 comes at SIGTERM (and at a drain);
WATCHDOG=1 comes when WATCHDOG_USEC is set."""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import MSAPROXY_BIN, port_accepts


class Notify:
    """A NOTIFY_SOCKET: collects the datagrams as dicts of KEY=VALUE."""

    def __init__(self, tmp_path, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"msaproxy-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.sock.bind(path)
            self.env = path
        self.messages = []

    def next(self, timeout=10):
        """The next message, or fail saying none came."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            pytest.fail(f"no sd_notify message in {timeout}s; so far {self.messages}")
        msg = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(msg)
        return msg

    def next_not_watchdog(self, timeout=10):
        while True:
            msg = self.next(timeout)
            if msg != {"WATCHDOG": "1"}:
                return msg

    def close(self):
        self.sock.close()


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def notify(request, tmp_path, monkeypatch):
    n = Notify(tmp_path, request.param)
    monkeypatch.setenv("NOTIFY_SOCKET", n.env)
    yield n
    n.close()


def expect_reload_pair(notify, generation, failed=False):
    msg = notify.next_not_watchdog()
    assert msg.get("RELOADING") == "1", msg
    usec = int(msg["MONOTONIC_USEC"])
    now = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    assert 0 <= now - usec < 60e6, (usec, now)  # CLOCK_MONOTONIC, in usec
    msg = notify.next_not_watchdog()
    assert msg.get("READY") == "1", msg
    assert f"generation {generation}" in msg["STATUS"], msg
    assert ("the reload failed" in msg["STATUS"]) == failed, msg


def test_ready_reload_stopping(proxy, recording_backend, notify):
    p = proxy([recording_backend.port])
    # The fixture returns once both ports accept; READY=1 must already
    # have been sent, and be the first message.
    msg = notify.next()
    assert msg["READY"] == "1" and msg["STATUS"].startswith("Ready: generation 1"), msg
    # It was sent after the bind: the ports accept now, and what the
    # proxy logged as ready came first.
    assert port_accepts(p.starttls_port) and port_accepts(p.implicit_port)
    assert "msg=ready " in p.log()

    p.ctl("reload")
    expect_reload_pair(notify, 2)
    since = p.mark()
    p.proc.send_signal(signal.SIGHUP)
    expect_reload_pair(notify, 3)
    p.wait_for_log(r"msg=reloaded generation=3 ", since=since)
    # A broken file: the reload fails, the proxy stays ready on the old one.
    good = p.config_path.read_text()
    p.config_path.write_text(good + "no_such_key: 1\n")
    assert p.ctl("reload", check=False).returncode == 1
    expect_reload_pair(notify, 3, failed=True)
    p.config_path.write_text(good)

    p.exit_expected = True
    p.proc.send_signal(signal.SIGTERM)
    msg = notify.next_not_watchdog()
    assert msg.get("STOPPING") == "1" and msg["STATUS"].startswith("Draining"), msg
    assert p.proc.wait(timeout=15) == 0


def test_ready_comes_only_after_the_listeners(tmp_path, monkeypatch, proxy, recording_backend):
    """Read READY=1 while the proxy starts: at the moment it arrives both
    listeners already accept (nothing was waited for in between)."""
    n = Notify(tmp_path, False)
    monkeypatch.setenv("NOTIFY_SOCKET", n.env)
    try:
        p = proxy([recording_backend.port])
        # The fixture polled the ports before READY was read: start it
        # again by hand and look at the ports the moment READY arrives.
        assert n.next()["READY"] == "1"
        p.ctl("drain")
        assert n.next_not_watchdog()["STOPPING"] == "1"
        p.exit_expected = True
        assert p.proc.wait(timeout=15) == 0
        ports = (p.starttls_port, p.implicit_port)
        p.proc = None
        with open(p.log_path, "ab") as log:
            p.proc = subprocess.Popen([MSAPROXY_BIN, "-c", str(p.config_path)],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      cwd=p.workdir)
        p.exit_expected = False
        msg = n.next(timeout=15)
        assert msg["READY"] == "1", msg
        for port in ports:
            assert port_accepts(port), f"READY=1 before :{port} accepts"
    finally:
        n.close()


def test_watchdog(proxy, recording_backend, notify, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a heartbeat every 200ms
    p = proxy([recording_backend.port])
    assert notify.next_not_watchdog()["READY"] == "1"
    beats = 0
    deadline = time.monotonic() + 10
    while beats < 3 and time.monotonic() < deadline:
        if notify.next(timeout=5) == {"WATCHDOG": "1"}:
            beats += 1
    assert beats == 3, notify.messages
    assert p.proc.poll() is None
