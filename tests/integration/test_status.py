"""The status page (proxy/ops/status_page.c) and its JSON
(proxy/ops/server_overview.c), served by the metrics listener
(metrics_http.c), without a browser: /status.json against msaproxyctl's
JSON answers (one writer for both: they must agree), the values real
traffic, a ban and a disabled backend put there, the page's own headers
and self-containment, and hostile clients (huge headers, slow loris, path
tricks, other methods).  tests/browser/ drives the page in Chromium."""

import base64
import json
import re
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import LOOPBACK, config_check, free_port, wait_until
from conftest import MSAPROXY_BIN, hash_password
from test_metrics import http_raw, metrics_proxy, scrape, status_of

CONNS = 8            # METRICS_HTTP_CONNS
TIMEOUT_S = 5        # METRICS_HTTP_TIMEOUT_MS


def get(port, path):
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=10) as r:
        return r.status, dict(r.headers), r.read()


def status_json(p):
    code, headers, body = get(p.metrics_port, "/status.json")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    return json.loads(body)


def ctl_json(p, *args):
    out = p.ctl("-j", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def traffic(p):
    """One message relayed (TLS 1.3, PLAIN) and one failed LOGIN."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15) as s:
        s.starttls(context=ctx)
        s.login("demo", "demo-pass-1")
        s.sendmail("demo@example.test", ["r@example.test"],
                   b"Subject: status\r\n\r\nhello\r\n")
    with smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, timeout=15, context=ctx) as s:
        s.ehlo()
        s.user, s.password = "alice", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert e.value.smtp_code == 535


def settled(p, messages, failures):
    def check():
        d = status_json(p)
        return d if (d["sessions"]["active"] == 0 and
                     d["sessions"]["messages"] >= messages and
                     d["auth"]["login"]["failure"] >= failures) else None
    return wait_until(check, 10, "the traffic to be counted")


def without(d, *paths):
    """A deep copy of d without the dotted paths (values that move between
    two reads: clocks, TTLs, the allocator)."""
    d = json.loads(json.dumps(d))
    for path in paths:
        parts = path.split(".")
        cur = d
        for k in parts[:-1]:
            cur = cur[k] if isinstance(cur, dict) else None
            if cur is None:
                break
        if isinstance(cur, dict):
            cur.pop(parts[-1], None)
    return d


VOLATILE = ("node.now", "node.status.uptime_s", "series", "memory",
            "stats.memory_allocated", "stats.memory_resident")


def test_status_json_is_what_msaproxyctl_says(proxy, recording_backend):
    dead = free_port()  # nothing listens: a backend that is down
    p = metrics_proxy(proxy, [recording_backend.port, dead])
    traffic(p)
    p.ctl("ban", "192.0.2.0/24", "--ttl", "1h")
    p.ctl("ban", "198.51.100.7/32")
    p.ctl("backend", "disable", f"{LOOPBACK}:{dead}")
    d = settled(p, 1, 1)
    over = json.loads(p.ctl("-j", "overview").stdout)

    # One writer: the same object, but for what moves between two reads.
    def stable(x):
        x = without(x, *VOLATILE)
        for b in x["bans"]:
            b.pop("expires_in_s")
        for l in x["listeners"]:  # the last minute's rates
            l.pop("sessions_per_s")
        for a in x["auth"].values():
            a.pop("per_min")
        return x
    assert stable(d) == stable(over)

    # Each shared part is msaproxyctl's own answer.
    status = ctl_json(p, "status")[0]
    assert abs(status.pop("uptime_s") - d["node"]["status"]["uptime_s"]) <= 2
    assert without(d["node"]["status"], "uptime_s") == status
    assert d["backends"] == ctl_json(p, "backends")
    bans = ctl_json(p, "list")
    assert [without(b, "expires_in_s") for b in d["bans"]] == \
        [without(b, "expires_in_s") for b in bans]
    assert d["cluster"] == ctl_json(p, "cluster")[0] == {"enabled": False}
    assert without(d["stats"], "memory_allocated", "memory_resident") == \
        without(ctl_json(p, "stats")[0], "memory_allocated", "memory_resident")

    # The values the traffic, the bans and the disabled backend put there.
    node = d["node"]
    assert node["status"]["state"] == "running" and node["status"]["generation"] == 1
    assert node["status"]["workers"] == 2 and node["last_reload_ok"] is True
    assert abs(node["now"] - time.time()) < 5 and node["started"] <= node["now"]
    assert node["version"]
    listeners = {l["address"]: l for l in d["listeners"]}
    assert listeners[f"{LOOPBACK}:{p.starttls_port}"]["mode"] == "starttls"
    assert listeners[f"{LOOPBACK}:{p.implicit_port}"]["mode"] == "implicit"
    assert listeners[f"{LOOPBACK}:{p.starttls_port}"]["sessions"]["ok"] >= 1
    assert sum(l["sessions_total"] for l in d["listeners"]) == \
        sum(sum(l["sessions"].values()) for l in d["listeners"])
    assert d["tls"]["TLSv1.3"]["handshakes"] >= 2
    assert without(d["auth"]["plain"], "per_min") == {"success": 1, "failure": 0}
    assert without(d["auth"]["login"], "per_min") == {"success": 0, "failure": 1}
    assert set(d["limits"]) >= {"messages", "ip_banned", "max_sessions", "auth_failures"}
    assert d["sessions"]["messages"] == 1
    backends = {b["backend"]: b for b in d["backends"]}
    assert backends[f"{LOOPBACK}:{recording_backend.port}"]["admin"] == "enabled"
    assert backends[f"{LOOPBACK}:{dead}"]["admin"] == "disabled"
    block = {b["prefix"]: b for b in d["bans"] if b["table"] == "block"}
    assert block["192.0.2.0/24"]["reason"] == "manual"
    assert 3590 <= block["192.0.2.0/24"]["expires_in_s"] <= 3600
    assert block["198.51.100.7/32"]["expires_in_s"] == -1  # permanent
    assert d["certificates"][0]["file"] == str(p.config["tls"]["certificates"][0]["cert"])
    assert d["certificates"][0]["expires"] > time.time()
    series = d["series"]
    assert series["step_s"] == 10
    assert len(series["t"]) == len(series["sessions_per_s"]) == \
        len(series["auth_failures_per_min"]) == len(series["xdp_drops_per_s"])
    # No password, no message content anywhere.
    text = json.dumps(d)
    assert "demo-pass-1" not in text and "hello" not in text


def test_page_is_self_contained_and_locked_down(proxy, recording_backend):
    p = metrics_proxy(proxy, [recording_backend.port])
    code, headers, body = get(p.metrics_port, "/status")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    html = body.decode()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    # nothing fetched from elsewhere: no src=/href= to another origin, no
    # external script or stylesheet, no @import
    for m in re.finditer(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert not re.match(r"[a-z]+:|//", m.group(1)), m.group(0)
    assert "<link" not in html and "@import" not in html
    assert "<script>" in html and "<style>" in html
    assert "status.json" in html
    # The data goes into the page as text, never as markup.
    assert "innerHTML" not in html and "document.write" not in html
    # The metrics are still there, unchanged.
    code, headers, _ = get(p.metrics_port, "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")


def test_status_can_be_turned_off_by_a_reload(proxy, recording_backend):
    p = metrics_proxy(proxy, [recording_backend.port], **{"metrics.status": False})
    for path in ("/status", "/status.json"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(p.metrics_port, path)
        assert e.value.code == 404
    assert get(p.metrics_port, "/metrics")[0] == 200
    p.rewrite_config(**{"metrics.status": True})
    p.ctl("reload")
    assert status_json(p)["node"]["status"]["generation"] == 2
    assert get(p.metrics_port, "/status")[0] == 200


def test_hostile_clients(proxy, recording_backend):
    p = metrics_proxy(proxy, [recording_backend.port])
    port = p.metrics_port
    # Paths that are not exactly /status or /status.json: 404, never a file.
    for path in (b"/status/", b"/status/../metrics", b"/../status",
                 b"/status%2ejson", b"//status", b"/status.json/../../etc/passwd",
                 b"/etc/passwd", b"/STATUS", b"/status.jsonx"):
        answer = http_raw(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(answer) == 404, (path, answer[:200])
        assert b"root:" not in answer
    # Methods other than GET: 405 with Allow: GET; a query string is fine.
    for method in (b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"):
        answer = http_raw(port, method + b" /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert status_of(answer) == 405 and b"Allow: GET\r\n" in answer, method
    assert status_of(http_raw(port, b"GET /status.json?x=1 HTTP/1.0\r\n\r\n")) == 200
    # Huge headers: 431 at 8 KiB, nothing more read.
    answer = http_raw(port, b"GET /status HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n")
    assert status_of(answer) == 431
    # A request smuggled in a header value is not answered twice.
    answer = http_raw(port, b"GET /status.json HTTP/1.1\r\nX: a\r\n\r\n"
                      b"GET /status HTTP/1.1\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200") == 1

    # Slow loris: every slot held by a client trickling bytes; the next one
    # gets 503 at once, the slow ones are cut at the time limit, and the
    # endpoint serves again at once after.  (First the answers above leave
    # their lingering close, at most LINGER_MS = 1 s, so all 8 slots are
    # free.)
    time.sleep(1.5)
    t0 = time.monotonic()
    slow = []
    for _ in range(CONNS):
        c = socket.create_connection((LOOPBACK, port), timeout=15)
        c.sendall(b"GET /status HTTP/1.1\r\n")
        slow.append(c)
    time.sleep(0.3)
    assert status_of(http_raw(port, b"GET /status.json HTTP/1.1\r\n\r\n")) == 503
    for c in slow:
        try:
            c.sendall(b"X-a: b\r\n")
        except OSError:
            pass
    for c in slow:
        answer = b""
        try:
            while chunk := c.recv(4096):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        c.close()
        assert status_of(answer) == 408
    assert time.monotonic() - t0 < TIMEOUT_S + 4
    assert status_json(p)["node"]["status"]["state"] == "running"


@pytest.mark.slow  # waits for the second 10 s sample of the history
def test_history_ring_samples_every_10_seconds(proxy, recording_backend):
    p = metrics_proxy(proxy, [recording_backend.port])
    started = status_json(p)["node"]["started"]
    traffic(p)
    time.sleep(1.1)
    # One ring sample (at the start) and the live point "now": one rate.
    s = status_json(p)["series"]
    assert len(s["t"]) == len(s["sessions_per_s"]) == 1
    assert s["sessions_per_s"][0] > 0 and s["auth_failures_per_min"][0] > 0

    # The second sample, 10 s after the first, then the live point.
    s = wait_until(lambda: (lambda x: x if len(x["t"]) >= 2 else None)(
        status_json(p)["series"]), 25, "the second sample of the history")
    assert 9 <= s["t"][0] - started <= 12, (started, s["t"])
    assert s["t"] == sorted(s["t"])
    # the traffic was in the first 10 s; the second interval is quiet
    assert s["sessions_per_s"][0] > 0 and s["auth_failures_per_min"][0] > 0
    assert all(v == 0 for v in s["xdp_drops_per_s"])
    assert len(s["t"]) == len(s["sessions_per_s"]) == len(s["messages_per_s"])


def test_fleet_mode_state_on_the_page(proxy, recording_backend, redis):
    r = redis()
    p = metrics_proxy(proxy, [recording_backend.port],
                      cluster={"redis": f"{LOOPBACK}:{r.port}", "timeout": "300ms"})
    d = status_json(p)
    c = d["cluster"]
    assert c["enabled"] is True and c["up"] is True
    assert c["redis"] == f"{LOOPBACK}:{r.port}" and c["fail"] == "open"
    ctl = ctl_json(p, "cluster")[0]
    for k in ("enabled", "node", "redis", "up", "fail"):
        assert c[k] == ctl[k], k
    assert d["stats"]["cluster"]["up"] is True
    # The users nearest their limits: this node's table, and it says so.
    assert d["users"]["scope"] == "node"


def admin_request(port, method, path, auth=None, body=None, headers=()):
    """One raw request; (status, headers dict lowercased, body bytes)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}"]
    if auth is not None:
        lines.append("Authorization: Basic " +
                     base64.b64encode(auth.encode()).decode())
    if body is not None:
        lines += ["Content-Type: application/x-www-form-urlencoded",
                  f"Content-Length: {len(body)}"]
    lines += list(headers)
    raw = http_raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
    head, _, data = raw.partition(b"\r\n\r\n")
    hdrs = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode().partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status_of(raw), hdrs, data


def form(**fields):
    return urllib.parse.urlencode(fields).encode()


def test_admin_actions_need_a_login_and_the_csrf_token(proxy, recording_backend):
    dead = free_port()
    backend = f"{LOOPBACK}:{dead}"
    p = metrics_proxy(proxy, [recording_backend.port, dead])
    port = p.metrics_port
    good = "demo:demo-pass-1"

    # metrics.admin off (the default): no action, no token.
    st, _, body = admin_request(port, "POST", "/status/action", good,
                                form(op="ban", target="192.0.2.0/24", csrf="x" * 64))
    assert st == 404 and b"metrics.admin" in body
    assert "admin" not in json.loads(admin_request(port, "GET", "/status.json?admin=1", good)[2])

    p.rewrite_config(**{"metrics.admin": True})
    p.ctl("reload")
    # The token: only for a login of the users file.
    st, hdrs, _ = admin_request(port, "GET", "/status.json?admin=1")
    assert st == 401 and hdrs["www-authenticate"].startswith('Basic realm="msaproxy status"')
    assert admin_request(port, "GET", "/status.json?admin=1", "demo:wrong")[0] == 401
    assert admin_request(port, "GET", "/status.json?admin=1", "nobody:x")[0] == 401
    st, _, body = admin_request(port, "GET", "/status.json?admin=1", good)
    d = json.loads(body)
    assert st == 200 and d["admin"]["user"] == "demo"
    token = d["admin"]["csrf"]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    # the plain JSON has none
    assert "admin" not in status_json(p)
    # another login has another token
    other = json.loads(admin_request(port, "GET", "/status.json?admin=1",
                                     "alice:alice-pass-2")[2])["admin"]["csrf"]
    assert other != token

    ban = form(csrf=token, op="ban", target="192.0.2.0/24", ttl="1h")
    # Without a login, with a wrong one, without the token, with a wrong
    # one, with another login's, from another origin: refused, nothing done.
    assert admin_request(port, "POST", "/status/action", None, ban)[0] == 401
    assert admin_request(port, "POST", "/status/action", "demo:wrong", ban)[0] == 401
    for bad in (form(op="ban", target="192.0.2.0/24"),
                form(csrf="0" * 64, op="ban", target="192.0.2.0/24"),
                form(csrf=other, op="ban", target="192.0.2.0/24")):
        st, _, body = admin_request(port, "POST", "/status/action", good, bad)
        assert st == 403 and b"CSRF" in body, body
    st, _, _ = admin_request(port, "POST", "/status/action", good, ban,
                             headers=["Origin: http://evil.example"])
    assert st == 403
    st, hdrs, _ = admin_request(port, "GET", "/status/action", good)
    assert st == 405 and hdrs["allow"] == "POST"
    assert ctl_json(p, "list") == []
    p.wait_for_log(r"msg=status-admin .*user=demo result=refused")

    # With all of it: done, as msaproxyctl would.
    st, _, body = admin_request(port, "POST", "/status/action", good, ban,
                                headers=[f"Origin: http://{LOOPBACK}:{port}"])
    assert st == 200 and json.loads(body) == {"ok": True}
    bans = {b["prefix"]: b for b in ctl_json(p, "list")}
    assert bans["192.0.2.0/24"]["reason"] == "manual"
    assert 3590 <= bans["192.0.2.0/24"]["expires_in_s"] <= 3600
    p.wait_for_log(r"msg=status-admin user=demo op=ban target=192.0.2.0/24 result=ok")
    st, _, _ = admin_request(port, "POST", "/status/action", good,
                             form(csrf=token, op="disable", target=backend))
    assert st == 200
    assert {b["backend"]: b["admin"] for b in ctl_json(p, "backends")}[backend] == "disabled"
    st, _, _ = admin_request(port, "POST", "/status/action", good,
                             form(csrf=token, op="enable", target=backend))
    assert st == 200
    assert {b["backend"]: b["admin"] for b in ctl_json(p, "backends")}[backend] == "enabled"
    st, _, _ = admin_request(port, "POST", "/status/action", good,
                             form(csrf=token, op="unban", target="192.0.2.0/24"))
    assert st == 200 and ctl_json(p, "list") == []
    # Bad arguments get msaproxyctl's own answers.
    for fields, why in ((dict(op="ban", target="300.1.2.3/8"), b"300.1.2.3/8"),
                        (dict(op="ban", target="192.0.2.0/24", ttl="soon"), b"ttl"),
                        (dict(op="disable", target="127.0.0.1:1"), b"no backend"),
                        (dict(op="explode", target="x"), b"op: expected"),
                        (dict(op="unban", target="203.0.113.0/24"), b"not banned")):
        st, _, body = admin_request(port, "POST", "/status/action", good,
                                    form(csrf=token, **fields))
        assert st == 400 and why in body, (fields, body)
    # A form too large, or without its length: 400, nothing read past it.
    assert admin_request(port, "POST", "/status/action", good,
                         form(csrf=token, op="ban", target="x" * 2000))[0] == 400
    raw = http_raw(port, b"POST /status/action HTTP/1.1\r\nHost: x\r\n\r\nop=ban")
    assert status_of(raw) == 400
    # A token survives a reload (the key is the process's).
    p.ctl("reload")
    st, _, _ = admin_request(port, "POST", "/status/action", good,
                             form(csrf=token, op="ban", target="198.51.100.0/24"))
    assert st == 200


def quantile(buckets, q):
    """histogram_quantile() of a scrape's cumulative buckets {le: count},
    in ms: what the page's p50/p99 must be."""
    bounds = sorted((float(le), n) for le, n in buckets.items() if le != "+Inf")
    total = buckets["+Inf"]
    rank, lo, below = q * total, 0.0, 0
    for hi, cum in bounds:
        if cum > below and cum >= rank:
            return (lo + (hi - lo) * (rank - below) / (cum - below)) * 1000
        lo, below = hi, cum
    return bounds[-1][0] * 1000


def send(p, user, n):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15) as s:
        s.starttls(context=ctx)
        s.login(user, p.users.passwords[user] if hasattr(p, "users") else
                {"demo": "demo-pass-1", "alice": "alice-pass-2"}[user])
        for _ in range(n):
            s.sendmail(f"{user}@example.test", ["r@example.test"],
                       b"Subject: status\r\n\r\nhello\r\n")


def greeted(port):
    c = socket.create_connection((LOOPBACK, port), timeout=10)
    assert c.recv(512).startswith(b"220")
    return c


def resumed_handshake(p):
    """Two implicit-TLS sessions, the second resuming the first's."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with socket.create_connection((LOOPBACK, p.implicit_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=LOOPBACK) as t:
            assert t.recv(512).startswith(b"220")  # and the tickets
            session = t.session
            t.sendall(b"QUIT\r\n")
            t.recv(512)
    with socket.create_connection((LOOPBACK, p.implicit_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=LOOPBACK, session=session) as t:
            assert t.session_reused
            assert t.recv(512).startswith(b"220")
            t.sendall(b"QUIT\r\n")
            t.recv(512)


def test_sections_show_what_the_proxy_counted(proxy, recording_backend):
    """Listeners (open now, per second, refusals by reason), TLS
    resumptions, AUTH per minute, backend latency and last change, and the
    users nearest their limits: each against what a scrape, msaproxyctl or
    the traffic itself says."""
    dead = free_port()
    good, bad = f"{LOOPBACK}:{recording_backend.port}", f"{LOOPBACK}:{dead}"
    p = metrics_proxy(proxy, [recording_backend.port, dead],
                      **{"limits.max_sessions": 2,
                         "limits.user": {"messages": "4/1h"},
                         "backends.health_check": {"interval": "1s", "fall": 1}})
    # The dead backend: a health check finds the connection refused.
    d = wait_until(lambda: (lambda x: x if {b["backend"]: b for b in x["backends"]}
                            [bad]["last_change"] else None)(status_json(p)),
                   15, "a health check to take the dead backend down")
    change = {b["backend"]: b for b in d["backends"]}[bad]["last_change"]
    assert change["why"] == "connect refused" and change["source"] == "check"
    assert abs(change["at"] - time.time()) < 15
    p.wait_for_log(rf"msg=backend-down backend={re.escape(bad)} source=check "
                   r'reason="connect: Connection refused"')

    send(p, "demo", 3)
    send(p, "alice", 1)
    time.sleep(1.1)  # the rates need a second since the first sample
    resumed_handshake(p)

    # Two sessions held open, the third refused at accept (max_sessions).
    # The sessions above must be gone first: the proxy may still be closing
    # one after its 221 (on either listener), and it counts against the two.
    wait_until(lambda: all(l["open"] == 0 for l in status_json(p)["listeners"]), 10,
               "the earlier sessions closed")
    held = [greeted(p.starttls_port), greeted(p.starttls_port)]
    try:
        def two_open():
            x = status_json(p)
            ls = {l["address"]: l for l in x["listeners"]}
            return x if ls[f"{LOOPBACK}:{p.starttls_port}"]["open"] == 2 else None
        d = wait_until(two_open, 10, "two sessions open on the listener")
        with socket.create_connection((LOOPBACK, p.starttls_port), timeout=10) as c:
            c.recv(512)  # a 421, or just the close
        d = wait_until(lambda: (lambda x: x if {l["address"]: l for l in x["listeners"]}
                                [f"{LOOPBACK}:{p.starttls_port}"]["refusals"]
                                ["max_sessions"] == 1 else None)(status_json(p)),
                       10, "the refusal to be counted")
        m = scrape(p.metrics_port)
    finally:
        for c in held:
            c.close()
    ls = {l["address"]: l for l in d["listeners"]}
    st = ls[f"{LOOPBACK}:{p.starttls_port}"]
    assert st["open"] == 2 and ls[f"{LOOPBACK}:{p.implicit_port}"]["open"] == 0
    assert st["sessions"]["refused"] == sum(st["refusals"].values()) == 1
    for addr, l in ls.items():
        assert l["open"] == m.get("msaproxy_listener_sessions_open", listener=addr)
        for reason, n in l["refusals"].items():
            assert n == m.get("msaproxy_listener_refusals_total",
                              listener=addr, reason=reason), (addr, reason)
    assert st["sessions_per_s"] > 0  # since the first sample, under a minute

    # TLS: the resumption counted, as the scrape has it.
    assert d["tls"]["TLSv1.3"]["resumed"] >= 1
    for v, t in d["tls"].items():
        assert t["resumed"] == m.get("msaproxy_tls_resumed_total", version=v)
        assert t["resumed"] <= t["handshakes"]
    # AUTH per minute: two PLAIN logins, none failed.
    assert d["auth"]["plain"]["success"] == 2
    assert d["auth"]["plain"]["per_min"]["success"] > 0
    assert d["auth"]["plain"]["per_min"]["failure"] == 0

    # Backends: p50/p99 of the scrape's histograms, the same numbers.
    backends = {b["backend"]: b for b in d["backends"]}
    lat = backends[good]["latency"]
    for kind, fam in (("connect", "msaproxy_backend_connect_seconds"),
                      ("transaction", "msaproxy_backend_transaction_seconds")):
        buckets = {dict(ls_)["le"]: v for (n, ls_), v in m.samples.items()
                   if n == fam + "_bucket" and dict(ls_).get("backend") == good}
        assert lat[kind]["count"] == buckets["+Inf"] >= 1, kind
        assert lat[kind]["p50_ms"] == pytest.approx(quantile(buckets, 0.5), abs=0.002)
        assert lat[kind]["p99_ms"] == pytest.approx(quantile(buckets, 0.99), abs=0.002)
        assert 0 < lat[kind]["p50_ms"] <= lat[kind]["p99_ms"]
    assert lat["transaction"]["count"] == 4
    assert backends[bad]["latency"]["connect"] == {"count": 0, "p50_ms": None,
                                                   "p99_ms": None}
    # The operator's disable is the last change now.
    p.ctl("backend", "disable", bad)
    change = {b["backend"]: b for b in status_json(p)["backends"]}[bad]["last_change"]
    assert change["why"] == "disabled" and change["source"] == "operator"
    assert {b["backend"]: b for b in ctl_json(p, "backends")}[bad]["last_change"] == change

    # Users nearest their limits: demo used 3 of 4, alice 1 of 4.
    u = status_json(p)["users"]
    assert u["scope"] == "all" and u["hashed"] is False and u["truncated"] is False
    assert [x["login"] for x in u["top"]] == ["demo", "alice"]
    assert u["top"][0]["use"] == 0.75 and u["top"][0]["remaining"]["messages"] == 1
    assert u["top"][1]["use"] == 0.25 and u["top"][1]["remaining"]["messages"] == 3
    def ctl_remaining(user):  # msaproxyctl user's answer, the same numbers
        limits = ctl_json(p, "user", "limits", user)[0]
        return {k: limits[k]["available"] if limits[k] else None
                for k in ("messages", "recipients", "bytes", "quota")}
    assert u["top"][0]["remaining"] == ctl_remaining("demo")
    assert u["top"][1]["remaining"] == ctl_remaining("alice")
    # Over the limit: refused, and the page says so.
    with pytest.raises(smtplib.SMTPException):
        send(p, "demo", 2)
    top = status_json(p)["users"]["top"][0]
    assert top["login"] == "demo" and top["use"] == 1.0
    assert top["remaining"]["messages"] == 0
    assert top["remaining"] == ctl_remaining("demo")

    # metrics.hash_logins: a short keyed hash instead of the login.
    p.rewrite_config(**{"metrics.hash_logins": True})
    p.ctl("reload")
    u = status_json(p)["users"]
    assert u["hashed"] is True
    assert all(re.fullmatch(r"#[0-9a-f]{8}", x["login"]) for x in u["top"])
    assert len({x["login"] for x in u["top"]}) == 2
    assert "demo" not in json.dumps(u) and "alice" not in json.dumps(u)


def test_admin_users_file_and_config_errors(proxy, recording_backend, tmp_path):
    """metrics.admin_users: the admin logins come from that file, not the
    users file; a bad one is refused with file:line."""
    admins = tmp_path / "admins"
    admins.write_text(f"ops:{hash_password('ops-pass-9')}\n")
    admins.chmod(0o600)
    p = metrics_proxy(proxy, [recording_backend.port],
                      **{"metrics.admin": True, "metrics.admin_users": str(admins)})
    port = p.metrics_port
    st, _, body = admin_request(port, "GET", "/status.json?admin=1", "ops:ops-pass-9")
    assert st == 200 and json.loads(body)["admin"]["user"] == "ops"
    # a login of the users file is no admin login now
    assert admin_request(port, "GET", "/status.json?admin=1", "demo:demo-pass-1")[0] == 401
    assert admin_request(port, "GET", "/status.json?admin=1", "ops:wrong")[0] == 401

    # A reload with a file that cannot be read is refused, naming the key.
    p.rewrite_config(**{"metrics.admin_users": str(tmp_path / "missing")})
    out = p.ctl("reload", check=False)
    assert out.returncode != 0
    assert re.search(r"msaproxy\.yaml:\d+: metrics\.admin_users: .*missing",
                     out.stdout + out.stderr), out
    # the running generation keeps its admins
    assert admin_request(port, "GET", "/status.json?admin=1", "ops:ops-pass-9")[0] == 200
    bad = tmp_path / "bad"
    bad.write_text("ops:not-a-hash\n")
    bad.chmod(0o600)
    p.rewrite_config(**{"metrics.admin_users": str(bad)})
    out = p.ctl("reload", check=False)
    assert out.returncode != 0
    assert re.search(r"metrics\.admin_users: .*bad:1:", out.stdout + out.stderr), out
    p.rewrite_config(**{"metrics.hash_logins": "sometimes"})
    out = p.ctl("reload", check=False)
    assert re.search(r"msaproxy\.yaml:\d+: metrics\.hash_logins: ", out.stdout + out.stderr), out


def https_get(p, path, **kw):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    req = urllib.request.Request(f"https://{LOOPBACK}:{p.metrics_port}{path}", **kw)
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        return r.status, dict(r.headers), r.read()


def test_endpoint_over_tls(proxy, recording_backend, certs, tmp_path):
    """metrics.tls: the page, its JSON, the scrape and the admin actions
    over TLS (a non-loopback peer: test_xdp_proxy.py, from another
    namespace); plain HTTP gets nothing; a bad key stops the start with
    file:line."""
    port = free_port()
    tls = {"cert": str(certs.ecdsa_cert), "key": str(certs.ecdsa_key)}
    p = proxy([recording_backend.port], **{"metrics.listen": f"{LOOPBACK}:{port}",
                                           "metrics.tls": tls, "metrics.admin": True})
    p.metrics_port = port
    p.wait_for_log(rf"msg=ready .*metrics={LOOPBACK}:{port}")
    code, headers, body = https_get(p, "/status.json")
    assert code == 200 and json.loads(body)["node"]["status"]["state"] == "running"
    code, _, body = https_get(p, "/metrics")
    assert code == 200 and b"msaproxy_tls_resumed_total" in body
    assert https_get(p, "/status")[2].startswith(b"<!DOCTYPE html>")
    auth = {"Authorization": "Basic " + base64.b64encode(b"demo:demo-pass-1").decode()}
    code, _, body = https_get(p, "/status.json?admin=1", headers=auth)
    token = json.loads(body)["admin"]["csrf"]
    code, _, body = https_get(p, "/status/action", headers={
        **auth, "Origin": f"https://{LOOPBACK}:{port}"},
        data=form(csrf=token, op="ban", target="192.0.2.0/24"))
    assert code == 200 and json.loads(body) == {"ok": True}
    # an http:// Origin is another origin now
    with pytest.raises(urllib.error.HTTPError) as e:
        https_get(p, "/status/action", headers={**auth, "Origin": f"http://{LOOPBACK}:{port}"},
                  data=form(csrf=token, op="unban", target="192.0.2.0/24"))
    assert e.value.code == 403
    # Plain HTTP to it: no HTTP answer, a TLS failure logged.
    assert b"HTTP/" not in http_raw(port, b"GET /status.json HTTP/1.1\r\n\r\n")
    p.wait_for_log(r"msg=metrics-tls-failed client=127\.0\.0\.1:\d+ error=")
    assert https_get(p, "/status.json")[0] == 200
    # Slow loris over TLS: clients that never finish the handshake hold
    # the slots only until the time limit; the next one is closed at once
    # (no plain 503 into a TLS stream); then it serves again.
    time.sleep(1.5)  # the lingering closes above
    t0 = time.monotonic()
    idle = [socket.create_connection((LOOPBACK, port), timeout=15) for _ in range(CONNS)]
    time.sleep(0.3)
    with socket.create_connection((LOOPBACK, port), timeout=5) as c:
        assert c.recv(100) == b""
    for c in idle:
        try:
            assert c.recv(100) == b""  # closed at the limit, nothing sent
        except ConnectionResetError:
            pass
        c.close()
    assert TIMEOUT_S - 1 < time.monotonic() - t0 < TIMEOUT_S + 4
    assert https_get(p, "/status.json")[0] == 200

    # A key that is not the certificate's: the start stops, naming it.
    text = p.config_path.read_text()
    bad = tmp_path / "bad.yaml"
    text = (text.replace(str(p.control_socket), str(p.ctl_dir / "bad.sock"))
            .replace(f"{LOOPBACK}:{port}", f"{LOOPBACK}:{free_port()}")
            .replace(f"{LOOPBACK}:{p.starttls_port}", f"{LOOPBACK}:{free_port()}")
            .replace(f"{LOOPBACK}:{p.implicit_port}", f"{LOOPBACK}:{free_port()}"))
    at = text.index("\nmetrics:")  # the metrics section's key only
    bad.write_text(text[:at] + text[at:].replace(str(certs.ecdsa_key), str(certs.rsa_key)))
    assert str(certs.rsa_key) in bad.read_text()
    r = subprocess.run([MSAPROXY_BIN, "-c", str(bad)], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert re.search(r"bad\.yaml:\d+: metrics\.tls\.key: ", r.stderr), r.stderr
    # and -t says so first
    r = config_check(bad)
    assert r.returncode != 0
    assert re.search(r"bad\.yaml:\d+: metrics\.tls\.key: ", r.stderr), r.stderr
