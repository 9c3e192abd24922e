"""The backend pool end to end: balance policies, health checks, failover.

Real backends on free loopback ports, started here: aiosmtpd recording
backends (smtp_backend.py), Postfix's smtp-sink, and small socket servers
for the faults (a 421 greeting, a connection cut mid-DATA).  Each test is
bounded by the conftest deadline.
"""

import re
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import LOOPBACK, free_port, free_ports, wait_until
from smtp_backend import FaultyBackend, RecordingBackend

MESSAGE = "Subject: pool\r\n\r\nbody\r\n"


PASSWORDS = {"demo": "demo-pass-1", "alice": "alice-pass-2", "bob": "bob-pass-3"}


def login(p, user="demo"):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=15)
    s.login(user, PASSWORDS[user])
    return s


def send_one(p, user="demo"):
    with login(p, user) as s:
        s.sendmail(f"{user}@example.test", ["rcpt@example.test"], MESSAGE)


def entry(port, **extra):
    return {"address": f"{LOOPBACK}:{port}", "identity": "xclient", **extra}


@pytest.fixture
def backends():
    """Factory: backends(n) starts n recording backends, stopped after."""
    started = []

    def start(n):
        new = [RecordingBackend() for _ in range(n)]
        for b in new:
            b.start()
            started.append(b)
        return new

    yield start
    for b in started:
        try:
            b.stop()
        except Exception:  # already stopped by the test
            pass


def restart_on(port):
    """A new recording backend on a port a stopped one used."""
    deadline = time.monotonic() + 10
    while True:
        b = RecordingBackend(port=port)
        try:
            b.start()
            return b
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def faulty():
    made = []

    def make(**kwargs):
        f = FaultyBackend(**kwargs)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


# ---------------------------------------------------------------------------
# Balance policies
# ---------------------------------------------------------------------------


def test_weighted_round_robin_spread(proxy, backends):
    a, b = backends(2)
    p = proxy([entry(a.port, weight=3), entry(b.port, weight=1)], workers=1)
    for _ in range(8):
        send_one(p)
    assert len(a.wait_for_messages(6)) == 6
    assert len(b.wait_for_messages(2)) == 2


def test_smtp_sink_in_the_pool(proxy, backends, tmp_path):
    """Postfix's smtp-sink next to aiosmtpd: both get their share."""
    (a,) = backends(1)
    port = free_port()
    log = open(tmp_path / "sink.log", "wb")
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "postfix", "-c",
                             f"{LOOPBACK}:{port}", "10"], stdout=log, stderr=log)
    try:
        wait_until(lambda: _accepts(port), 10, "smtp-sink to listen")
        p = proxy([entry(a.port), entry(port)], workers=1)
        for _ in range(4):
            send_one(p)
        assert len(a.wait_for_messages(2)) == 2
        assert "backend-failed" not in p.log()
    finally:
        sink.terminate()
        sink.wait(10)
        log.close()


def _accepts(port):
    with socket.socket() as probe:
        return probe.connect_ex((LOOPBACK, port)) == 0


def test_least_connections(proxy, backends):
    """Sessions held open after MAIL: each new one goes to the backend
    with fewer open connections (counted across both workers)."""
    a, b = backends(2)
    p = proxy([entry(a.port), entry(b.port)],
              **{"backends.balance": "least-connections"})
    held = []
    try:
        for i in range(4):
            s = login(p)
            assert s.mail("demo@example.test")[0] == 250
            held.append(s)
            wait_until(lambda: len(a.connections) + len(b.connections) == i + 1,
                       10, "the backend connection")
        assert (len(a.connections), len(b.connections)) == (2, 2)
    finally:
        for s in held:
            s.close()


def test_hash_login_sticks_and_moves_only_the_dead_backends_users(proxy, backends):
    bs = backends(3)
    p = proxy([entry(b.port) for b in bs],
              **{"backends.balance": "hash-login",
                 "backends.health_check": {"fall": 1}})
    users = ["demo", "alice", "bob"]

    def where(user, n_before):
        for i, b in enumerate(bs):
            for m in b.messages[n_before[i]:]:
                if m["xclient"].get("LOGIN") == user:
                    return i
        return None

    home = {}
    for user in users:
        for _ in range(3):
            before = [len(b.messages) for b in bs]
            send_one(p, user)
            wait_until(lambda: where(user, before) is not None, 10, "delivery")
            i = where(user, before)
            assert home.setdefault(user, i) == i, f"{user} moved"

    # Stop a backend that has users; only they move.
    dead = home["demo"]
    bs[dead].stop()
    for user in users:
        before = [len(b.messages) for b in bs]
        send_one(p, user)
        wait_until(lambda: where(user, before) is not None, 10, "delivery")
        i = where(user, before)
        if home[user] == dead:
            assert i != dead
        else:
            assert i == home[user], f"{user} moved though its backend is up"
    p.wait_for_log(rf"msg=backend-down backend=127\.0\.0\.1:{bs[dead].port} "
                   r"source=session")


# ---------------------------------------------------------------------------
# Failover
# ---------------------------------------------------------------------------


def test_failover_when_first_backend_refuses(proxy, backends, faulty):
    """A backend that greets with 421 and one that refuses connections:
    every message still lands on the good one; after fall failures the
    bad ones are marked down and skipped."""
    (good,) = backends(1)
    busy = faulty(greeting=b"421 4.3.2 busy, try later\r\n")
    refused = free_port()
    p = proxy([entry(busy.port), entry(refused), entry(good.port)], workers=1,
              **{"backends.health_check": {"fall": 2}})
    down = re.compile(r"msg=backend-down backend=127\.0\.0\.1:(\d+)")
    sent = 0
    while len(set(down.findall(p.log()))) < 2 and sent < 15:
        send_one(p)
        sent += 1
    assert len(good.wait_for_messages(sent)) == sent
    p.wait_for_log(r"msg=backend-failed .*step=greeting")
    p.wait_for_log(r"msg=backend-failed .*step=connect")
    p.wait_for_log(rf"msg=backend-down backend=127\.0\.0\.1:{busy.port} "
                   r"source=session reason=\"greeting: unexpected reply 421\"")
    p.wait_for_log(rf"msg=backend-down backend=127\.0\.0\.1:{refused} source=session")
    # Down: no more attempts at either (down_time 30s).
    tries = busy.connections
    mark = p.mark()
    for _ in range(3):
        send_one(p)
    assert busy.connections == tries
    assert "backend-failed" not in p.log()[mark:]


def test_all_backends_down_gives_451_4_4_1(proxy):
    p = proxy(free_ports(2))
    with login(p) as s:
        code, text = s.mail("demo@example.test")
        assert code == 451 and text.startswith(b"4.4.1"), (code, text)
        assert s.noop()[0] == 250  # the session goes on
    p.wait_for_log(r"msg=backend-unavailable .*tried=2")


# ---------------------------------------------------------------------------
# Health checks
# ---------------------------------------------------------------------------

HEALTH = {"interval": "1s", "timeout": "2s", "rise": 2, "fall": 2}


def test_health_checks_take_a_dead_backend_out_and_back(proxy, backends):
    a, b = backends(2)
    port = a.port
    p = proxy([entry(a.port), entry(b.port)], workers=1,
              **{"backends.health_check": HEALTH})
    send_one(p)
    send_one(p)
    assert len(a.wait_for_messages(1)) == 1 and len(b.wait_for_messages(1)) == 1

    a.stop()
    p.wait_for_log(rf"msg=backend-down backend=127\.0\.0\.1:{port} source=check "
                   r"reason=\"connect: Connection refused\"", timeout=15)
    mark = p.mark()
    for _ in range(4):
        send_one(p)
    assert len(b.wait_for_messages(5)) == 5
    # Skipped, not tried and failed over.
    assert "backend-failed" not in p.log()[mark:]

    back = restart_on(port)
    try:
        p.wait_for_log(rf"msg=backend-up backend=127\.0\.0\.1:{port} source=check",
                       timeout=15, since=mark)
        for _ in range(4):
            send_one(p)
        assert len(back.wait_for_messages(2)) >= 2
    finally:
        back.stop()


def test_health_check_requires_what_the_backend_is_configured_for(proxy, backends):
    """identity xclient but no XCLIENT offered: down, with the reason."""
    a, b = backends(2)
    a.advertise_xclient = False
    p = proxy([entry(a.port), entry(b.port)], workers=1,
              **{"backends.health_check": HEALTH})
    p.wait_for_log(rf"msg=backend-down backend=127\.0\.0\.1:{a.port} source=check "
                   r"reason=\"ehlo: XCLIENT not offered\"", timeout=15)
    mark = p.mark()
    for _ in range(3):
        send_one(p)
    assert len(b.wait_for_messages(3)) == 3
    assert a.messages == []
    assert "backend-failed" not in p.log()[mark:]


# ---------------------------------------------------------------------------
# Nothing lost
# ---------------------------------------------------------------------------


def test_backend_dying_mid_data_gives_4xx_never_250(proxy, faulty):
    """The backend dies while the client is still sending: the client gets
    4xx at its end of data, the backend never sees that end.  The client
    sends its last bytes only once the proxy has seen the backend go, so
    the order never depends on the machine (had all of it arrived first,
    the proxy would be waiting for the verdict, answer 451 at once and log
    backend-lost alone, without message-refused)."""
    dying = faulty(die_in_data=30000)
    p = proxy([{"address": f"{LOOPBACK}:{dying.port}", "identity": "none"}])
    body = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 1000
    with login(p) as s:
        assert s.mail("demo@example.test")[0] == 250
        assert s.rcpt("rcpt@example.test")[0] == 250
        s.putcmd("data")
        assert s.getreply()[0] == 354
        s.send(body[:100000])  # past the 30,000 bytes the backend takes
        p.wait_for_log(r"msg=backend-lost ")
        s.send(body[100000:] + b".\r\n")
        code, text = s.getreply()
        assert 400 <= code < 500, (code, text)
        assert s.noop()[0] == 250
    assert not dying.received_end
    p.wait_for_log(r"msg=message-refused .*reason=backend-lost")
    assert not re.search(r"msg=message .*result=250", p.log())


# ---------------------------------------------------------------------------
# What the backend is told
# ---------------------------------------------------------------------------


def test_proxy_v2_header_reaches_the_backend(proxy, faulty):
    """identity proxy-v2: the backend's first bytes are a PROXY v2 header
    with the client's address and port, the listener's, the login and the
    TLS facts; health checks send LOCAL headers."""
    pb = faulty(proxy_v2=True)
    p = proxy([{"address": f"{LOOPBACK}:{pb.port}", "identity": "proxy-v2"}],
              **{"backends.health_check": HEALTH})
    wait_until(lambda: any(h["command"] == "LOCAL" for h in pb.headers), 10,
               "a health check's LOCAL header")
    with login(p, "alice") as s:
        client_port = s.sock.getsockname()[1]
        s.sendmail("alice@example.test", ["rcpt@example.test"], MESSAGE)
    wait_until(lambda: pb.messages, 10, "the message")
    (h,) = [h for h in pb.headers if h["command"] == "PROXY"]
    assert h["src"] == (LOOPBACK, client_port)
    assert h["dst"] == (LOOPBACK, p.implicit_port)
    assert h["tlvs"][0xE0] == b"alice"
    assert re.fullmatch(rb"[0-9a-f]+", h["tlvs"][0x05])
    assert h["ssl"]["client"] & 0x01
    assert h["ssl"][0x21] in (b"TLSv1.3", b"TLSv1.2")
    assert h["ssl"][0x23]
    assert b"Subject: pool" in pb.messages[0]
    # The unique ID is the session in the proxy's log.
    p.wait_for_log(rf"msg=message session={h['tlvs'][0x05].decode()} .*result=250")


# ---------------------------------------------------------------------------
# TLS to the backend
# ---------------------------------------------------------------------------


def tls_backend(certs):
    """A recording backend that offers STARTTLS with the test CA's
    certificate for mail.example.test, localhost and 127.0.0.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.ecdsa_cert), str(certs.ecdsa_key))
    b = RecordingBackend()
    b.controller.SMTP_kwargs["tls_context"] = ctx
    return b


def other_ca(tmp_path):
    """A CA of its own, made with openssl here: it signed nothing."""
    key, crt = tmp_path / "other-ca.key", tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-subj", "/CN=other test CA"],
                   check=True, capture_output=True, timeout=30)
    return crt


def test_backend_starttls_with_verification(proxy, certs):
    b = tls_backend(certs)
    b.start()
    try:
        p = proxy([entry(b.port, tls="starttls-verify", ca_file=str(certs.ca),
                         name="mail.example.test")])
        send_one(p, "alice")
        (m,) = b.wait_for_messages(1)
        cmds = [c.split(b" ")[0].strip().upper() for c in m["commands"]]
        assert cmds[:5] == [b"EHLO", b"STARTTLS", b"EHLO", b"XCLIENT", b"EHLO"], cmds
        assert m["xclient"]["LOGIN"] == "alice"
        p.wait_for_log(r"msg=backend-tls .*version=TLSv1\.[23]")
        # A message bigger than every buffer on the way crosses intact.
        big = b"Subject: big\r\n\r\n" + b"".join(
            b"%06d " % i + b"x" * 90 + b"\r\n" for i in range(30000))
        with login(p) as s:
            s.sendmail("demo@example.test", ["rcpt@example.test"], big)
        assert b.wait_for_messages(2)[1]["content"] == big
    finally:
        b.stop()


def test_backend_tls_that_does_not_verify_is_not_used(proxy, certs, tmp_path):
    """Wrong CA, then wrong name: the handshake fails, the session fails
    over (here: to nothing, 451 4.4.1); nothing goes in plaintext."""
    b = tls_backend(certs)
    b.start()
    try:
        for extra in ({"ca_file": str(other_ca(tmp_path))},
                      {"ca_file": str(certs.ca), "name": "wrong.example.test"}):
            p = proxy([entry(b.port, tls="starttls-verify", **extra)])
            with login(p) as s:
                code, text = s.mail("demo@example.test")
                assert code == 451 and text.startswith(b"4.4.1"), (code, text)
            p.wait_for_log(r"msg=backend-failed .*step=tls error=.*certificate verify failed")
        assert b.messages == []
        assert not any(c.upper().startswith(b"MAIL") for c in b.commands)
    finally:
        b.stop()


def test_backend_without_starttls_is_down(proxy, backends, certs):
    """tls: starttls on a server that does not offer it: sessions fail
    over to the other one, health checks mark it down."""
    plain, good = backends(2)
    p = proxy([entry(plain.port, tls="starttls"), entry(good.port)], workers=1,
              **{"backends.health_check": HEALTH})
    p.wait_for_log(rf"msg=backend-down backend=127\.0\.0\.1:{plain.port} source=check "
                   r"reason=\"ehlo: STARTTLS not offered\"", timeout=15)
    for _ in range(3):
        send_one(p)
    assert len(good.wait_for_messages(3)) == 3
    assert plain.messages == []


# ---------------------------------------------------------------------------
# Capabilities
# ---------------------------------------------------------------------------


def test_size_is_the_smaller_and_enforced(proxy, faulty):
    """A backend with SIZE 20000 (seen by the health checks): clients are
    offered 20000, a bigger SIZE= is refused at MAIL, and a bigger message
    without SIZE= is cut by the proxy (the backend never sees its end);
    DSN and SMTPUTF8 are passed on when the backend offers them."""
    b = faulty(ehlo=b"250-SIZE 20000\r\n250-DSN\r\n250-SMTPUTF8\r\n250 8BITMIME")
    p = proxy([{"address": f"{LOOPBACK}:{b.port}", "identity": "none"}],
              **{"backends.health_check": HEALTH})
    p.wait_for_log(r"msg=backend-check .*result=ok")
    with login(p) as s:
        s.ehlo("client.test")
        assert s.esmtp_features["size"] == "20000"
        assert "dsn" in s.esmtp_features and "smtputf8" in s.esmtp_features
        code, _ = s.mail("demo@example.test", ["SIZE=30000"])
        assert code == 552
        s.rset()
        big = b"Subject: big\r\n\r\n" + (b"z" * 98 + b"\r\n") * 300
        assert s.mail("demo@example.test")[0] == 250  # no SIZE=
        assert s.rcpt("rcpt@example.test")[0] == 250
        assert s.data(big)[0] == 552
        s.sendmail("demo@example.test", ["rcpt@example.test"], MESSAGE,
                   mail_options=["RET=HDRS"], rcpt_options=["NOTIFY=FAILURE"])
    wait_until(lambda: b.messages, 10, "the small message")
    assert len(b.messages) == 1 and b"Subject: pool" in b.messages[0]
    p.wait_for_log(r"msg=message-refused .*reason=too-big")


def test_no_reply_after_data_gives_451(proxy, faulty):
    """The backend has the whole message but never answers: after
    backends.data_timeout the client gets 451 (and will retry; this is the
    RFC 1047 duplicate window, docs/BACKENDS.md), never 250."""
    b = faulty(hang_after_data=True)
    p = proxy([{"address": f"{LOOPBACK}:{b.port}", "identity": "none"}],
              **{"backends.data_timeout": "2s"})
    with login(p) as s:
        assert s.mail("demo@example.test")[0] == 250
        assert s.rcpt("rcpt@example.test")[0] == 250
        code, text = s.data(MESSAGE.encode())
        assert code == 451 and text.startswith(b"4.4.2"), (code, text)
    assert len(b.messages) == 1
    p.wait_for_log(r"msg=backend-timeout .*state=wait-data-end")


def test_real_postfix_in_the_pool(proxy, postfix_backend, backends):
    """A real Postfix and an aiosmtpd backend, hash-login: each user's mail
    lands on one of them, and Postfix logs the XCLIENT login."""
    (rec,) = backends(1)
    p = proxy([entry(postfix_backend.port), entry(rec.port)],
              **{"backends.balance": "hash-login",
                 "backends.health_check": HEALTH})
    since = postfix_backend.mark()
    for user in ("demo", "alice", "bob"):
        for _ in range(2):
            send_one(p, user)
    on_rec = {m["xclient"]["LOGIN"] for m in rec.messages}
    assert len(rec.messages) == 2 * len(on_rec)  # both of a user's, or none
    for user in {"demo", "alice", "bob"} - on_rec:
        found = postfix_backend.wait_for_log(
            rf"postfix/smtpd\[\d+\]: (\w+): client=\S*\[127\.0\.0\.1\], "
            rf"sasl_method=XCLIENT, sasl_username={user}$", since=since)
        assert found
        assert len(re.findall(rf"sasl_username={user}$", postfix_backend.log_text()[since:],
                              re.MULTILINE)) == 2
