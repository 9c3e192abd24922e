"""XCLIENT end to end: the exact line a backend gets, DESTADDR/DESTPORT
(the proxy's end of the client's connection) included when offered.

Backends: the aiosmtpd recording backend, which advertises what Postfix
3.7 does and records each command line as it arrived; smtp-sink, which
offers only "XCLIENT NAME HELO"; and a private Postfix whose recipient
restrictions ask a policy server started here, which records the
attributes Postfix sends: with XCLIENT in force, client_address/
client_port are the client's and server_address/server_port the proxy
listener the client reached (not Postfix's own port).
"""

import os
import re
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import LOOPBACK, PostfixInstance, free_port, wait_until

PASSWORDS = {"demo": "demo-pass-1", "alice": "alice-pass-2", "bob": "bob-pass-3"}
HELO = "client.example.test"
MESSAGE = b"Subject: xclient\r\n\r\nwho am I\r\n"


def send(p, mode, user="demo"):
    """One message through the proxy's starttls or implicit listener;
    returns the client's own port."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    if mode == "implicit":
        s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, local_hostname=HELO,
                             context=ctx, timeout=20)
    else:
        s = smtplib.SMTP(LOOPBACK, p.starttls_port, local_hostname=HELO, timeout=20)
        s.starttls(context=ctx)
    with s:
        port = s.sock.getsockname()[1]
        s.login(user, PASSWORDS[user])
        s.sendmail(f"{user}@example.test", ["rcpt@example.test"], MESSAGE)
    return port


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_exact_xclient_line(proxy, recording_backend, mode):
    p = proxy([recording_backend.port])
    client_port = send(p, mode)
    (m,) = recording_backend.wait_for_messages(1)
    listener = p.starttls_port if mode == "starttls" else p.implicit_port
    xclient = [c for c in m["commands"] if c.startswith(b"XCLIENT")]
    assert xclient == [
        f"XCLIENT NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT={client_port} "
        f"DESTADDR=127.0.0.1 DESTPORT={listener} PROTO=ESMTP HELO={HELO} "
        "LOGIN=demo\r\n".encode()]
    assert m["xclient"]["DESTPORT"] == str(listener)
    # The EHLO after XCLIENT carries the client's name (the backend's HELO
    # checks and logs see it), the first one the proxy's.
    cmds = [c for c in m["commands"] if c[:4] in (b"EHLO", b"XCLI")]
    assert cmds[0] == b"EHLO mail.example.test\r\n"
    assert cmds[2] == f"EHLO {HELO}\r\n".encode()
    assert m["helo"] == HELO


def _first_commands(conn, n=3):
    return [c for c in conn["commands"] if c[:4] in (b"EHLO", b"XCLI")][:n]


def test_xclient_goes_before_ehlo_once_the_backend_is_known(proxy, recording_backend):
    """The first connection to a backend reads its XCLIENT attributes from
    an EHLO; later ones send XCLIENT right after the greeting with the same
    line, then the one EHLO that counts (one round trip fewer)."""
    p = proxy([recording_backend.port])
    ports = [send(p, "implicit") for _ in range(3)]
    recording_backend.wait_for_messages(3)
    conns = recording_backend.connections
    assert len(conns) == 3
    assert _first_commands(conns[0])[0] == b"EHLO mail.example.test\r\n"
    assert _first_commands(conns[0])[2] == f"EHLO {HELO}\r\n".encode()
    for conn, port in zip(conns[1:], ports[1:]):
        assert conn["commands"][0] == (
            f"XCLIENT NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT={port} "
            f"DESTADDR=127.0.0.1 DESTPORT={p.implicit_port} PROTO=ESMTP "
            f"HELO={HELO} LOGIN=demo\r\n").encode(), conn["commands"]
        assert conn["commands"][1] == f"EHLO {HELO}\r\n".encode()
        assert sum(c.startswith(b"EHLO") for c in conn["commands"]) == 1
    for m in recording_backend.messages:
        assert m["xclient"]["LOGIN"] == "demo" and m["helo"] == HELO


def test_health_checks_teach_the_first_session(proxy, recording_backend):
    """With active checks, the check's EHLO is the one that teaches: the
    very first session goes XCLIENT first."""
    p = proxy([recording_backend.port],
              **{"backends.health_check": {"interval": "1s", "timeout": "2s"}})
    wait_until(lambda: len(recording_backend.connections) >= 1, 10, "a health check")
    time.sleep(0.3)  # the check's EHLO and QUIT
    checks = len(recording_backend.connections)
    send(p, "starttls")
    (m,) = recording_backend.wait_for_messages(1)
    session = [c for c in recording_backend.connections[checks - 1:] if c["xclient"]]
    assert len(session) == 1, recording_backend.connections
    assert session[0]["commands"][0].startswith(b"XCLIENT "), session


def test_a_backend_that_wants_ehlo_first_gets_it(proxy, recording_backend):
    """A server that refuses XCLIENT before EHLO (503) costs one try: the
    session goes on with EHLO, XCLIENT, EHLO and delivers; the proxy logs
    it once and asks every later session's EHLO first."""
    recording_backend.xclient_needs_ehlo = True
    p = proxy([recording_backend.port])
    for _ in range(3):
        send(p, "implicit")
    recording_backend.wait_for_messages(3)
    conns = recording_backend.connections
    assert _first_commands(conns[0])[0].startswith(b"EHLO")
    assert conns[1]["commands"][0].startswith(b"XCLIENT ")
    assert conns[1]["commands"][1] == b"EHLO mail.example.test\r\n"
    assert conns[1]["commands"][2].startswith(b"XCLIENT ")
    assert conns[1]["commands"][3] == f"EHLO {HELO}\r\n".encode()
    assert _first_commands(conns[2])[0].startswith(b"EHLO")
    for m in recording_backend.messages:
        assert m["xclient"]["LOGIN"] == "demo"
    p.wait_for_log(r"msg=backend-xclient-early backend=\S+ reply=503 "
                   r'reason="XCLIENT before EHLO refused: EHLO first from now on"')
    assert p.log().count("backend-xclient-early") == 1


def test_a_backend_whose_list_changed_is_read_again(proxy, recording_backend):
    """A server that stops taking an attribute refuses the early XCLIENT
    that still names it (501): that session reads the new list from the
    EHLO and delivers, nothing is logged, and the next session goes early
    again with the new list."""
    p = proxy([recording_backend.port])
    send(p, "implicit")
    recording_backend.xclient_attributes = ("NAME", "ADDR", "PORT", "HELO", "LOGIN")
    ports = [send(p, "implicit") for _ in range(2)]
    recording_backend.wait_for_messages(3)
    conns = recording_backend.connections
    assert conns[1]["commands"][0].startswith(b"XCLIENT ")
    assert b"DESTADDR" in conns[1]["commands"][0]
    assert conns[1]["commands"][1] == b"EHLO mail.example.test\r\n"
    assert conns[1]["commands"][2] == (
        f"XCLIENT NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT={ports[0]} "
        f"HELO={HELO} LOGIN=demo\r\n").encode()
    assert conns[2]["commands"][0] == (
        f"XCLIENT NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT={ports[1]} "
        f"HELO={HELO} LOGIN=demo\r\n").encode()
    assert conns[2]["commands"][1] == f"EHLO {HELO}\r\n".encode()
    assert "backend-xclient-early" not in p.log()


def test_attributes_not_offered_are_not_sent(proxy, recording_backend):
    """A backend offering fewer attributes (an older Postfix) gets only
    those: no DESTADDR/DESTPORT."""
    recording_backend.xclient_attributes = ("NAME", "ADDR", "PORT", "HELO", "LOGIN")
    p = proxy([recording_backend.port])
    client_port = send(p, "implicit")
    (m,) = recording_backend.wait_for_messages(1)
    assert [c for c in m["commands"] if c.startswith(b"XCLIENT")] == [
        f"XCLIENT NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT={client_port} "
        f"HELO={HELO} LOGIN=demo\r\n".encode()]


def test_smtp_sink_gets_name_and_helo_only(proxy, tmp_path):
    """smtp-sink offers "XCLIENT NAME HELO" and answers XCLIENT with 250:
    the session still goes through."""
    port = free_port()
    log = open(tmp_path / "sink.log", "wb")
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "postfix", "-v",
                             f"{LOOPBACK}:{port}", "10"], stdout=log, stderr=log)
    try:
        wait_until(lambda: _accepts(port), 10, "smtp-sink to listen")
        p = proxy([port])
        send(p, "implicit")
        p.wait_for_log(r"msg=message .*result=250")
        wait_until(lambda: b"XCLIENT" in (tmp_path / "sink.log").read_bytes(), 10,
                   "smtp-sink's trace of the XCLIENT")
        traced = (tmp_path / "sink.log").read_bytes()
        assert f"XCLIENT NAME=[UNAVAILABLE] HELO={HELO}".encode() in traced, traced
        assert b"DESTADDR" not in traced and b"LOGIN" not in traced
    finally:
        sink.terminate()
        sink.wait(10)
        log.close()


def _accepts(port):
    with socket.socket() as probe:
        return probe.connect_ex((LOOPBACK, port)) == 0


# ---------------------------------------------------------------------------
# Postfix, through its policy delegation
# ---------------------------------------------------------------------------


class PolicyServer:
    """A Postfix policy server (SMTPD_POLICY_README): reads attribute=value
    lines up to an empty line, records them, answers "action=DUNNO".
    Postfix keeps the connection for more requests.  One thread, bounded."""

    def __init__(self):
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        deadline = time.monotonic() + 300
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        with conn:
            conn.settimeout(60)
            rfile = conn.makefile("rb")
            request = {}
            try:
                for line in rfile:
                    line = line.rstrip(b"\n").decode()
                    if line:
                        key, _, value = line.partition("=")
                        request[key] = value
                        continue
                    self.requests.append(request)
                    request = {}
                    conn.sendall(b"action=DUNNO\n\n")
            except OSError:
                pass

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


class PolicyPostfix(PostfixInstance):
    def __init__(self, keep_logs_in, policy_port):
        super().__init__(keep_logs_in)
        self.policy_port = policy_port

    def _configure(self):
        super()._configure()
        main = self.etc / "main.cf"
        main.write_text(main.read_text() + "smtpd_recipient_restrictions = "
                        f"check_policy_service inet:{LOOPBACK}:{self.policy_port}\n")


@pytest.fixture(scope="module")
def policy_postfix(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the Postfix backend needs root (postfix start)")
    policy = PolicyServer()
    instance = PolicyPostfix(tmp_path_factory.mktemp("postfix-policy"), policy.port)
    try:
        instance.start()
        instance.policy = policy
        yield instance
    finally:
        try:
            instance.stop()
        finally:
            policy.close()


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_postfix_sees_the_listener_as_its_server_address(proxy, policy_postfix, mode):
    """Twice: the first session reads Postfix's EHLO before XCLIENT, the
    second sends XCLIENT right after the greeting; Postfix applies the
    client's facts to both."""
    p = proxy([policy_postfix.port])
    listener = p.starttls_port if mode == "starttls" else p.implicit_port
    for n in range(2):
        before = len(policy_postfix.policy.requests)
        client_port = send(p, mode, "alice")
        wait_until(lambda: len(policy_postfix.policy.requests) > before, 10,
                   "Postfix's policy request")
        req = policy_postfix.policy.requests[before]
        assert req["protocol_state"] == "RCPT"
        assert req["sasl_username"] == "alice"
        assert (req["client_address"], req["client_port"]) == (LOOPBACK, str(client_port))
        assert (req["server_address"], req["server_port"]) == (LOOPBACK, str(listener))
        assert req["server_port"] != str(policy_postfix.port)
        assert req["helo_name"] == HELO
    trace = re.findall(r"msg=backend-state session=\S+ backend=\S+ from=greeting to=(\S+)",
                       p.log())
    assert trace == ["ehlo", "xclient"], trace
