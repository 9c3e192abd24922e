"""The proxy with its XDP blocklist on a real kernel (proxy/bans/bans.c through
bpf/blocklist.bpf.c), end to end.

The world of test_xdp.py (server and client namespaces joined by a veth,
documentation addresses 198.51.100.0/25 and 2001:db8:1::/64) with msaproxy
itself running in the server namespace on *:2587 (STARTTLS), XDP attached
to vs, maps pinned on a private bpffs, and Postfix's smtp-sink as the
backend on 127.0.0.1:2600 inside that namespace.  Clients submit from the
client namespace with smtplib, or just connect (the agent, 1 s timeout).

A ban through msaproxyctl makes the client's SYNs vanish: its connects
time out, the proxy's XDP drop counter rises (in `stats` and on the
metrics endpoint) and its accept counter does not; unban restores it.  Also: CIDR and IPv6 bans cover their range and
not the neighbours, the allowlist wins, TTL bans expire, failed logins
earn a kernel ban, and a ban survives a proxy restart (pinned maps).

Root only (namespaces, bpffs, XDP); otherwise skipped with the reason,
and under CI a skip is a failure.
"""

import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import MSAPROXY_BIN, MSAPROXYCTL_BIN, read_text_file, tail, to_yaml
from test_xdp import (CLI4_A, CLI4_B, CLI6_A, CLI6_B, SRV4, SRV6, World,
                      _require_root_and_tool, sh)
from test_metrics import parse_exposition

SMTP_PORT, SINK_PORT, METRICS_PORT = 2587, 2600, 9587

SUBMIT = r"""
import smtplib, ssl, sys
src, dst, port, ca, user, password = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False  # the test certificate names 127.0.0.1, not dst
try:
    with smtplib.SMTP(dst, int(port), timeout=5, source_address=(src, 0)) as s:
        s.starttls(context=ctx)
        s.login(user, password)
        s.sendmail("a@example.test", ["r@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    print("sent")
except smtplib.SMTPAuthenticationError as e:
    print("auth-failed", e.smtp_code)
except Exception as e:
    print("error", type(e).__name__, e)
"""


WAIT_FOR_SINK = f"""
import socket, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", {SINK_PORT}), 1).close()
        break
    except OSError:
        time.sleep(0.05)
else:
    raise SystemExit("smtp-sink did not come up")
"""


class ProxyInNamespace:
    def __init__(self, world, workdir, certs, users, xdp=None, blocklist=None,
                 **top):
        self.world, self.workdir = world, workdir
        self.ctl_dir = Path(tempfile.mkdtemp(prefix="msa-xctl-", dir="/tmp"))
        self.socket = self.ctl_dir / "control.sock"
        self.log_path = workdir / "msaproxy.log"
        self.ca = certs.ca
        self.config = {
            "hostname": "mail.example.test",
            "workers": 1,
            "tls": {"certificates": [{"cert": str(certs.ecdsa_cert),
                                      "key": str(certs.ecdsa_key)}]},
            "listeners": [{"address": f"*:{SMTP_PORT}", "mode": "starttls"}],
            "auth": {"passwd_file": str(users.path), "failure_delay": "0s"},
            "backends": {"servers": [{"address": f"127.0.0.1:{SINK_PORT}",
                                      "identity": "none"}]},
            "control": {"socket": str(self.socket)},
            "metrics": {"listen": f"127.0.0.1:{METRICS_PORT}"},
            "shutdown": {"timeout": "2s"},
            "privileges": {"seccomp": "kill"},
            "blocklist": {"xdp": {"enabled": True, "interfaces": ["vs"],
                                  "pin_dir": str(world.pin), **(xdp or {})},
                          **(blocklist or {})},
            **top,
        }
        self.proc = None

    def start(self):
        path = self.workdir / "msaproxy.yaml"
        path.write_text(to_yaml(self.config) + "\n")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.world.srv, MSAPROXY_BIN, "-c", str(path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while "msg=ready" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"msaproxy did not start:\n{tail(self.log())}")
            time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                pytest.fail(f"msaproxy ignored SIGTERM:\n{tail(self.log())}")
            assert status == 0, tail(self.log())
        self.proc = None
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in self.log(), tail(self.log())

    def log(self):
        return read_text_file(self.log_path)

    def ctl(self, *args, check=True):
        r = subprocess.run([MSAPROXYCTL_BIN, "-s", str(self.socket), *args],
                           capture_output=True, text=True, timeout=30)
        if check:
            assert r.returncode == 0, f"{args}: {r.stderr}\n{tail(self.log())}"
        return r

    def stats(self):
        return json.loads(self.ctl("-j", "stats").stdout)

    def metrics(self):
        """A scrape from inside the server namespace, parsed strictly."""
        r = sh("ip", "netns", "exec", self.world.srv, "curl", "-sS", "--max-time", "10",
               f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=30)
        return parse_exposition(r.stdout)

    def submit(self, src, user="demo", password="demo-pass-1"):
        dst = SRV6 if ":" in src else SRV4
        r = sh("ip", "netns", "exec", self.world.cli, "/usr/bin/python3", "-c", SUBMIT,
               src, dst, SMTP_PORT, self.ca, user, password, timeout=30)
        return r.stdout.strip()

    def connects(self, src):
        dst = SRV6 if ":" in src else SRV4
        return self.world.client.ask("connect", src, dst, SMTP_PORT, 1.0)


@pytest.fixture(scope="module")
def world():
    _require_root_and_tool()
    if not shutil.which("smtp-sink") and not Path("/usr/sbin/smtp-sink").exists():
        pytest.fail("smtp-sink (postfix) is not installed: scripts/install-deps.sh installs it")
    tmp = Path(tempfile.mkdtemp(prefix="msaxdpp-"))
    w = World(tmp)
    w.srv, w.cli = w.srv + "p", w.cli + "p"  # apart from test_xdp.py's
    sink = None
    try:
        w.build()
        sink = subprocess.Popen(
            ["ip", "netns", "exec", w.srv, "/usr/sbin/smtp-sink", "-u", "postfix",
             "-c", f"127.0.0.1:{SINK_PORT}", "64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sh("ip", "netns", "exec", w.srv, "/usr/bin/python3", "-c", WAIT_FOR_SINK)
        yield w
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=5)
        w.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def run_proxy(world, request, tmp_path, certs, users):
    world.pin = world.bpffs / request.node.name.replace("[", "-").replace("]", "")
    started = []

    def start(**kw):
        workdir = tmp_path / f"proxy{len(started)}"
        workdir.mkdir()
        p = ProxyInNamespace(world, workdir, certs, users, **kw)
        p.start()
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in started:
            p.stop()
            shutil.rmtree(p.ctl_dir, ignore_errors=True)
        world.tool("detach", "vs", ns=world.srv, check=False)
        shutil.rmtree(world.pin, ignore_errors=True)


def dropped(p, reason):
    return p.stats().get(f"xdp_dropped_packets_{reason}", 0)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_ban_drops_in_the_kernel_then_unban(run_proxy, mode):
    p = run_proxy(xdp={"mode": mode})
    assert f"msg=xdp-attached interface=vs mode={mode}" in p.log()
    assert p.submit(CLI4_A) == "sent"
    accepted, drops = p.stats()["sessions_accepted"], dropped(p, "manual")

    p.ctl("ban", CLI4_A, "--ttl", "1h")
    assert p.connects(CLI4_A) == "timeout"
    assert dropped(p, "manual") > drops
    assert p.stats()["sessions_accepted"] == accepted  # never reached accept()
    assert p.submit(CLI4_B) == "sent"  # a neighbour is untouched
    # The metrics endpoint shows the kernel's counters too.
    seen = dropped(p, "manual")
    m = p.metrics()
    assert m.get("msaproxy_xdp_dropped_packets_total", reason="manual") >= seen > drops
    assert m.get("msaproxy_xdp_dropped_bytes_total", reason="manual") > 0
    assert m.get("msaproxy_xdp_dropped_packets_total", reason="file") == 0
    assert m.get("msaproxy_xdp_passed_packets_total") > 0
    assert m.get("msaproxy_bans_total", source="manual") == 1
    assert m.get("msaproxy_blocklist_entries", source="manual") == 1
    # The entry's own count (the status page's drops per prefix): every
    # manual drop was this ban's.
    listed = [json.loads(x) for x in p.ctl("-j", "list").stdout.splitlines()]
    assert [(e["prefix"], e["xdp_drops"]) for e in listed] == \
        [(f"{CLI4_A}/32", dropped(p, "manual") - drops)]
    # A ban made permanent (the entry rewritten) keeps counting from there.
    p.ctl("ban", CLI4_A)
    assert p.connects(CLI4_A) == "timeout"
    listed = [json.loads(x) for x in p.ctl("-j", "list").stdout.splitlines()]
    assert listed[0]["xdp_drops"] == dropped(p, "manual") - drops > seen - drops

    p.ctl("unban", CLI4_A)
    assert p.submit(CLI4_A) == "sent"


def test_cidr_and_ipv6(run_proxy):
    p = run_proxy()
    p.ctl("ban", "198.51.100.0/28")       # .10 inside, .20 outside
    p.ctl("ban", "2001:db8:1::/112")     # ::10 inside, ::2:10 outside
    # Both client addresses share one host and one neighbour entry for
    # the server; the banned one asks first, from a cold cache.  Its
    # neighbour solicitation must pass (as ARP does for IPv4), or the
    # entry stays unresolved and the unbanned address times out too.
    for ns in (p.world.cli, p.world.srv):
        sh("ip", "-n", ns, "neigh", "flush", "all")
    assert p.connects(CLI4_A) == "timeout"
    assert p.connects(CLI4_B) == "ok"
    assert p.connects(CLI6_A) == "timeout"
    neigh = sh("ip", "-n", p.world.cli, "-6", "neigh", "show", SRV6).stdout
    assert "lladdr" in neigh, f"the server's address did not resolve: {neigh!r}"
    assert p.connects(CLI6_B) == "ok"
    assert p.submit(CLI6_B) == "sent"
    # Each prefix counted its own drops; together, every manual drop.
    listed = {e["prefix"]: e for e in
              (json.loads(x) for x in p.ctl("-j", "list").stdout.splitlines())}
    assert listed["198.51.100.0/28"]["xdp_drops"] > 0
    assert listed["2001:db8:1::/112"]["xdp_drops"] > 0
    assert sum(e["xdp_drops"] for e in listed.values()) == dropped(p, "manual")


def test_allowlist_wins_and_ttl_expires(run_proxy):
    p = run_proxy(blocklist={"allow": [CLI4_B]})
    p.ctl("ban", "198.51.100.0/25")
    assert p.connects(CLI4_A) == "timeout"
    assert p.submit(CLI4_B) == "sent"
    p.ctl("unban", "198.51.100.0/25")
    p.ctl("ban", CLI4_A, "--ttl", "2s")
    assert p.connects(CLI4_A) == "timeout"
    wait_for(lambda: p.connects(CLI4_A) == "ok", 6, "the 2 s ban to expire in the kernel")


def test_failed_logins_earn_a_kernel_ban(run_proxy):
    p = run_proxy(limits={"ip": {"auth_failures": "2/1h", "ban_time": "1h"}})
    for _ in range(2):
        assert p.submit(CLI4_A, password="wrong").startswith(("auth-failed", "error"))
    wait_for(lambda: "msg=ip-banned" in p.log(), 5, "the ban")
    drops = dropped(p, "auto")
    assert p.connects(CLI4_A) == "timeout"
    assert dropped(p, "auto") > drops
    listed = [json.loads(x) for x in p.ctl("-j", "list").stdout.splitlines()]
    assert [(e["prefix"], e["reason"]) for e in listed] == [(f"{CLI4_A}/32", "auto")]
    assert p.submit(CLI4_B) == "sent"


def test_ban_survives_a_restart(run_proxy):
    p = run_proxy()
    p.ctl("ban", CLI4_A, "--ttl", "1h")
    assert p.connects(CLI4_A) == "timeout"
    p.stop()
    # Stopped: the program is detached, nothing listens (refused, not dropped).
    assert p.connects(CLI4_A).startswith("error")
    q = run_proxy()
    listed = [json.loads(x) for x in q.ctl("-j", "list").stdout.splitlines()]
    assert [(e["prefix"], e["reason"]) for e in listed] == [(f"{CLI4_A}/32", "manual")]
    assert 3500 < listed[0]["expires_in_s"] <= 3600
    assert q.connects(CLI4_A) == "timeout"
    assert q.submit(CLI4_B) == "sent"


def test_bans_work_after_dropping_root(run_proxy):
    """Switched to nobody with only CAP_NET_BIND_SERVICE left (no CAP_BPF,
    no CAP_NET_ADMIN), the proxy still writes the kernel's maps (ban,
    unban), detaches at stop, and the next start (as root) takes over what
    it left pinned."""
    p = run_proxy(privileges={"user": "nobody", "seccomp": "kill"})
    assert "capabilities=cap_net_bind_service no_new_privs=1" in p.log()
    status = open(f"/proc/{p.proc.pid}/status").read()
    assert "\nUid:\t65534\t65534\t65534\t65534\n" in status, status
    assert "\nCapEff:\t0000000000000400\n" in status, status  # bit 10 only
    assert "\nCapBnd:\t0000000000000400\n" in status, status
    assert "\nNoNewPrivs:\t1\n" in status
    assert p.submit(CLI4_A) == "sent"
    drops = dropped(p, "manual")
    p.ctl("ban", CLI4_A)
    assert p.connects(CLI4_A) == "timeout"
    assert dropped(p, "manual") > drops
    p.ctl("unban", CLI4_A)
    assert p.connects(CLI4_A) == "ok"
    p.ctl("ban", CLI4_A, "--ttl", "1h")
    p.stop()
    assert p.connects(CLI4_A).startswith("error")  # detached, nothing listens
    q = run_proxy()
    assert q.connects(CLI4_A) == "timeout"
    assert q.submit(CLI4_B) == "sent"


def test_a_failed_load_pins_an_older_builds_tries_back(run_proxy, world):
    """The start takes the first layout's tries out before the load.  When
    the load then fails (here a pinned msa_stats of a layout libbpf will
    not reuse), the older build's tries are pinned back as they were: the
    proxy runs with the blocklist at accept() only and says why (libbpf's
    first warning, the cause, with its last), and the
    next start that can load still carries the ban over."""
    assert world.tool("old-pins", CLI4_A, ns=world.srv).strip() == "pinned=4"
    assert world.tool("bad-pin", "msa_stats", ns=world.srv).strip() == "pinned=msa_stats"
    p = run_proxy()
    failed = re.search(r"msg=xdp-unavailable error=\"([^\n]*)", p.log())
    assert failed and "loading the XDP blocklist" in failed.group(1), p.log()
    # libbpf's first warning names the cause, not only where it gave up.
    assert re.search(r"libbpf: couldn't reuse pinned map at '\S+/msa_stats'",
                     failed.group(1)), failed.group(1)
    assert "pinning the older build" not in failed.group(1)  # all put back
    assert "xdp-maps-migrated" not in p.log()
    assert sorted(x.name for x in world.pin.iterdir()) == \
        ["msa_allow4", "msa_allow6", "msa_block4", "msa_block6", "msa_stats"]
    p.stop()

    (world.pin / "msa_stats").unlink()
    q = run_proxy()
    assert re.search(r"msg=xdp-maps-migrated pin_dir=\S+ entries=1 ", q.log())
    assert q.connects(CLI4_A) == "timeout"
    listed = json.loads(q.ctl("-j", "list").stdout.splitlines()[0])
    assert (listed["prefix"], listed["reason"]) == (CLI4_A + "/32", "manual")
    assert q.submit(CLI4_B) == "sent"


REDIS_PORT, OTHER_SMTP_PORT, OTHER_METRICS_PORT = 2610, 2588, 9588


def test_an_older_builds_pinned_bans_are_carried_over(run_proxy, world):
    """Pins of the first map layout (16-byte values, before the per-entry
    drop counter) hold a manual ban: the start carries it into the new
    maps instead of refusing them, and the kernel still drops the client."""
    assert world.tool("old-pins", CLI4_A, ns=world.srv).strip() == "pinned=4"
    p = run_proxy()
    assert re.search(r"msg=xdp-maps-migrated pin_dir=\S+ entries=1 ", p.log())
    assert p.connects(CLI4_A) == "timeout"
    listed = json.loads(p.ctl("-j", "list").stdout.splitlines()[0])
    assert (listed["prefix"], listed["reason"]) == (CLI4_A + "/32", "manual")
    assert listed["xdp_drops"] >= 1  # the new layout counts per entry
    assert p.submit(CLI4_B) == "sent"


def test_a_ban_on_another_node_reaches_this_nodes_kernel_map(run_proxy, world,
                                                              tmp_path):
    """Fleet mode (docs/CLUSTER.md): two nodes share one Redis, all in the
    server namespace.  The node with XDP on vs never hears of the ban from
    its own control socket: the other node (no XDP) bans, Redis publishes,
    and this node's kernel map gets the entry: the client's SYNs vanish.
    The same for a line added to the other node's blocklist file."""
    redis = subprocess.Popen(
        ["ip", "netns", "exec", world.srv, "redis-server", "--port", str(REDIS_PORT),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sh("ip", "netns", "exec", world.srv, "/usr/bin/python3", "-c",
           WAIT_FOR_SINK.replace(str(SINK_PORT), str(REDIS_PORT)))
        cluster = {"redis": f"127.0.0.1:{REDIS_PORT}", "timeout": "500ms"}
        listed = tmp_path / "other-block.txt"
        listed.write_text("")
        xdp_node = run_proxy(cluster={**cluster, "node_id": "with-xdp"})
        other = run_proxy(
            cluster={**cluster, "node_id": "no-xdp"}, xdp={"enabled": False},
            blocklist={"files": [str(listed)]},
            listeners=[{"address": f"*:{OTHER_SMTP_PORT}", "mode": "starttls"}],
            metrics={"listen": f"127.0.0.1:{OTHER_METRICS_PORT}"})
        assert xdp_node.submit(CLI4_A) == "sent"
        drops = dropped(xdp_node, "manual")
        other.ctl("ban", CLI4_A, "--ttl", "1h")
        wait_for(lambda: "msg=cluster-ban network=198.51.100.10/32" in xdp_node.log(),
                 1.0, "the ban to reach the XDP node")
        assert "from=no-xdp" in xdp_node.log()
        assert xdp_node.connects(CLI4_A) == "timeout"
        assert dropped(xdp_node, "manual") > drops  # dropped in the kernel
        assert xdp_node.submit(CLI4_B) == "sent"
        other.ctl("unban", CLI4_A)
        wait_for(lambda: "msg=cluster-unban network=198.51.100.10/32" in xdp_node.log(),
                 1.0, "the unban to reach the XDP node")
        assert xdp_node.submit(CLI4_A) == "sent"
        drops = dropped(xdp_node, "file")
        listed.write_text(CLI4_B + "\n")
        other.ctl("reload")
        wait_for(lambda: "msg=cluster-files entries=1" in xdp_node.log(),
                 1.0, "the other node's file to reach the XDP node")
        assert xdp_node.connects(CLI4_B) == "timeout"
        assert dropped(xdp_node, "file") > drops
        assert xdp_node.submit(CLI4_A) == "sent"
    finally:
        redis.terminate()
        redis.wait(timeout=10)


ADMIN = r"""
import base64, json, ssl, sys, urllib.error, urllib.parse, urllib.request
url, ca, login = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False  # the test certificate names 127.0.0.1
auth = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
out = {}
try:
    with urllib.request.urlopen(urllib.request.Request(
            url + "/status.json?admin=1", headers=auth), timeout=5,
            context=ctx) as r:
        d = json.loads(r.read())
    out["get"] = [r.status, d["admin"]["user"]]
    form = urllib.parse.urlencode({"csrf": d["admin"]["csrf"], "op": "ban",
                                   "target": "192.0.2.0/24"}).encode()
    host = url.split("//", 1)[1]
    with urllib.request.urlopen(urllib.request.Request(
            url + "/status/action", data=form, headers={
                **auth, "Origin": url}), timeout=5, context=ctx) as r:
        out["post"] = [r.status, json.loads(r.read())]
except urllib.error.HTTPError as e:
    out["error"] = [e.code, e.read().decode()]
except Exception as e:
    out["error"] = [0, type(e).__name__ + ": " + str(e)]
print(json.dumps(out))
"""


def admin_from_client(p, url):
    r = sh("ip", "netns", "exec", p.world.cli, "/usr/bin/python3", "-c", ADMIN,
           url, p.ca, "demo:demo-pass-1", timeout=30)
    return json.loads(r.stdout)


def test_status_admin_from_another_host_needs_tls(run_proxy, certs):
    """The status page's admin actions from a non-loopback peer (the client
    namespace): refused over plain HTTP, done over TLS
    (metrics.tls)."""
    metrics = {"listen": f"{SRV4}:{METRICS_PORT}", "admin": True}
    p = run_proxy(metrics=metrics)
    out = admin_from_client(p, f"http://{SRV4}:{METRICS_PORT}")
    assert out["error"][0] == 403 and "over TLS" in out["error"][1], out
    assert "msg=metrics-request-bad client=198.51.100." in p.log()
    assert p.ctl("-j", "list").stdout.strip() == ""
    p.stop()

    q = run_proxy(metrics={**metrics, "tls": {"cert": str(certs.ecdsa_cert),
                                              "key": str(certs.ecdsa_key)}})
    out = admin_from_client(q, f"https://{SRV4}:{METRICS_PORT}")
    assert out.get("get") == [200, "demo"], out
    assert out.get("post") == [200, {"ok": True}], out
    listed = [json.loads(x) for x in q.ctl("-j", "list").stdout.splitlines()]
    assert [(e["prefix"], e["reason"]) for e in listed] == [("192.0.2.0/24", "manual")]
    assert "msg=status-admin user=demo op=ban target=192.0.2.0/24 result=ok" in q.log()
    # Plain HTTP to the TLS endpoint gets no answer, and a wrong login
    # over TLS is still refused.
    r = sh("ip", "netns", "exec", q.world.cli, "curl", "-sS", "--max-time", "5",
           f"http://{SRV4}:{METRICS_PORT}/status.json", check=False, timeout=30)
    assert r.returncode != 0 and "HTTP/" not in r.stdout
    r = sh("ip", "netns", "exec", q.world.cli, "/usr/bin/python3", "-c", ADMIN,
           f"https://{SRV4}:{METRICS_PORT}", q.ca, "demo:wrong", timeout=30)
    assert json.loads(r.stdout)["error"][0] == 401
