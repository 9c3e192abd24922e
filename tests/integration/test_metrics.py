"""The Prometheus endpoint end to end (proxy/ops/metrics_http.c, metrics.c,
counters.h, the collection in server.c).

Every scrape is parsed strictly as the text format 0.0.4 (HELP and TYPE
before each family's samples, valid names, msaproxy_ prefix, counters in
_total, lower_snake label names, no series twice, histogram buckets
cumulative up to +Inf == _count).  Real sessions (a submission, a wrong
password, a limit hit, a ban through msaproxyctl, a broken TLS client)
must move exactly the counters they concern, by exactly their amount.
Bad HTTP requests get their status and a log line; silent and slow
clients are cut after the endpoint's 5 s without holding anything up.
"""

import base64
import collections
import re
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import LOOPBACK, MSAPROXY_BIN, config_check, free_port, raw_greeting, wait_until

MSG = b"Subject: metrics\r\n\r\nhello metrics\r\n"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_TIMEOUT_S = 5  # the endpoint's request and answer time limit

# ---------------------------------------------------------------------------
# The exposition format, strictly
# ---------------------------------------------------------------------------

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
SAMPLE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z")
LABEL_RE = re.compile(r'([a-z_][a-z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


class Metrics:
    """Parsed samples: {(name, frozenset(labels)): value}; types by family."""

    def __init__(self, samples, types):
        self.samples = samples
        self.types = types

    def get(self, name, **labels):
        """The value of exactly that series (it must exist)."""
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no series {name}{labels}"
        return self.samples[key]

    def sum(self, name, **labels):
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items()
                   if n == name and want <= set(ls))

    def has(self, name):
        return any(k[0] == name for k in self.samples)


def parse_exposition(text):
    assert text.endswith("\n"), "the text must end with a newline"
    samples, types, helped = {}, {}, set()
    family = typ = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert NAME_RE.match(name) and name.startswith("msaproxy_"), line
            assert help_text.strip(), f"empty HELP: {line}"
            assert name not in helped, f"family {name} written twice"
            helped.add(name)
            family, typ = name, None
            continue
        if line.startswith("# TYPE "):
            name, _, t = line[7:].partition(" ")
            assert name == family and typ is None, f"TYPE out of place: {line}"
            assert t in ("counter", "gauge", "histogram", "summary"), line
            assert name.endswith("_total") == (t == "counter"), \
                f"counters and only counters end in _total: {line}"
            typ = types[name] = t
            continue
        assert line and not line.startswith("#"), f"stray line {line!r}"
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample: {line!r}"
        name, labeltext, value = m.groups()
        assert typ is not None, f"sample before its TYPE: {line}"
        if typ == "histogram":
            assert name in (family + "_bucket", family + "_sum", family + "_count"), line
        elif typ == "summary":  # fleet mode's round trip: _sum and _count
            assert name in (family + "_sum", family + "_count"), line
        else:
            assert name == family, f"{line} inside family {family}"
        labels = {}
        pos = 0
        while labeltext and pos < len(labeltext):
            lm = LABEL_RE.match(labeltext, pos)
            assert lm, f"bad labels: {line}"
            assert lm.group(1) not in labels, line
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
            if pos < len(labeltext):
                assert labeltext[pos] == ",", line
                pos += 1
        assert name.endswith("_bucket") == ("le" in labels), line
        v = float(value)
        assert v >= 0 or typ == "gauge", line
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"series twice: {line}"
        samples[key] = v
    check_histograms(samples, types)
    return Metrics(samples, types)


def check_histograms(samples, types):
    for fam in (f for f, t in types.items() if t == "histogram"):
        buckets = collections.defaultdict(list)
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                buckets[frozenset(d.items())].append((float(le), v))
        for rest, bs in buckets.items():
            bs.sort()
            assert bs[-1][0] == float("inf"), f"{fam}{dict(rest)}: no +Inf bucket"
            values = [v for _, v in bs]
            assert values == sorted(values), f"{fam}{dict(rest)}: not cumulative"
            assert samples[(fam + "_count", rest)] == values[-1]
            assert (fam + "_sum", rest) in samples


def scrape(port):
    """GET /metrics with urllib: 200, the right Content-Type, parsed."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics",
                                timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == CONTENT_TYPE
        assert r.headers["Connection"] == "close"
        body = r.read()
        assert int(r.headers["Content-Length"]) == len(body)
    return parse_exposition(body.decode())


def scrape_curl(port):
    """The same with curl, as an operator would."""
    proc = subprocess.run(["curl", "-sS", "--max-time", "10", "-D", "-",
                           f"http://{LOOPBACK}:{port}/metrics"],
                          capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    return parse_exposition(body.decode())


def counter_deltas(before, after, families):
    """{(name, labels): change} for every series of families that moved."""
    out = {}
    for key, v in after.samples.items():
        if key[0] in families or key[0].rsplit("_", 1)[0] in families:
            d = v - before.samples.get(key, 0.0)
            if d:
                out[key] = d
    return out


def key(name, **labels):
    return (name, frozenset(labels.items()))


def wait_sessions_ended(p, before, n):
    """The first scrape that shows n more sessions ended than before and
    none open (sessions are counted as they end, after the client left)."""
    def check():
        m = scrape(p.metrics_port)
        done = m.sum("msaproxy_sessions_total") - before.sum("msaproxy_sessions_total")
        return m if done >= n and m.get("msaproxy_sessions_active") == 0 else None
    return wait_until(check, 10, f"{n} sessions to end")


def metrics_proxy(proxy, backends, **overrides):
    port = free_port()
    p = proxy(backends, **{"metrics.listen": f"{LOOPBACK}:{port}"}, **overrides)
    p.metrics_port = port
    p.wait_for_log(rf"msg=ready .*metrics={LOOPBACK}:{port}")

    # The fixture's readiness probes are sessions too: wait until each has
    # been accepted (the proxy may not have yet), ended and been counted, so
    # a test's "before" is a still picture.
    def settled():
        m = scrape(port)
        return (m.get("msaproxy_connections_accepted_total") == p.probes and
                m.get("msaproxy_sessions_active") == 0 and
                m.sum("msaproxy_sessions_total") == p.probes)
    wait_until(settled, 10, "the readiness probes to be counted")
    return p


def tls_client(p, implicit, version=None):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if implicit:
        return smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=15)
    s = smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15)
    s.starttls(context=ctx)
    return s


# ---------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------

MOVING = {
    "msaproxy_connections_accepted_total", "msaproxy_sessions_total",
    "msaproxy_tls_handshakes_total", "msaproxy_tls_handshake_failures_total",
    "msaproxy_auth_total", "msaproxy_limit_hits_total", "msaproxy_messages_total",
    "msaproxy_data_bytes_total", "msaproxy_bans_total",
    "msaproxy_blocklist_refused_connections_total",
    "msaproxy_backend_connect_seconds", "msaproxy_backend_transaction_seconds",
}


def test_sessions_move_exactly_their_counters(proxy, recording_backend):
    p = metrics_proxy(proxy, [recording_backend.port],
                      **{"limits.user": {"messages": "1/1h"},
                         "limits.max_recipients": 2})
    starttls = f"{LOOPBACK}:{p.starttls_port}"
    implicit = f"{LOOPBACK}:{p.implicit_port}"
    backend = f"{LOOPBACK}:{recording_backend.port}"
    before = scrape(p.metrics_port)
    assert before.get("msaproxy_sessions_active") == 0

    # 1. A submission over STARTTLS (AUTH PLAIN), three recipients: the
    # third is over limits.max_recipients, the message goes to two.
    with tls_client(p, implicit=False) as s:
        s.login("demo", "demo-pass-1")
        refused = s.sendmail("a@example.test",
                             ["r1@example.test", "r2@example.test", "r3@example.test"],
                             MSG)
        assert list(refused) == ["r3@example.test"]
        assert scrape(p.metrics_port).get("msaproxy_sessions_active") == 1
    recording_backend.wait_for_messages(1)

    # 2. A wrong password, AUTH LOGIN, on the implicit TLS port.
    with tls_client(p, implicit=True) as s:
        s.ehlo()
        s.user, s.password = "demo", "wrong-password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("LOGIN", s.auth_login)

    # 3. The right password with LOGIN over TLS 1.2, then a message over
    # the user's limit (messages: 1/1h): 451 4.7.1, the backend sees
    # nothing.
    with tls_client(p, implicit=True, version=ssl.TLSVersion.TLSv1_2) as s:
        s.ehlo()
        s.user, s.password = "demo", "demo-pass-1"
        assert s.auth("LOGIN", s.auth_login)[0] == 235
        code, text = s.mail("a@example.test")
        assert code == 451 and text.startswith(b"4.7.1"), (code, text)

    # 4. A ban through msaproxyctl; a client of that network is closed at
    # accept, before a byte.
    p.ctl("ban", "127.0.0.2/32")
    assert raw_greeting(p.starttls_port, "127.0.0.2") == b""

    # 5. Plaintext on the implicit TLS port: a handshake that fails.
    with socket.create_connection((LOOPBACK, p.implicit_port), timeout=10) as c:
        c.sendall(b"EHLO plain.example\r\n")
        c.recv(4096)

    after = wait_sessions_ended(p, before, 5)
    expected = {
        key("msaproxy_connections_accepted_total"): 5,
        key("msaproxy_sessions_total", listener=starttls, outcome="ok"): 1,
        key("msaproxy_sessions_total", listener=starttls, outcome="refused"): 1,
        key("msaproxy_sessions_total", listener=implicit, outcome="ok"): 2,
        key("msaproxy_sessions_total", listener=implicit, outcome="tls_failed"): 1,
        key("msaproxy_tls_handshakes_total", version="TLSv1.3"): 2,
        key("msaproxy_tls_handshakes_total", version="TLSv1.2"): 1,
        key("msaproxy_tls_handshake_failures_total", version="unknown"): 1,
        key("msaproxy_auth_total", mechanism="plain", result="success"): 1,
        key("msaproxy_auth_total", mechanism="login", result="failure"): 1,
        key("msaproxy_auth_total", mechanism="login", result="success"): 1,
        key("msaproxy_limit_hits_total", kind="messages"): 1,
        key("msaproxy_limit_hits_total", kind="recipients_per_message"): 1,
        key("msaproxy_messages_total"): 1,
        key("msaproxy_data_bytes_total"): len(MSG) + len(b".\r\n"),
        key("msaproxy_bans_total", source="manual"): 1,
        key("msaproxy_blocklist_refused_connections_total"): 1,
        key("msaproxy_backend_connect_seconds_count", backend=backend): 1,
        key("msaproxy_backend_transaction_seconds_count", backend=backend): 1,
    }
    moved = {k: v for k, v in counter_deltas(before, after, MOVING).items()
             if not k[0].endswith(("_bucket", "_sum"))}
    assert moved == expected
    # Each latency went into one bucket, and its sum moved with it.
    for fam in ("msaproxy_backend_connect_seconds", "msaproxy_backend_transaction_seconds"):
        assert after.get(fam + "_bucket", backend=backend, le="+Inf") == 1
        assert 0 < after.get(fam + "_sum", backend=backend) < 10
    assert after.get("msaproxy_blocklist_entries", source="manual") == 1
    assert after.get("msaproxy_blocklist_entries", source="auto") == 0
    assert after.get("msaproxy_backend_up", backend=backend) == 1
    assert after.get("msaproxy_backend_enabled", backend=backend) == 1
    assert after.get("msaproxy_backend_connections", backend=backend) == 0
    assert after.get("msaproxy_sessions_active") == 0
    assert not after.has("msaproxy_xdp_dropped_packets_total")  # no XDP here


def test_process_reload_worker_and_memory_metrics(proxy, recording_backend):
    started = time.time()
    p = metrics_proxy(proxy, [recording_backend.port])
    m = scrape_curl(p.metrics_port)
    assert started - 2 <= m.get("msaproxy_process_start_time_seconds") <= time.time()
    assert m.get("msaproxy_config_generation") == 1
    assert m.get("msaproxy_config_reloads_total", result="success") == 0
    assert m.get("msaproxy_config_reloads_total", result="failure") == 0
    assert m.get("msaproxy_config_last_reload_successful") == 1
    first_load = m.get("msaproxy_config_last_load_timestamp_seconds")
    assert first_load == m.get("msaproxy_process_start_time_seconds")
    assert m.get("msaproxy_draining") == 0
    busy = {dict(k[1])["worker"]: v for k, v in m.samples.items()
            if k[0] == "msaproxy_worker_busy_seconds_total"}
    assert set(busy) == {"0", "1"}  # workers: 2

    # Traffic makes the workers busy; the counters only grow.
    for _ in range(3):
        with tls_client(p, implicit=True) as s:
            s.login("demo", "demo-pass-1")
            s.sendmail("a@example.test", ["r@example.test"], MSG)
    m2 = scrape(p.metrics_port)
    busy2 = {dict(k[1])["worker"]: v for k, v in m2.samples.items()
             if k[0] == "msaproxy_worker_busy_seconds_total"}
    assert all(busy2[w] >= busy[w] for w in busy)
    assert sum(busy2.values()) > sum(busy.values())

    # jemalloc's numbers when the binary has it (not the ASan build).
    ldd = subprocess.run(["ldd", MSAPROXY_BIN], capture_output=True, text=True,
                         timeout=30).stdout
    if "libjemalloc" in ldd:
        allocated = m2.get("msaproxy_memory_allocated_bytes")
        assert 0 < allocated <= m2.get("msaproxy_memory_active_bytes")
        assert 0 < m2.get("msaproxy_memory_resident_bytes") <= \
            m2.get("msaproxy_memory_mapped_bytes")
    else:
        assert not m2.has("msaproxy_memory_allocated_bytes")

    # A good reload, a bad one, then good again.
    time.sleep(0.01)
    p.ctl("reload")
    m3 = scrape(p.metrics_port)
    assert m3.get("msaproxy_config_generation") == 2
    assert m3.get("msaproxy_config_reloads_total", result="success") == 1
    assert m3.get("msaproxy_config_last_load_timestamp_seconds") > first_load
    good = p.config_path.read_text()
    p.config_path.write_text(good + "limits:\n  max_line: 12\n")
    assert p.ctl("reload", check=False).returncode == 1
    m4 = scrape(p.metrics_port)
    assert m4.get("msaproxy_config_generation") == 2
    assert m4.get("msaproxy_config_reloads_total", result="failure") == 1
    assert m4.get("msaproxy_config_last_reload_successful") == 0
    p.config_path.write_text(good)
    p.ctl("reload")
    m5 = scrape(p.metrics_port)
    assert m5.get("msaproxy_config_last_reload_successful") == 1
    assert m5.get("msaproxy_config_generation") == 3
    # Counters survive reloads.
    assert m5.get("msaproxy_messages_total") == 3


def test_listener_series_follow_reloads(proxy, recording_backend):
    """A listener added by a reload gets its series; a kept listener keeps
    its counts."""
    p = metrics_proxy(proxy, [recording_backend.port])
    extra = free_port()
    p.config["listeners"] = list(p.config["listeners"]) + [
        {"address": f"{LOOPBACK}:{extra}", "mode": "implicit"}]
    p.config_path.write_text(__import__("conftest").to_yaml(p.config) + "\n")
    implicit = f"{LOOPBACK}:{p.implicit_port}"
    before = scrape(p.metrics_port)
    kept = before.get("msaproxy_sessions_total", listener=implicit, outcome="ok")
    p.ctl("reload")
    ctx = ssl.create_default_context(cafile=str(p.ca))
    for port in (extra, p.implicit_port):
        with smtplib.SMTP_SSL(LOOPBACK, port, context=ctx, timeout=15) as s:
            s.login("demo", "demo-pass-1")
    m = wait_sessions_ended(p, before, 2)
    assert m.get("msaproxy_sessions_total", listener=f"{LOOPBACK}:{extra}", outcome="ok") == 1
    assert m.get("msaproxy_sessions_total", listener=implicit, outcome="ok") == kept + 1


# ---------------------------------------------------------------------------
# Bad requests, slow and silent clients
# ---------------------------------------------------------------------------

def http_raw(port, data, timeout=10):
    """Send data, read until the server closes; the whole answer."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as c:
        try:
            c.sendall(data)
        except OSError:
            pass
        out = b""
        try:
            while chunk := c.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def status_of(answer):
    line = answer.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(line.split()[1])


def test_bad_requests_get_clear_answers(proxy, recording_backend):
    p = metrics_proxy(proxy, [recording_backend.port])
    base = f"http://{LOOPBACK}:{p.metrics_port}"

    def refused(method, path):
        req = urllib.request.Request(base + path, method=method,
                                     data=b"x=1" if method == "POST" else None)
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        return exc.value

    e = refused("POST", "/metrics")
    assert e.code == 405 and e.headers["Allow"] == "GET"
    assert refused("HEAD", "/metrics").code == 405
    assert refused("GET", "/").code == 404
    assert refused("GET", "/metrics/extra").code == 404
    assert refused("DELETE", "/nope").code == 404
    with urllib.request.urlopen(base + "/metrics?format=text", timeout=10) as r:
        assert r.status == 200
    for request, status in ((b"HELLO\r\n\r\n", 400),
                            (b"GET /metrics HTTP/3.0\r\n\r\n", 400),
                            (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
                            (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000, 431)):
        answer = http_raw(p.metrics_port, request)
        assert status_of(answer) == status, (request[:40], answer[:200])
        assert b"Connection: close" in answer
    for status in (400, 404, 405, 431):
        p.wait_for_log(rf"msg=metrics-request-bad client={LOOPBACK}:\d+ status={status} ")
    # A 10 MB POST body is neither read nor a problem.
    big = b"POST /metrics HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" + b"z" * 200000
    assert status_of(http_raw(p.metrics_port, big)) == 405
    assert scrape(p.metrics_port).get("msaproxy_config_generation") == 1


@pytest.mark.slow  # waits out the endpoint's 5 s time limit
@pytest.mark.deadline(60)
def test_silent_and_slow_clients_are_cut_and_hold_nothing(proxy, recording_backend):
    p = metrics_proxy(proxy, [recording_backend.port])
    silent = socket.create_connection((LOOPBACK, p.metrics_port), timeout=15)
    slow = socket.create_connection((LOOPBACK, p.metrics_port), timeout=15)
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
    opened = time.monotonic()

    # Meanwhile the endpoint answers others, and mail flows.
    assert scrape_curl(p.metrics_port).get("msaproxy_draining") == 0
    with tls_client(p, implicit=True) as s:
        s.login("demo", "demo-pass-1")
        s.sendmail("a@example.test", ["r@example.test"], MSG)
    recording_backend.wait_for_messages(1)
    for c in (silent, slow):  # still held, not answered yet: nobody waited
        c.setblocking(False)
        with pytest.raises(BlockingIOError):
            c.recv(1)
        c.setblocking(True)

    # Eight connections at once at most: the ninth is told 503 at once.
    more = [socket.create_connection((LOOPBACK, p.metrics_port), timeout=15)
            for _ in range(6)]
    time.sleep(0.2)  # the proxy has accepted them (its poll loop)
    assert status_of(http_raw(p.metrics_port, b"")) == 503
    p.wait_for_log(r"msg=metrics-busy client=")

    # Past the time limit each gets 408 and is closed.
    for c in [silent, slow] + more:
        answer = b""
        while chunk := c.recv(4096):
            answer += chunk
        assert status_of(answer) == 408
        c.close()
    # Not before its time: the endpoint's time limit is honoured.
    assert time.monotonic() - opened >= HTTP_TIMEOUT_S - 0.5
    p.wait_for_log(r"msg=metrics-request-bad client=\S+ status=408 "
                   r"request=\"GET /metrics HTTP/1.1\"")
    # And the endpoint is free again.
    assert scrape(p.metrics_port).get("msaproxy_messages_total") == 1


def test_metrics_listen_is_checked(proxy, recording_backend, tmp_path):
    """A metrics address a listener has is refused with file:line, and one
    that cannot be bound stops the start."""
    p = metrics_proxy(proxy, [recording_backend.port])
    text = p.config_path.read_text()
    taken = tmp_path / "taken.yaml"
    taken.write_text(text.replace(f'"{LOOPBACK}:{p.metrics_port}"',
                                  f'"{LOOPBACK}:{p.starttls_port}"'))
    r = config_check(taken)
    assert r.returncode != 0
    assert re.search(r"taken\.yaml:\d+: metrics\.listen: same address as listeners\[0\]",
                     r.stderr), r.stderr
    # The port is the running proxy's: a second one cannot bind it.
    second = tmp_path / "second.yaml"
    second.write_text(text.replace(str(p.control_socket),
                                   str(p.ctl_dir / "second.sock"))
                      .replace(f"{LOOPBACK}:{p.starttls_port}", f"{LOOPBACK}:{free_port()}")
                      .replace(f"{LOOPBACK}:{p.implicit_port}", f"{LOOPBACK}:{free_port()}"))
    r = subprocess.run([MSAPROXY_BIN, "-c", str(second)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert re.search(rf"second\.yaml:\d+: metrics\.listen {LOOPBACK}:{p.metrics_port}: "
                     r"Address already in use", r.stderr), r.stderr
    # A reload that changes it is told it needs a restart.
    since = p.mark()
    p.rewrite_config(**{"metrics.listen": f"{LOOPBACK}:{free_port()}"})
    p.ctl("reload")
    p.wait_for_log(r"msg=reload-ignored key=metrics.listen", since=since)
    assert scrape(p.metrics_port).get("msaproxy_config_generation") == 2


def test_plain_login_failure_counts_once(proxy, recording_backend):
    """One AUTH PLAIN with a wrong password is one failure (smtplib's
    login() would try every mechanism: the raw command is sent)."""
    p = metrics_proxy(proxy, [recording_backend.port])
    before = scrape(p.metrics_port)
    with tls_client(p, implicit=True) as s:
        s.ehlo()
        creds = base64.b64encode(b"\0demo\0nope").decode()
        code, _ = s.docmd("AUTH", "PLAIN " + creds)
        assert code == 535
    after = wait_sessions_ended(p, before, 1)
    assert counter_deltas(before, after, {"msaproxy_auth_total"}) == {
        key("msaproxy_auth_total", mechanism="plain", result="failure"): 1}


def test_drained_session_counts_as_shutdown(proxy, recording_backend):
    """`msaproxyctl drain` ends an idle session with 421: a clean end,
    outcome=shutdown, not error.  A session in a transaction keeps the
    proxy (and its endpoint) up while the idle one is counted."""
    p = metrics_proxy(proxy, [recording_backend.port], **{"shutdown.timeout": "8s"})
    implicit = f"{LOOPBACK}:{p.implicit_port}"
    busy = tls_client(p, implicit=True)
    busy.login("demo", "demo-pass-1")
    busy.mail("a@example.test")
    busy.rcpt("r@example.test")
    idle = tls_client(p, implicit=True)
    idle.login("demo", "demo-pass-1")
    before = scrape(p.metrics_port)

    p.exit_expected = True
    p.ctl("drain")
    code, text = idle.getreply()
    assert code == 421 and b"4.3.2" in text
    idle.close()

    def counted():
        m = scrape(p.metrics_port)
        ended = m.sum("msaproxy_sessions_total") - before.sum("msaproxy_sessions_total")
        return m if ended >= 1 else None
    after = wait_until(counted, 10, "the drained session to be counted")
    assert counter_deltas(before, after, {"msaproxy_sessions_total"}) == {
        key("msaproxy_sessions_total", listener=implicit, outcome="shutdown"): 1}
    p.wait_for_log(r"msg=session-end .*outcome=shutdown reason=drain")
    # The transaction in progress still finishes, then the proxy exits.
    assert busy.data(MSG)[0] == 250
    recording_backend.wait_for_messages(1)
    busy.close()
    assert p.proc.wait(timeout=10) == 0
