"""Reloads and the listening sockets (issue 18, item 19): a listener that
stays in the config keeps its SO_REUSEPORT sockets across a reload, so a
client connecting while the proxy reloads is never refused.  A thread
connects continuously (bounded in count and time) through 20 reloads, half
by msaproxyctl and half by SIGHUP, while the reloads add and remove a third
listener beside the two that stay; not one connect may be refused."""

import signal
import socket
import threading
import time

from conftest import LOOPBACK, free_ports, wait_until

RELOADS = 20
MAX_CONNECTS = 200000
CONNECT_SECONDS = 120


def listening_inodes(port):
    """The socket inodes listening on LOOPBACK:port (/proc/net/tcp): one
    per worker; the same inodes after a reload are the same sockets."""
    want = f"0100007F:{port:04X}"
    inodes = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[1] == want and f[3] == "0A":  # TCP_LISTEN
            inodes.add(int(f[9]))
    return inodes


class Connector(threading.Thread):
    """Connects to each port in turn until stopped; counts the outcomes."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports = ports
        self.stop_event = threading.Event()
        self.ok = 0
        self.refused = []
        self.other = []

    def run(self):
        deadline = time.monotonic() + CONNECT_SECONDS
        i = 0
        while (not self.stop_event.is_set() and i < MAX_CONNECTS
               and time.monotonic() < deadline):
            port = self.ports[i % len(self.ports)]
            i += 1
            try:
                with socket.create_connection((LOOPBACK, port), timeout=5):
                    self.ok += 1
            except ConnectionRefusedError:
                self.refused.append((port, time.monotonic()))
            except OSError as e:
                self.other.append((port, repr(e)))


def test_connects_through_reloads_are_never_refused(proxy, recording_backend):
    p = proxy([recording_backend.port])
    (extra,) = free_ports(1)
    kept = [p.starttls_port, p.implicit_port]
    base_listeners = list(p.config["listeners"])
    sockets_before = {port: listening_inodes(port) for port in kept}
    for port, inodes in sockets_before.items():
        assert len(inodes) == p.config["workers"], (port, inodes)
    conn = Connector(kept)
    conn.start()
    try:
        wait_until(lambda: conn.ok >= 20, 10, "the first connects")
        for n in range(RELOADS):
            listeners = list(base_listeners)
            if n % 2 == 0:  # a third listener comes and goes
                listeners.append({"address": f"{LOOPBACK}:{extra}", "mode": "starttls"})
            # The kept ones in another order, too: matched by address.
            if n % 4 == 1:
                listeners.reverse()
            p.config["listeners"] = listeners
            p.rewrite_config(**{"limits.command_timeout": f"{5 + n % 3}m"})
            since = p.mark()
            before = conn.ok
            if n % 2 == 0:
                p.ctl("reload")
            else:
                p.proc.send_signal(signal.SIGHUP)
            p.wait_for_log(rf"msg=reloaded generation={n + 2} ", since=since)
            wait_until(lambda: conn.ok > before + 5, 10,
                       f"connects going on after reload {n + 1}")
    finally:
        conn.stop_event.set()
        conn.join(timeout=10)
    assert not conn.is_alive(), "the connect thread did not stop"
    assert conn.refused == [], (
        f"{len(conn.refused)} of {conn.ok + len(conn.refused)} connects refused "
        f"during reloads: {conn.refused[:5]}")
    assert conn.other == [], conn.other[:5]
    assert conn.ok > RELOADS * 5
    assert "msg=reload-failed" not in p.log()
    # Kept, not re-opened: the very sockets of the start still listen, and
    # the third listener's are gone.
    assert {port: listening_inodes(port) for port in kept} == sockets_before
    p.config["listeners"] = list(base_listeners)
    p.rewrite_config()
    since = p.mark()
    p.ctl("reload")
    p.wait_for_log(rf"msg=reloaded generation={RELOADS + 2} ", since=since)
    wait_until(lambda: not listening_inodes(extra), 10,
               "the removed listener's sockets to close")
