"""Backends on unix sockets: `address: unix:/path`.

Real servers on sockets made here: an aiosmtpd recording backend
(UnixSocketController, smtp_backend.py) and a private Postfix whose smtpd
also listens on a unix socket (a master.cf "unix" service).  XCLIENT over
a unix socket tells the backend the same client facts as over TCP; health
checks connect to the socket; a socket whose file is gone is down, and up
again when it is back.
"""

import os
import re
import shutil
import smtplib
import ssl
import tempfile
from pathlib import Path

import pytest

from conftest import LOOPBACK, PostfixInstance, config_check, tail
from smtp_backend import RecordingBackend

PASSWORDS = {"demo": "demo-pass-1", "alice": "alice-pass-2", "bob": "bob-pass-3"}
HEALTH = {"interval": "1s", "timeout": "2s", "rise": 1, "fall": 1}
MESSAGE = b"Subject: unix\r\n\r\nover a unix socket\r\n"


@pytest.fixture
def sockdir():
    """A short directory for sockets (sun_path holds 107 bytes; pytest's
    tmp paths can be longer)."""
    d = Path(tempfile.mkdtemp(prefix="msa-unix-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def unix_backend(sockdir):
    b = RecordingBackend(unix_socket=sockdir / "rec.sock")
    b.start()
    yield b
    b.stop()


def login(p, user="demo"):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=20)
    s.login(user, PASSWORDS[user])
    return s


def test_unix_socket_backend_with_xclient(proxy, unix_backend):
    """The backend is told the client's TCP address and port and the
    login, as over TCP; the check and the session log name the socket."""
    p = proxy([{"address": unix_backend.address, "identity": "xclient"}],
              **{"backends.health_check": HEALTH})
    sock = re.escape(unix_backend.address)
    p.wait_for_log(rf"msg=backend-check backend={sock} result=ok")
    with login(p, "alice") as s:
        client_port = s.sock.getsockname()[1]
        s.sendmail("alice@example.test", ["rcpt@example.test"], MESSAGE)
    (m,) = unix_backend.wait_for_messages(1)
    assert m["raw"] == MESSAGE
    assert m["xclient"]["LOGIN"] == "alice"
    assert m["xclient"]["ADDR"] == LOOPBACK
    assert m["xclient"]["PORT"] == str(client_port)
    p.wait_for_log(rf"msg=message .*backend={sock} .*result=250")
    p.wait_for_log(rf"msg=session-end .*backend={sock} ")


def test_unix_and_tcp_backends_share_the_load(proxy, unix_backend):
    tcp = RecordingBackend()
    tcp.start()
    try:
        p = proxy([{"address": unix_backend.address}, tcp.port], workers=1)
        for _ in range(4):
            with login(p) as s:
                s.sendmail("demo@example.test", ["rcpt@example.test"], MESSAGE)
        assert len(unix_backend.wait_for_messages(2)) == 2
        assert len(tcp.wait_for_messages(2)) == 2
    finally:
        tcp.stop()


def test_unix_socket_backend_down_and_back(proxy, sockdir):
    """Its socket gone: the checks take it down (connect: No such file or
    directory) and sessions fail over to the TCP one; back: up again."""
    path = sockdir / "flaky.sock"
    flaky = RecordingBackend(unix_socket=path)
    flaky.start()
    tcp = RecordingBackend()
    tcp.start()
    try:
        p = proxy([{"address": flaky.address}, tcp.port], workers=1,
                  **{"backends.health_check": HEALTH})
        addr = re.escape(flaky.address)
        p.wait_for_log(rf"msg=backend-check backend={addr} result=ok")
        flaky.stop()
        p.wait_for_log(rf"msg=backend-down backend={addr} source=check "
                       r"reason=\"connect: (No such file or directory|Connection refused)\"",
                       timeout=15)
        mark = p.mark()
        for _ in range(3):
            with login(p) as s:
                s.sendmail("demo@example.test", ["rcpt@example.test"], MESSAGE)
        assert len(tcp.wait_for_messages(3)) == 3
        assert "backend-failed" not in p.log()[mark:]
        flaky = RecordingBackend(unix_socket=path)
        flaky.start()
        p.wait_for_log(rf"msg=backend-up backend={addr} source=check", timeout=15,
                       since=mark)
        for _ in range(4):
            with login(p) as s:
                s.sendmail("demo@example.test", ["rcpt@example.test"], MESSAGE)
        assert len(flaky.wait_for_messages(2)) >= 2
    finally:
        flaky.stop()
        tcp.stop()


def test_unix_socket_config_errors(tmp_path):
    """Refused with file:line (tests/unit/test_config.c covers every
    form; this is the binary saying it)."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("tls:\n  certificates:\n    - {cert: c.crt, key: c.key}\n"
                   "listeners:\n  - {address: '127.0.0.1:2587', mode: starttls}\n"
                   "auth: {passwd_file: users}\n"
                   "backends:\n  servers:\n    - address: unix:relative.sock\n")
    out = config_check(cfg)
    assert out.returncode != 0
    assert (f"{cfg}:9: backends.servers[0].address: expected an absolute path "
            "after unix:") in out.stderr, out.stderr


# ---------------------------------------------------------------------------
# A real Postfix on a unix socket
# ---------------------------------------------------------------------------

UNIX_SERVICE = "msasmtpd"


class UnixPostfix(PostfixInstance):
    """The conftest Postfix, plus smtpd as a master.cf "unix" service: its
    socket is public/msasmtpd under the queue directory.  Postfix takes a
    unix-socket client for 127.0.0.1, which smtpd_authorized_xclient_hosts
    allows."""

    def _configure(self):
        super()._configure()
        master = self.etc / "master.cf"
        master.write_text(master.read_text()
                          + f"{UNIX_SERVICE} unix n - n - - smtpd\n")

    @property
    def socket_path(self):
        return self.root / "spool/public" / UNIX_SERVICE


@pytest.fixture(scope="module")
def unix_postfix(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the Postfix backend needs root (postfix start)")
    instance = UnixPostfix(tmp_path_factory.mktemp("postfix-unix"))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def test_postfix_on_a_unix_socket(proxy, unix_postfix):
    path = unix_postfix.socket_path
    assert len(str(path)) < 108
    # Postfix's public/ is postfix:postdrop 0710: the proxy, which keeps no
    # CAP_DAC_OVERRIDE after start-up, reaches it as a member of postdrop,
    # as an operator would set it up (docs/BACKENDS.md).
    p = proxy([{"address": f"unix:{path}", "identity": "xclient"}],
              **{"backends.health_check": HEALTH,
                 "privileges.user": "nobody", "privileges.group": "postdrop"})
    try:
        p.wait_for_log(rf"msg=backend-check backend=unix:{re.escape(str(path))} "
                       r"result=ok")
    except BaseException:
        print(tail(unix_postfix.log_text()))
        raise
    since = unix_postfix.mark()
    with login(p, "bob") as s:
        s.sendmail("bob@example.test", ["rcpt@example.test"], MESSAGE)
    unix_postfix.wait_for_log(
        r"postfix/smtpd\[\d+\]: (\w+): client=\S*\[127\.0\.0\.1\], "
        r"sasl_method=XCLIENT, sasl_username=bob$", since=since)
    unix_postfix.wait_for_log(r"status=sent", since=since)
