"""XDP blocklist on a real kernel with real packets (bpf/blocklist.bpf.c,
proxy/bans/blocklist.c through tests/xdp/xdp_tool.c).

Runs as root only.  The module builds its own world and tears it down:

    msaxdp-s-PID (server ns)                 msaxdp-c-PID (client ns)
    vs  198.51.100.1/25  2001:db8:1::1/64 ── vc  198.51.100.10 .20, ::10 ::2:10
    vs.100  198.51.100.129/26 (802.1Q 100) ── vc.100  198.51.100.130/26

A Python TCP listener (ports 2525 and 2526, dual stack) runs in the server
namespace and counts its accepts; a Python client agent runs in the client
namespace (connect with a chosen source address and a 1 s timeout, ICMP
echo, raw frames through AF_PACKET).  The program is attached to vs with
the tool; maps are pinned on a private bpffs mounted in a temporary
directory (not /sys/fs/bpf: `ip netns exec` remounts /sys and would hide
it).  Every wait is bounded; processes are stopped by PID; namespaces,
mounts and pins are removed in the fixtures' finalizers.

Not root, or the tool not built: every test is skipped with the reason,
except when the environment variable CI is set, where that skip is a
failure instead (CI must run these).  Tool: $XDP_TOOL, else
build/tests/xdp_tool (make xdp-tool).
"""

import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = Path(os.environ.get("XDP_TOOL", ROOT / "build" / "tests" / "xdp_tool"))

SRV4, CLI4_A, CLI4_B = "198.51.100.1", "198.51.100.10", "198.51.100.20"
SRV6, CLI6_A, CLI6_B = "2001:db8:1::1", "2001:db8:1::10", "2001:db8:1::2:10"
# Sources of hand-made frames: configured nowhere, so no other traffic
# ever carries them and drop counters move only for our frames.
RAW4, RAW6 = "198.51.100.99", "2001:db8:1::99"
PORT, OTHER_PORT = 2525, 2526
CONNECT_TIMEOUT = 1.0
AGENT_REPLY_TIMEOUT = 5.0


def _require_root_and_tool():
    reason = None
    if os.geteuid() != 0:
        reason = "XDP tests need root (network namespaces, bpffs, XDP attach)"
    elif not os.access(TOOL, os.X_OK):
        reason = f"{TOOL} not built (make xdp-tool, or set XDP_TOOL)"
    elif shutil.which("ip") is None:
        reason = "iproute2 (ip) not installed"
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so a skipped XDP test is a failure: {reason}")
    pytest.skip(reason)


def sh(*cmd, timeout=20, check=True):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


# ---------------------------------------------------------------------------
# Agents: one Python process per namespace, one command per line on stdin,
# one reply per line on stdout.
# ---------------------------------------------------------------------------

SERVER_AGENT = r"""
import json, socket, sys, threading
ports = [int(p) for p in sys.argv[1:]]
counts = {p: 0 for p in ports}
lock = threading.Lock()
socks = []
for p in ports:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", p))
    s.listen(128)
    socks.append((p, s))
def serve(p, s):
    while True:
        c, _ = s.accept()
        with lock:
            counts[p] += 1
        c.close()
for p, s in socks:
    threading.Thread(target=serve, args=(p, s), daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    with lock:
        print(json.dumps(counts), flush=True)
"""

CLIENT_AGENT = r"""
import ctypes, fcntl, os, select, socket, struct, sys, time

def connect(src, dst, port, timeout):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(float(timeout))
    try:
        s.bind((src, 0))
        s.connect((dst, int(port)))
        return "ok"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "error " + str(e).replace("\n", " ")
    finally:
        s.close()

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def ping(src, dst, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        s.bind((src, 0))
        ident = os.getpid() & 0xffff
        body = b"msaproxy-xdp-test"
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + body), ident, 1) + body
        s.sendto(pkt, (dst, 0))
        deadline = time.monotonic() + float(timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                return "timeout"
            data, addr = s.recvfrom(2048)
            ihl = (data[0] & 15) * 4
            t, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if t == 0 and rid == ident and addr[0] == dst:
                return "ok"
    finally:
        s.close()

def raw(ifname, hexframe):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        s.send(bytes.fromhex(hexframe))
        return "sent"
    finally:
        s.close()

print("ready", flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    try:
        out = {"connect": connect, "ping": ping, "raw": raw}[cmd](*args)
    except Exception as e:
        out = "error " + repr(e).replace("\n", " ")
    print(out, flush=True)
"""


class Agent:
    """A Python process inside a namespace, driven line by line."""

    def __init__(self, ns, code, *args):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code, *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        assert self._read(AGENT_REPLY_TIMEOUT) == "ready"

    def _read(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"agent {self.proc.pid} did not answer in {timeout}s")
            if select.select([self.proc.stdout], [], [], left)[0]:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"agent {self.proc.pid} exited: "
                                       f"{self.proc.stderr.read()}")
                return line.strip()

    def ask(self, *words, timeout=AGENT_REPLY_TIMEOUT):
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)


# ---------------------------------------------------------------------------
# The world: namespaces, veth, agents (module), pins (per test)
# ---------------------------------------------------------------------------

class World:
    def __init__(self, tmp):
        pid = os.getpid()
        self.srv, self.cli = f"msaxdp-s-{pid}", f"msaxdp-c-{pid}"
        self.tmp = tmp
        self.bpffs = tmp / "bpffs"
        self.server = self.client = None
        self.pin = None

    # -- set-up and tear-down -------------------------------------------
    def build(self):
        sh("ip", "netns", "add", self.srv)
        sh("ip", "netns", "add", self.cli)
        sh("ip", "link", "add", "vs", "netns", self.srv, "type", "veth",
           "peer", "name", "vc", "netns", self.cli)
        for ns, dev, addrs in (
            (self.srv, "vs", [f"{SRV4}/25", f"{SRV6}/64"]),
            (self.cli, "vc", [f"{CLI4_A}/25", f"{CLI4_B}/25", f"{CLI6_A}/64",
                              f"{CLI6_B}/64"]),
        ):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            for a in addrs:
                extra = ["nodad"] if ":" in a else []
                sh("ip", "-n", ns, "addr", "add", a, "dev", dev, *extra)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        self.bpffs.mkdir()
        sh("mount", "-t", "bpf", "bpf", self.bpffs)
        self.server = Agent(self.srv, SERVER_AGENT, PORT, OTHER_PORT)
        self.client = Agent(self.cli, CLIENT_AGENT)
        link = json.loads(sh("ip", "-n", self.srv, "-j", "link", "show", "vs").stdout)
        self.srv_mac = link[0]["address"]
        link = json.loads(sh("ip", "-n", self.cli, "-j", "link", "show", "vc").stdout)
        self.cli_mac = link[0]["address"]

    def destroy(self):
        for agent in (self.server, self.client):
            if agent:
                agent.stop()
        for ns in (self.srv, self.cli):
            sh("ip", "netns", "del", ns, check=False)
        if self.bpffs.exists():
            sh("umount", self.bpffs, check=False)
            self.bpffs.rmdir()

    # -- the tool -------------------------------------------------------
    def tool(self, *args, ns=None, check=True, drop_privs=False):
        cmd = [TOOL, "--pin", self.pin] + (["--drop-privs"] if drop_privs else [])
        cmd += list(args)
        if ns:
            cmd = ["ip", "netns", "exec", ns] + cmd
        return sh(*cmd, check=check).stdout

    def attach(self, mode="auto", dev="vs"):
        out = self.tool("attach", dev, mode, ns=self.srv)
        return out.strip().split("=", 1)[1]

    def detach(self, dev="vs"):
        self.tool("detach", dev, ns=self.srv)

    def stats(self):
        return {k: int(v) for k, v in
                (line.split() for line in self.tool("stats").splitlines())}

    def dropped(self):
        s = self.stats()
        return sum(v for k, v in s.items() if k.startswith("dropped_packets_"))

    def accepts(self, port=PORT):
        return json.loads(self.server.ask("count"))[str(port)]

    # -- traffic --------------------------------------------------------
    def connect(self, src, dst=None, port=PORT):
        dst = dst or (SRV6 if ":" in src else SRV4)
        return self.client.ask("connect", src, dst, port, CONNECT_TIMEOUT)

    def assert_connects(self, src, dst=None, port=PORT):
        before = self.accepts(port)
        assert self.connect(src, dst, port) == "ok"
        deadline = time.monotonic() + 2
        while self.accepts(port) == before:
            assert time.monotonic() < deadline, "listener never accepted"
            time.sleep(0.02)

    def assert_blocked(self, src, dst=None, port=PORT):
        """The SYN is dropped: connect times out, the drop counter rises,
        the listener accepts nothing."""
        accepts, dropped = self.accepts(port), self.dropped()
        assert self.connect(src, dst, port) == "timeout"
        assert self.dropped() > dropped
        assert self.accepts(port) == accepts

    def send_raw(self, frame):
        assert self.client.ask("raw", "vc", frame.hex()) == "sent"


@pytest.fixture(scope="module")
def world():
    _require_root_and_tool()
    tmp = Path(tempfile.mkdtemp(prefix="msaxdp-"))
    w = World(tmp)
    try:
        w.build()
        yield w
    finally:
        w.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def xdp(world, request):
    """Fresh pinned maps for each test; detached and removed afterwards."""
    world.pin = world.bpffs / request.node.name.replace("[", "-").replace("]", "")
    try:
        yield world
    finally:
        world.tool("detach", "vs", ns=world.srv, check=False)
        shutil.rmtree(world.pin, ignore_errors=True)


# ---------------------------------------------------------------------------
# Hand-made frames
# ---------------------------------------------------------------------------

def _mac(s):
    return bytes.fromhex(s.replace(":", ""))


def _tcp_syn(dport):
    return struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)


def _ipv4(src, dst, payload, proto=6, options=b""):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(payload),
                      1, 0x4000, 64, proto, 0, _ip4(src), _ip4(dst)) + options
    return hdr + payload


def _ip4(a):
    return bytes(int(x) for x in a.split("."))


def _ip6(a):
    import ipaddress
    return ipaddress.IPv6Address(a).packed


def _ipv6(src, dst, nexthdr, payload):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nexthdr, 64,
                       _ip6(src), _ip6(dst)) + payload


def _opts(nexthdr):
    """A hop-by-hop or destination options header: 8 bytes, PadN."""
    return struct.pack("!BB", nexthdr, 0) + bytes([1, 4, 0, 0, 0, 0])


def _frag(nexthdr, offset):
    return struct.pack("!BBHI", nexthdr, 0, offset << 3, 7)


def _eth(world, ethertype, tags=()):
    """Ethernet to vs, with VLAN tags [(tpid, vid), ...] outermost first."""
    head = _mac(world.srv_mac) + _mac(world.cli_mac)
    for tpid, vid in tags:
        head += struct.pack("!HH", tpid, vid)
    return head + struct.pack("!H", ethertype)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["native", "generic"])
def test_ban_unban(xdp, mode):
    """Both attach modes work on veth; a ban drops the SYN in the kernel
    (timeout, drop counter up, no accept); unban restores."""
    assert xdp.attach(mode) == mode
    assert f"mode={mode}" in xdp.tool("status", "vs", ns=xdp.srv)
    xdp.assert_connects(CLI4_A)
    xdp.tool("ban", CLI4_A)
    xdp.assert_blocked(CLI4_A)
    assert xdp.stats()["dropped_packets_manual"] >= 1
    xdp.tool("unban", CLI4_A)
    xdp.assert_connects(CLI4_A)


def test_cidr_covers_range_not_neighbour(xdp):
    xdp.attach()
    xdp.tool("ban", "198.51.100.8/29")  # .8 - .15: CLI4_A, not CLI4_B
    xdp.assert_blocked(CLI4_A)
    xdp.assert_connects(CLI4_B)
    assert "drop manual" in xdp.tool("match", CLI4_A)
    assert xdp.tool("match", CLI4_B).strip() == "pass"


def test_ipv6(xdp):
    xdp.attach()
    xdp.assert_connects(CLI6_A)
    xdp.tool("ban", "2001:db8:1::/112")  # ::0 - ::ffff: CLI6_A, not ::2:10
    xdp.assert_blocked(CLI6_A)
    xdp.assert_connects(CLI6_B)
    xdp.tool("unban", "2001:db8:1::/112")
    xdp.assert_connects(CLI6_A)


def test_ttl_ban_expires(xdp):
    """A TTL ban stops matching on its own (kernel clock), then counts as
    expired until swept; sweep deletes it."""
    xdp.attach()
    xdp.tool("ban", CLI4_A, 1500, "auto")
    start = time.monotonic()
    xdp.assert_blocked(CLI4_A)
    assert xdp.stats()["dropped_packets_auto"] >= 1
    while xdp.connect(CLI4_A) != "ok":
        assert time.monotonic() - start < 6, "TTL ban never expired"
    assert time.monotonic() - start >= 1.4
    assert xdp.stats()["expired_packets"] >= 1
    assert "ttl_ms=expired" in xdp.tool("list")
    assert xdp.tool("sweep").strip() == "swept=1"
    assert xdp.tool("list") == ""


def test_expired_specific_does_not_hide_live_prefix(xdp):
    """An expired /32 inside a live /24: the /24 still drops."""
    xdp.attach()
    xdp.tool("ban", "198.51.100.0/25")
    xdp.tool("ban", CLI4_A, 1, "auto")
    time.sleep(0.05)
    xdp.assert_blocked(CLI4_A)
    assert xdp.stats()["dropped_packets_manual"] >= 1


def test_allowlist_wins(xdp):
    xdp.attach()
    xdp.tool("ban", "198.51.100.0/25")
    xdp.tool("allow", CLI4_A)
    allowed = xdp.stats()["allowed_packets"]
    xdp.assert_connects(CLI4_A)
    xdp.assert_blocked(CLI4_B)
    assert xdp.stats()["allowed_packets"] > allowed
    assert xdp.tool("match", CLI4_A).strip() == "allowed"


def test_pinned_maps_survive_restart_and_crash(xdp):
    """Bans live in the pinned maps, not in the process: detach (clean
    shutdown) and attach again from a new process, the ban still holds.  A
    program left attached (a crash) is replaced, not refused, and the
    replacement is atomic in the same mode."""
    assert xdp.attach("native") == "native"
    assert (xdp.pin / "msa_link_vs").exists()  # the attachment is pinned
    xdp.tool("ban", CLI4_A)
    xdp.detach()
    assert not (xdp.pin / "msa_link_vs").exists()
    assert "detached" in xdp.tool("status", "vs", ns=xdp.srv)
    xdp.assert_connects(CLI4_A)
    assert xdp.attach("native") == "native"
    xdp.assert_blocked(CLI4_A)
    # "Crash": the attachment stays; the next run attaches over it.
    before = sh("ip", "-n", xdp.srv, "-j", "link", "show", "vs").stdout
    assert xdp.attach("auto") == "native"
    assert xdp.attach("generic") == "generic"  # other mode: swapped
    after = json.loads(sh("ip", "-n", xdp.srv, "-j", "link", "show", "vs").stdout)
    assert json.loads(before)[0]["xdp"]["prog"]["id"] != after[0]["xdp"]["prog"]["id"]
    xdp.assert_blocked(CLI4_A)
    assert "kept" not in xdp.tool("ban", CLI4_B)
    counts = xdp.stats()["dropped_packets_manual"]
    assert counts >= 2  # counters are pinned too


FOREIGN_PROG = """
#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int other_xdp(struct xdp_md *ctx)
{ return XDP_PASS; }
char _license[] __attribute__((section("license"), used)) = "GPL";
"""


def test_foreign_xdp_program_is_not_replaced(xdp, tmp_path):
    """Someone else's XDP program on the interface: attach refuses and
    leaves it there; detach refuses too."""
    src, obj = tmp_path / "other.bpf.c", tmp_path / "other.bpf.o"
    src.write_text(FOREIGN_PROG)
    multiarch = sh("clang", "-print-multiarch").stdout.strip()
    sh("clang", "-O2", "-target", "bpf", f"-I/usr/include/{multiarch}", "-c", src,
       "-o", obj)
    sh("ip", "-n", xdp.srv, "link", "set", "dev", "vs", "xdpgeneric", "obj", obj,
       "sec", "xdp")
    try:
        proc = sh("ip", "netns", "exec", xdp.srv, TOOL, "--pin", xdp.pin, "attach",
                  "vs", check=False)
        assert proc.returncode == 1
        assert "another XDP program is attached" in proc.stderr
        assert 'name "other_xdp"' in proc.stderr
        proc = sh("ip", "netns", "exec", xdp.srv, TOOL, "--pin", xdp.pin, "detach",
                  "vs", check=False)
        assert proc.returncode == 1
        state = json.loads(sh("ip", "-n", xdp.srv, "-j", "link", "show", "vs").stdout)
        assert state[0]["xdp"]["prog"]["name"] == "other_xdp"
    finally:
        sh("ip", "-n", xdp.srv, "link", "set", "dev", "vs", "xdpgeneric", "off",
           check=False)


def test_scope_tcp_ports(xdp):
    """Scope tcp-ports: only TCP to the listed ports is dropped; other
    ports and ICMP from the same banned source still pass."""
    xdp.attach()
    xdp.tool("ban", CLI4_A)
    xdp.tool("scope", "tcp-ports", PORT, 465)
    assert xdp.tool("scope").strip() == f"tcp-ports {PORT} 465"
    xdp.assert_blocked(CLI4_A, port=PORT)
    xdp.assert_connects(CLI4_A, port=OTHER_PORT)
    assert xdp.client.ask("ping", CLI4_A, SRV4, 1) == "ok"
    assert xdp.tool("match", CLI4_A, OTHER_PORT).strip() == "pass"
    assert "drop" in xdp.tool("match", CLI4_A, PORT)
    xdp.tool("scope", "all")
    assert xdp.client.ask("ping", CLI4_A, SRV4, 0.5) == "timeout"


def _verdict(xdp, frame):
    """Send one hand-made frame to vs; did the program drop it?"""
    before = xdp.stats()
    xdp.send_raw(frame)
    # Counters usually move before the send returns (veth delivers in the
    # sender's context); the bounded wait covers a delayed NAPI run.
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        now = xdp.stats()
        if sum(now[k] - before[k] for k in now if k.startswith("dropped_packets")):
            return "drop"
        if now["passed_packets"] > before["passed_packets"]:
            time.sleep(0.05)  # not a late drop of ours either
            return "drop" if xdp.dropped() != sum(
                before[k] for k in before if k.startswith("dropped_packets")) else "pass"
        time.sleep(0.02)
    return "lost"  # the program never saw it


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_vlan_tagged_frames(xdp, mode):
    """802.1Q, 802.1AD + 802.1Q (QinQ) tagged frames from a banned source
    are dropped, IPv4 and IPv6; unbanned they pass; three tags pass (the
    documented limit)."""
    xdp.attach(mode)
    syn4 = _ipv4(RAW4, SRV4, _tcp_syn(PORT))
    syn6 = _ipv6(RAW6, SRV6, 6, _tcp_syn(PORT))
    q, qinq = [(0x8100, 100)], [(0x88A8, 200), (0x8100, 300)]
    assert _verdict(xdp, _eth(xdp, 0x0800, q) + syn4) == "pass"
    xdp.tool("ban", RAW4)
    xdp.tool("ban", RAW6)
    assert _verdict(xdp, _eth(xdp, 0x0800, q) + syn4) == "drop"
    assert _verdict(xdp, _eth(xdp, 0x0800, qinq) + syn4) == "drop"
    assert _verdict(xdp, _eth(xdp, 0x86DD, q) + syn6) == "drop"
    assert _verdict(xdp, _eth(xdp, 0x86DD, qinq) + syn6) == "drop"
    assert _verdict(xdp, _eth(xdp, 0x0800, [(0x8100, 1)] * 3) + syn4) == "pass"
    xdp.tool("unban", RAW4)
    assert _verdict(xdp, _eth(xdp, 0x0800, qinq) + syn4) == "pass"


def test_parsing_with_raw_frames(xdp):
    """Frames the stack would not make on its own: IPv4 options, IPv6
    extension headers and fragments, ARP, truncated headers.  Each frame
    is sent alone and the drop counter checked."""
    xdp.attach()
    xdp.tool("ban", RAW4)
    xdp.tool("ban", RAW6)
    syn4 = _ipv4(RAW4, SRV4, _tcp_syn(PORT))

    def verdict(frame):
        return _verdict(xdp, frame)

    assert verdict(_eth(xdp, 0x0800) + syn4) == "drop"
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, _mac(xdp.cli_mac),
                      _ip4(RAW4), b"\0" * 6, _ip4(SRV4))
    assert verdict(_eth(xdp, 0x0806) + arp) == "pass"
    assert verdict(_eth(xdp, 0x0800) + syn4[:10]) == "pass"  # truncated IP

    # Scope tcp-ports: the port must be found behind options/extensions.
    xdp.tool("scope", "tcp-ports", PORT)
    opt4 = _ipv4(RAW4, SRV4, _tcp_syn(PORT), options=b"\x01\x01\x01\x00")
    assert verdict(_eth(xdp, 0x0800) + opt4) == "drop"
    assert verdict(_eth(xdp, 0x0800) + _ipv4(RAW4, SRV4, _tcp_syn(OTHER_PORT))) == "pass"
    assert verdict(_eth(xdp, 0x0800) + syn4[:24]) == "pass"  # no TCP header
    v6 = _ipv6(RAW6, SRV6, 0, _opts(60) + _opts(6) + _tcp_syn(PORT))
    assert verdict(_eth(xdp, 0x86DD) + v6) == "drop"
    v6 = _ipv6(RAW6, SRV6, 44, _frag(6, 0) + _tcp_syn(PORT))
    assert verdict(_eth(xdp, 0x86DD) + v6) == "drop"  # first fragment
    v6 = _ipv6(RAW6, SRV6, 44, _frag(6, 1) + b"\0" * 24)
    assert verdict(_eth(xdp, 0x86DD) + v6) == "pass"  # later fragment
    v6 = _ipv6(RAW6, SRV6, 6, _tcp_syn(OTHER_PORT))
    assert verdict(_eth(xdp, 0x86DD, [(0x8100, 100)]) + v6) == "pass"
    v6 = _ipv6(RAW6, SRV6, 6, _tcp_syn(PORT))
    assert verdict(_eth(xdp, 0x86DD, [(0x8100, 100)]) + v6) == "drop"


def test_updates_after_dropping_privileges(xdp):
    """What the proxy does after dropping root: with uid 65534 and no
    capabilities, the already-open map fds still take bans, unbans,
    reads and sweeps (kernel >= 6.5; see docs/XDP.md)."""
    xdp.attach()
    out = xdp.tool("ban", CLI4_A, drop_privs=True)
    assert "kept" not in out
    xdp.assert_blocked(CLI4_A)
    assert CLI4_A in xdp.tool("list", drop_privs=True)
    xdp.tool("unban", CLI4_A, drop_privs=True)
    xdp.assert_connects(CLI4_A)
    # A clean shutdown after dropping root: the link fd held since start-up
    # detaches without CAP_NET_ADMIN; the pin it cannot remove any more is
    # defunct and the next start clears it.
    xdp.tool("ban", CLI4_A)
    xdp.assert_blocked(CLI4_A)
    xdp.tool("detach", "vs", ns=xdp.srv, drop_privs=True)
    assert "detached" in xdp.tool("status", "vs", ns=xdp.srv)
    xdp.assert_connects(CLI4_A)
    assert xdp.attach() == "native"
    xdp.assert_blocked(CLI4_A)


def test_blocklist_file_reload_is_a_diff(xdp, tmp_path):
    """apply: new file entries added, vanished file entries removed,
    manual bans untouched; a bad file changes nothing and names its line."""
    xdp.attach()
    f = tmp_path / "blocklist"
    f.write_text("# feed\n198.51.100.8/29\n203.0.113.0/24  # docs\n\n")
    assert xdp.tool("apply", f).strip() == "added=2 removed=0 unchanged=0 kept=0"
    xdp.tool("ban", "192.0.2.1")
    xdp.assert_blocked(CLI4_A)
    assert xdp.stats()["dropped_packets_file"] >= 1
    f.write_text("203.0.113.0/24\n2001:db8:dead::/48\n")
    assert xdp.tool("apply", f).strip() == "added=1 removed=1 unchanged=1 kept=0"
    xdp.assert_connects(CLI4_A)
    listed = xdp.tool("list")
    assert "192.0.2.1/32 reason=manual" in listed
    assert "198.51.100.8/29" not in listed
    f.write_text("203.0.113.0/24\n198.51.100.1/24\n")
    proc = sh(TOOL, "--pin", xdp.pin, "apply", f, check=False)
    assert proc.returncode == 1
    assert f"{f}:2: host bits set" in proc.stderr
    assert xdp.tool("list") == listed
