"""PROXY protocol in (listeners[].proxy_protocol, proxy/io/proxy_in.c,
proxy/smtp/proxy_header.c) end to end.

Headers are built here by hand (v1 text, v2 binary, per HAProxy's
proxy-protocol.txt) and sent from 127.0.0.1, which the listener trusts;
the address a header names (198.51.100.x, TEST-NET-2) is then the client
for everything: the log's client=, XCLIENT ADDR and the PROXY v2 header
to backends, the blocklist at accept and the per-network limits.  Headers
arrive whole, byte by byte, and in one segment with the EHLO or the TLS
ClientHello that follows them.  Refused: a header from an untrusted
source, none (a plain EHLO), a malformed v1 line, a v2 length over 1 KiB,
a truncated header then silence (closed at the timeout, not before).  A
v2 LOCAL (a balancer's health check) is served as the balancer itself.
Last, a real HAProxy (send-proxy-v2 and send-proxy) in front.
"""

import ipaddress
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from conftest import LOOPBACK, SERVER_NAME, free_ports, port_accepts, wait_until
from smtp_backend import FaultyBackend

PASSWORD = "demo-pass-1"
MESSAGE = b"Subject: proxied\r\n\r\nfrom behind a balancer\r\n"
TRUST_LOCAL = {"proxy_protocol": {"trusted": ["127.0.0.1/32"], "timeout": "1s"}}
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, sport, dst="192.0.2.1", dport=587):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, sport=0, dst="192.0.2.1", dport=587, command=0x21, tlvs=b"",
       length=None):
    """A v2 header; src None: AF_UNSPEC with no addresses."""
    if src is None:
        fam, body = 0x00, b""
    else:
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        fam = 0x11 if s.version == 4 else 0x21
        body = s.packed + d.packed + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    body += tlvs
    n = len(body) if length is None else length
    return V2_SIG + bytes([command, fam]) + n.to_bytes(2, "big") + body


def connect(port, header, source=LOOPBACK):
    s = socket.create_connection((LOOPBACK, port), timeout=10,
                                 source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if header:
        s.sendall(header)
    return s


class HeaderSMTP(smtplib.SMTP):
    """smtplib whose connection opens with a PROXY header."""

    def __init__(self, header, *args, **kwargs):
        self.header = header
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        return connect(port, self.header)


class HeaderSMTP_SSL(smtplib.SMTP_SSL):
    def __init__(self, header, *args, **kwargs):
        self.header = header
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        return self.context.wrap_socket(connect(port, self.header),
                                        server_hostname=self._host)


def send_message(p, header, mode="starttls"):
    """AUTH and one message through the proxy after header."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    if mode == "implicit":
        s = HeaderSMTP_SSL(header, SERVER_NAME, p.implicit_port, context=ctx,
                           timeout=20, local_hostname="client.example.test")
    else:
        s = HeaderSMTP(header, SERVER_NAME, p.starttls_port, timeout=20,
                       local_hostname="client.example.test")
        s.starttls(context=ctx)
    with s:
        s.login("demo", PASSWORD)
        s.sendmail("demo@example.test", ["rcpt@example.test"], MESSAGE)


def read_all(s, timeout):
    """Everything until the proxy closes (bytes, seconds it took)."""
    start = time.monotonic()
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - start


def metrics(port):
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("msaproxy_proxy_headers_total{"):
            label, value = line.split("} ")
            out[label.split('"')[1]] = int(value)
    return out


@pytest.fixture
def pp_proxy(proxy, recording_backend):
    """A proxy whose two listeners take PROXY headers from 127.0.0.1, with
    its metrics endpoint (.metrics_port)."""
    def start(listener=None, backends=None, **overrides):
        (mport,) = free_ports(1)
        p = proxy(backends or [recording_backend.port], listener=listener or TRUST_LOCAL,
                  **{"metrics.listen": f"{LOOPBACK}:{mport}"}, **overrides)
        p.metrics_port = mport
        return p
    return start


# ---------------------------------------------------------------------------
# The header's client, for everything
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["v1", "v2", "v1-tcp6", "v2-tcp6"])
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_header_client_reaches_backend_and_log(pp_proxy, recording_backend, form, mode):
    p = pp_proxy()
    src = "2001:db8::7" if form.endswith("tcp6") else "198.51.100.7"
    header = (v1 if form.startswith("v1") else v2)(src, 40007, dst="2001:db8::1"
                                                  if ":" in src else "192.0.2.1")
    since = p.mark()
    send_message(p, header, mode)
    (m,) = recording_backend.wait_for_messages(1)
    want = f"IPV6:{src}" if ":" in src else src
    assert m["xclient"]["ADDR"] == want
    assert m["xclient"]["PORT"] == "40007"
    assert m["content"].endswith(b"from behind a balancer\r\n")
    p.wait_for_log(rf"msg=session-start session=\S+ client={src} user=- port=40007 "
                   rf"listener=\S+ mode={mode} via=127\.0\.0\.1", since=since)
    p.wait_for_log(rf"msg=message .*client={src} user=demo", since=since)
    assert metrics(p.metrics_port)["client"] == 1


def test_header_client_in_proxy_v2_to_backend(pp_proxy):
    backend = FaultyBackend(proxy_v2=True)
    try:
        p = pp_proxy(backends=[{"address": f"{LOOPBACK}:{backend.port}",
                                "identity": "proxy-v2"}])
        send_message(p, v2("198.51.100.8", 40008), "implicit")
        wait_until(lambda: backend.messages, 10, "the message at the backend")
        assert backend.headers[0]["command"] == "PROXY"
        assert backend.headers[0]["src"] == ("198.51.100.8", 40008)
    finally:
        backend.close()


def test_header_split_byte_by_byte(pp_proxy, recording_backend):
    """A header trickled one byte per segment: the session starts when its
    last byte is in, and the EHLO that follows is whole."""
    p = pp_proxy()
    for header in (v1("198.51.100.9", 40009), v2("198.51.100.9", 40010)):
        s = connect(p.starttls_port, b"")
        try:
            for i in range(len(header)):
                s.sendall(header[i:i + 1])
                time.sleep(0.005)
            s.sendall(b"EHLO split.example.test\r\n")
            f = s.makefile("rb")
            assert f.readline().startswith(b"220 ")
            ehlo = f.readline()
            assert ehlo.startswith(b"250-"), ehlo
        finally:
            s.close()
    p.wait_for_log(r"msg=session-start .*client=198\.51\.100\.9 .*port=40010 ")


def test_header_and_ehlo_in_one_segment(pp_proxy):
    p = pp_proxy()
    for header in (v1("198.51.100.10", 1), v2("198.51.100.10", 2),
                   v2("198.51.100.10", 3, tlvs=b"\x05\x00\x04abcd")):
        s = connect(p.starttls_port, header + b"EHLO one.example.test\r\nNOOP\r\n")
        try:
            f = s.makefile("rb")
            assert f.readline().startswith(b"220 ")
            lines = [f.readline()]
            while lines[-1].startswith(b"250-") and len(lines) < 30:
                lines.append(f.readline())
            assert lines[0].startswith(b"250-") and lines[-1].startswith(b"250 "), lines
            assert f.readline().startswith(b"250 2.0.0"), "no NOOP reply"  # NOOP
        finally:
            s.close()


def test_header_and_client_hello_in_one_segment(pp_proxy):
    """Implicit TLS: the ClientHello rides in the header's segment; the
    handshake still completes and the greeting comes under TLS."""
    p = pp_proxy()
    for header in (v1("198.51.100.11", 11, dport=465), v2("198.51.100.11", 12)):
        ctx = ssl.create_default_context(cafile=str(p.ca))
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out, server_hostname=SERVER_NAME)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = out.read()
        assert hello[:1] == b"\x16"
        s = connect(p.implicit_port, header + hello)
        try:
            deadline = time.monotonic() + 10
            while True:
                assert time.monotonic() < deadline, "no handshake"
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pending = out.read()
                    if pending:
                        s.sendall(pending)
                    chunk = s.recv(65536)
                    assert chunk, "closed in the handshake"
                    inc.write(chunk)
            s.sendall(out.read())
            greeting = b""
            while not greeting.endswith(b"\r\n"):
                assert time.monotonic() < deadline, "no greeting"
                try:
                    greeting += tls.read(4096)
                except ssl.SSLWantReadError:
                    chunk = s.recv(65536)
                    assert chunk, "closed before the greeting"
                    inc.write(chunk)
            assert greeting.startswith(b"220 "), greeting
        finally:
            s.close()
    p.wait_for_log(r"msg=session-start .*client=198\.51\.100\.11 .*port=12 ")


def test_ban_on_header_address(pp_proxy):
    """The blocklist at accept sees the header's client, not the balancer:
    a ban on it refuses that client and no other."""
    p = pp_proxy()
    p.ctl("ban", "198.51.100.12")
    s = connect(p.starttls_port, v2("198.51.100.12", 1))
    data, _ = read_all(s, 5)
    s.close()
    assert data == b""
    p.wait_for_log(r"msg=session-refused .*client=198\.51\.100\.12 reason=blocklist")
    s = connect(p.starttls_port, v2("198.51.100.13", 1))
    assert s.recv(512).startswith(b"220 ")
    s.close()


def test_limits_count_the_header_address(pp_proxy):
    p = pp_proxy(**{"limits.ip.connections": "2/1h"})
    for _ in range(2):
        s = connect(p.starttls_port, v1("198.51.100.14", 1))
        assert s.recv(512).startswith(b"220 ")
        s.close()
    s = connect(p.starttls_port, v1("198.51.100.14", 1))
    refused, _ = read_all(s, 5)
    s.close()
    assert refused.startswith(b"421 4.7.0 "), refused
    p.wait_for_log(r"msg=session-refused .*client=198\.51\.100\.14 .*reason=ip-connection-rate")
    # Another client behind the same balancer is not counted with it.
    s = connect(p.starttls_port, v1("198.51.100.15", 1))
    assert s.recv(512).startswith(b"220 ")
    s.close()


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------

def refused(p, port, payload, reason, client="127.0.0.1", timeout=5):
    """payload sent, then the proxy closes without a byte, logs the reason
    (a line per reason and second at most: the first one) and counts it.
    Returns the seconds until the close."""
    before = metrics(p.metrics_port).get(reason, 0)
    s = connect(port, payload)
    data, took = read_all(s, timeout)
    s.close()
    assert data == b"", data
    p.wait_for_log(rf"msg=session-refused worker=\d+ listener=\S+ "
                   rf"client={client} reason=proxy-{reason} ")
    # At least: the start-up probes (connect, close) of an untrusted
    # listener may be counted late.
    wait_until(lambda: metrics(p.metrics_port).get(reason, 0) >= before + 1, 5,
               f"msaproxy_proxy_headers_total{{result={reason}}} to count it")
    return took


def test_untrusted_source_closed(pp_proxy):
    p = pp_proxy(listener={"proxy_protocol": {"trusted": ["198.51.100.0/24"]}})
    refused(p, p.starttls_port, v2("198.51.100.1", 1), "untrusted")
    refused(p, p.implicit_port, v1("198.51.100.1", 1), "untrusted")
    refused(p, p.starttls_port, b"", "untrusted")


def test_missing_malformed_oversize_closed_at_once(pp_proxy):
    p = pp_proxy(listener={"proxy_protocol": {"trusted": ["127.0.0.1/32"],
                                              "timeout": "30s"}})
    # Each well before the 30 s timeout: nothing waits for it.
    assert refused(p, p.starttls_port, b"EHLO direct.example.test\r\n", "missing") < 10
    assert refused(p, p.implicit_port, b"\x16\x03\x01\x00\xf0\x01", "missing") < 10
    for bad in (b"PROXY TCP4 198.51.100.1 192.0.2.1 1\r\n",
                b"PROXY TCP4 198.51.100.1 192.0.2.1 1 99999\r\n",
                b"PROXY TCP4 198.51.100.1  192.0.2.1 1 2\r\n",
                b"PROXY " + b"x" * 120,
                V2_SIG + b"\x31\x11\x00\x0c" + bytes(12)):
        assert refused(p, p.starttls_port, bad, "malformed") < 10
    assert refused(p, p.starttls_port, v2("198.51.100.1", 1, length=0xffff),
                   "oversize") < 10
    assert refused(p, p.starttls_port, v2("198.51.100.1", 1, length=1025),
                   "oversize") < 10
    # 1 KiB of TLVs is still a header.
    tlv = b"\xe1" + (1024 - 12 - 3).to_bytes(2, "big") + bytes(1024 - 12 - 3)
    s = connect(p.starttls_port, v2("198.51.100.2", 1, tlvs=tlv))
    assert s.recv(512).startswith(b"220 ")
    s.close()


def test_truncated_header_closed_at_the_timeout(pp_proxy):
    p = pp_proxy()  # timeout: 1s
    took = refused(p, p.starttls_port, b"PROXY TCP4 198.51.", "truncated", timeout=10)
    assert took >= 0.8, took
    took = refused(p, p.implicit_port, v2("198.51.100.3", 1)[:20], "truncated",
                   timeout=10)
    assert took >= 0.8, took
    took = refused(p, p.starttls_port, b"", "timeout", timeout=10)
    assert took >= 0.8, took


def test_v2_local_is_the_balancer(pp_proxy, recording_backend):
    """LOCAL (a balancer's own health check): the session goes on as the
    balancer, as proxy-protocol.txt says; so does v1 UNKNOWN."""
    p = pp_proxy()
    since = p.mark()
    s = connect(p.starttls_port, v2(command=0x20) + b"QUIT\r\n")
    data, _ = read_all(s, 5)
    s.close()
    assert data.startswith(b"220 ") and b"221 " in data, data
    p.wait_for_log(r"msg=session-start session=\S+ client=127\.0\.0\.1 .*via=127\.0\.0\.1",
                   since=since)
    assert metrics(p.metrics_port)["local"] == 1
    send_message(p, b"PROXY UNKNOWN\r\n")
    (m,) = recording_backend.wait_for_messages(1)
    assert m["xclient"]["ADDR"] == "127.0.0.1"
    assert metrics(p.metrics_port)["local"] == 2


def test_config_errors_at_check_and_reload(pp_proxy, tmp_path):
    p = pp_proxy()
    p.rewrite_config(**{"listeners": [
        {"address": f"{LOOPBACK}:{p.starttls_port}", "mode": "starttls",
         "proxy_protocol": {"trusted": ["10.0.0.1/8"]}}]})
    r = subprocess.run([p.proc.args[0], "-t", "-c", str(p.config_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "listeners[0].proxy_protocol.trusted[0]: host bits set" in r.stderr, r.stderr
    r = p.ctl("reload", check=False)
    assert r.returncode == 1
    assert "listeners[0].proxy_protocol.trusted[0]" in r.stderr, r.stderr
    # The running rules stand.
    s = connect(p.starttls_port, v1("198.51.100.4", 1))
    assert s.recv(512).startswith(b"220 ")
    s.close()


# ---------------------------------------------------------------------------
# A real HAProxy in front
# ---------------------------------------------------------------------------

HAPROXY_CFG = """\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v2_starttls
    bind 127.0.0.1:{f1}
    default_backend v2_starttls
backend v2_starttls
    server msa 127.0.0.1:{starttls} send-proxy-v2 source 127.0.0.2
frontend v2_implicit
    bind 127.0.0.1:{f2}
    default_backend v2_implicit
backend v2_implicit
    server msa 127.0.0.1:{implicit} send-proxy-v2 source 127.0.0.2
frontend v1_starttls
    bind 127.0.0.1:{f3}
    default_backend v1_starttls
backend v1_starttls
    server msa 127.0.0.1:{starttls} send-proxy source 127.0.0.2
"""


@pytest.fixture
def haproxy(tmp_path):
    procs = []

    def start(p):
        ports = free_ports(3)
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(f1=ports[0], f2=ports[1], f3=ports[2],
                                          starttls=p.starttls_port,
                                          implicit=p.implicit_port))
        log = open(tmp_path / "haproxy.log", "wb")
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        procs.append((proc, log))
        wait_until(lambda: proc.poll() is not None or all(port_accepts(x) for x in ports),
                   10, "haproxy to listen")
        assert proc.poll() is None, (tmp_path / "haproxy.log").read_text()
        return ports

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_behind_haproxy(pp_proxy, recording_backend, haproxy):
    """HAProxy's send-proxy-v2 and send-proxy: the proxy sees HAProxy
    (127.0.0.2, the only trusted source), the backend and the log the
    client (127.0.0.5)."""
    p = pp_proxy(listener={"proxy_protocol": {"trusted": ["127.0.0.2/32"]}})
    fronts = haproxy(p)
    ctx = ssl.create_default_context(cafile=str(p.ca))
    for i, port in enumerate(fronts):
        if i == 1:
            s = smtplib.SMTP_SSL(LOOPBACK, port, context=ctx, timeout=20,
                                 source_address=("127.0.0.5", 0),
                                 local_hostname="client.example.test")
        else:
            s = smtplib.SMTP(LOOPBACK, port, timeout=20,
                             source_address=("127.0.0.5", 0),
                             local_hostname="client.example.test")
            s.starttls(context=ctx)
        with s:
            client_port = s.sock.getsockname()[1]
            s.login("demo", PASSWORD)
            s.sendmail("demo@example.test", ["rcpt@example.test"], MESSAGE)
        msgs = recording_backend.wait_for_messages(i + 1)
        assert msgs[i]["xclient"]["ADDR"] == "127.0.0.5"
        assert msgs[i]["xclient"]["PORT"] == str(client_port)
        p.wait_for_log(rf"msg=session-start session=\S+ client=127\.0\.0\.5 "
                       rf"user=- port={client_port} .*via=127\.0\.0\.2")
    # A client that goes around HAProxy is refused: it is not trusted.
    s = connect(p.starttls_port, b"EHLO direct\r\n")
    data, _ = read_all(s, 5)
    s.close()
    assert data == b""
    p.wait_for_log(r"client=127\.0\.0\.1 reason=proxy-untrusted")



def test_drain_ends_header_reads(pp_proxy):
    """A stop does not wait for a header that may never come: the
    connection is closed and the proxy exits long before the header's
    timeout (60 s here)."""
    p = pp_proxy(listener={"proxy_protocol": {"trusted": ["127.0.0.1/32"],
                                              "timeout": "60s"}})
    s = connect(p.starttls_port, b"PROXY TCP4 198.51.")
    try:
        time.sleep(0.3)  # the header's first bytes are in
        start = time.monotonic()
        p.exit_expected = True
        p.proc.send_signal(signal.SIGTERM)
        p.proc.wait(timeout=30)
        assert p.proc.returncode == 0
        assert time.monotonic() - start < 30
        data, _ = read_all(s, 5)
        assert data == b""
    finally:
        s.close()


def test_header_across_a_reload(pp_proxy, recording_backend):
    """A connection still reading its header when a reload comes is
    admitted under the listener of the new configuration once the header
    is whole (the old configuration held until then)."""
    p = pp_proxy(listener={"proxy_protocol": {"trusted": ["127.0.0.1/32"],
                                              "timeout": "30s"}})
    header = v2("198.51.100.16", 40016)
    s = connect(p.starttls_port, header[:10])
    try:
        since = p.mark()
        p.rewrite_config(**{"limits.max_recipients": 7})
        p.ctl("reload")
        p.wait_for_log(r"msg=reload", since=since)
        s.sendall(header[10:] + b"EHLO after.example.test\r\n")
        f = s.makefile("rb")
        assert f.readline().startswith(b"220 ")
        assert f.readline().startswith(b"250-")
    finally:
        s.close()
    p.wait_for_log(r"msg=session-start .*client=198\.51\.100\.16 .*port=40016 ")
