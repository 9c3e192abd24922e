"""The bench's load generators count what really happened.

bench/ is measured, not tested for speed, but its instruments must be
right: every figure in bench/results/ comes from loadgen's report or the
outside client's (bench/outside_client.py, Python's smtplib).  These
drive build/bench/loadgen through the proxy into a recording backend and
compare its counts with what the backend received; check that --think
paces a session and --rate bounds arrivals; and that it refuses to send
anywhere but loopback outside a namespace of its own.  The outside
client gets the same: its counts against the backend's, on STARTTLS and
implicit TLS with the certificate verified, and its failures counted by
step (a refused login, a certificate it cannot verify, a message over
the size limit), never hidden.  The lock probe (bench/lockprobe.c, read
by bench/lockstat.py) counts lock operations in a short ctxbench run, and
one shared OpenSSL library context puts more of them on locks two
threads share than one context per thread does.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import DEMO_PASSWORDS

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOADGEN = os.environ.get("LOADGEN_BIN", os.path.join(TOP, "build/bench/loadgen"))
OUTSIDE = os.path.join(TOP, "bench/outside_client.py")


def loadgen(*args, timeout=60):
    if not os.access(LOADGEN, os.X_OK):
        pytest.fail(f"no loadgen at {LOADGEN} (make bench-build, or set LOADGEN_BIN)")
    p = subprocess.run([LOADGEN, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "loadgen-users"
    path.write_text("".join(f"{u}:{pw}\n" for u, pw in DEMO_PASSWORDS.items()))
    return path


def test_counts_match_what_the_backend_received(proxy, recording_backend, users_file):
    p = proxy([recording_backend.port])
    rc, res, err = loadgen("--port", p.starttls_port, "--users", users_file, "-c", 4,
                           "-n", 12, "--messages", 2, "--rcpts", 2, "--size", "3KB")
    assert rc == 0, err
    assert res["sessions_ok"] == 12 and res["sessions_failed"] == 0
    assert res["messages"] == 24 and res["handshakes"] == 12
    assert res["bytes"] == 24 * 3072
    got = recording_backend.wait_for_messages(24)
    time.sleep(0.3)  # nothing more arrives
    assert len(recording_backend.messages) == 24
    assert all(len(m["rcpt_tos"]) == 2 for m in got)
    # The message is --size bytes as received (dot-stuffing undone).
    assert {len(m["content"]) for m in got} == {3072}
    assert {m["xclient"].get("LOGIN") for m in got} <= set(DEMO_PASSWORDS)
    lat = res["latency_ms"]
    assert lat["session"]["n"] == 12 and lat["data"]["n"] == 24
    assert 0 < lat["data"]["p50"] <= lat["data"]["p99"] <= lat["data"]["max"]


def test_think_paces_the_messages_of_a_session(proxy, recording_backend, users_file):
    p = proxy([recording_backend.port])
    t0 = time.monotonic()
    rc, res, err = loadgen("--port", p.starttls_port, "--users", users_file, "-c", 1,
                           "-n", 1, "--messages", 5, "--think", "200ms")
    wall = time.monotonic() - t0
    assert rc == 0, err
    assert res["messages"] == 5 and res["params"]["think_s"] == 0.2
    assert wall >= 0.8  # four pauses between five messages
    assert len(recording_backend.wait_for_messages(5)) == 5


def test_open_loop_arrivals_follow_the_rate(proxy, recording_backend, users_file):
    p = proxy([recording_backend.port])
    rc, res, err = loadgen("--port", p.starttls_port, "--users", users_file,
                           "--rate", 40, "-d", 2, "--arrivals", "uniform")
    assert rc == 0, err
    # Uniform arrivals every 25 ms for 2 s: 80, give or take the edges.
    assert 78 <= res["sessions_ok"] <= 81 and res["sessions_failed"] == 0
    assert res["skipped_arrivals"] == 0


@pytest.mark.parametrize("host", ["192.0.2.1", "198.51.100.1", "2001:db8::1"])
def test_refuses_targets_outside_loopback(users_file, host):
    rc, res, err = loadgen("--host", host, "--port", 2587, "--users", users_file, "-n", 1,
                           timeout=10)
    assert rc == 2 and res is None
    assert "loopback" in err or "namespace" in err, err


def lockstat():
    spec = importlib.util.spec_from_file_location("lockstat",
                                                  os.path.join(TOP, "bench/lockstat.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for tool in (mod.PROBE, mod.CTXBENCH, mod.LOCKBENCH):
        if not os.access(tool, os.R_OK):
            pytest.fail(f"no {tool} (make bench-build)")
    return mod


def test_lock_probe_counts_shared_locks_per_handshake(tmp_path):
    ls = lockstat()
    res = ls.ctx(threads=3, counts=(3, 9), quiet=True)
    shared, own = res["shared"], res["per-thread"]
    for rows, totals in (shared, own):
        assert totals["hot_threads"] == 3
        # A TLS 1.3 handshake (both ends) takes OpenSSL locks by the
        # hundred; every one of them was counted on some lock.
        assert totals["ops"] > 100
        assert ls.by_owner(rows)["OpenSSL"]["ops"] > 100
    # The same handshakes take about the same locks either way ...
    assert 0.8 < own[1]["ops"] / shared[1]["ops"] < 1.25
    # ... but with one context per thread far fewer are shared: the
    # shared context's method store and RAND are every thread's.
    assert shared[1]["shared_ops"] > 0.5 * shared[1]["ops"]
    assert own[1]["shared_ops"] < 0.2 * own[1]["ops"]
    assert own[1]["shared_ops"] < shared[1]["shared_ops"] / 5
    busiest = max(r["busiest"] for r in shared[0].values())
    assert busiest > max(r["busiest"] for r in own[0].values())


def test_lock_probe_dump_names_threads_and_sites(tmp_path):
    ls = lockstat()
    cert, key = ls.make_cert(tmp_path)
    out = tmp_path / "locks.tsv"
    ls.run_probed([str(ls.CTXBENCH), "--cert", str(cert), "--key", str(key), "--threads", "2",
                   "--mode", "per-thread", "--handshakes", "2"], out, timeout=60)
    dump = ls.Dump(out)
    assert sorted(name for _, name in dump.threads.values()).count("main") == 1
    assert len(dump.threads) == 3
    # Every lock has the stack where a thread first took it, resolved to
    # libcrypto's exported names somewhere up the stack.
    assert dump.locks and all(lk["first"] for lk in dump.locks.values())
    sites = {dump.site(next(iter(lk["first"].values())))[0] for lk in dump.locks.values()}
    assert "OpenSSL" in sites


def test_lockbench_reports_every_placement():
    ls = lockstat()
    rows = ls.contention(threads=3, ops=2000)
    ops = {(r["op"], r["threads"]) for r in rows}
    for op in ("mutex", "rdlock", "wrlock", "atomic"):
        assert {(op, 1), (op, 2), (op, 3)} <= ops
    assert all(r["serial_ns"] > 0 for r in rows if r["op"] != "pingpong")
    assert [r for r in rows if r["op"] == "pingpong"][0]["transfer_ns"] > 0


def outside(*args, timeout=60):
    p = subprocess.run([sys.executable, OUTSIDE, *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_outside_client_counts_match_the_backend(proxy, recording_backend, users_file,
                                                  certs, tls):
    p = proxy([recording_backend.port])
    port = p.starttls_port if tls == "starttls" else p.implicit_port
    rc, res, err = outside("--port", port, "--tls", tls, "--users", users_file,
                           "--cafile", certs.ca, "-c", 3, "--procs", 2, "-d", 1.5,
                           "--size", "4KB")
    assert rc == 0, err
    ok = res["sessions_ok"]
    assert ok > 0 and res["sessions_failed"] == 0
    assert res["failures"] == {} and res["failure_detail"] == {}
    assert res["messages"] == ok and res["handshakes"] == ok
    assert res["bytes"] == ok * 4096
    assert all(k.startswith("TLSv1.3 ") for k in res["tls"])
    assert sum(res["tls"].values()) == ok
    got = recording_backend.wait_for_messages(ok)
    time.sleep(0.3)  # nothing more arrives
    assert len(recording_backend.messages) == ok
    # The message is --size bytes as received: smtplib's dot-stuffing undone.
    assert {len(m["content"]) for m in got} == {4096}
    # Its 40th line starts with '.': stuffed by smtplib, unstuffed on the way.
    assert all(b"\r\n." in m["content"] and b"\r\n.." not in m["content"] for m in got)
    assert {m["xclient"].get("LOGIN") for m in got} <= set(DEMO_PASSWORDS)
    lat = res["latency_ms"]
    assert lat["session"]["n"] == ok and lat["handshake"]["n"] == ok
    assert 0 < lat["session"]["p50"] <= lat["session"]["p99"] <= lat["session"]["max"]
    assert 1.5 <= res["wall_s"] < 15 and res["client_cpu_s"] > 0
    params = res["params"]
    assert params["tls"] == tls and params["verify"] is True
    assert params["concurrency"] == 3 and params["procs"] == 2 and params["size"] == 4096


def test_outside_client_counts_every_failure(proxy, recording_backend, tmp_path, certs):
    p = proxy([recording_backend.port])
    bad = tmp_path / "bad-users"
    bad.write_text("demo:not-the-password\n")
    rc, res, err = outside("--port", p.starttls_port, "--users", bad, "--cafile", certs.ca,
                           "-c", 2, "-n", 4)
    assert rc == 1
    assert res["sessions_ok"] == 0 and res["sessions_failed"] == 4
    assert res["failures"] == {"auth": 4}
    assert res["failure_detail"] == {"auth 535": 4}, res["failure_detail"]
    assert "auth 535" in err  # the server's words shown
    # A certificate the client cannot verify: the TLS step fails, counted.
    rc, res, err = outside("--port", p.starttls_port, "--users", bad,
                           "--cafile", certs.other_cert, "-c", 1, "-n", 2)
    assert rc == 1 and res["sessions_failed"] == 2
    assert res["failure_detail"] == {"starttls tls: certificate": 2}, res["failure_detail"]
    # A message over the size limit: refused at MAIL (SIZE=), charged to it.
    small = proxy([recording_backend.port], **{"limits.max_message_size": "10KB"})
    users = tmp_path / "users"
    users.write_text("demo:demo-pass-1\n")
    rc, res, err = outside("--port", small.starttls_port, "--users", users,
                           "--cafile", certs.ca, "-c", 1, "-n", 2, "--size", "20KB")
    assert rc == 1 and res["sessions_failed"] == 2 and res["failures"] == {"mail": 2}
    assert res["failure_detail"] == {"mail 552": 2}, res["failure_detail"]
    assert recording_backend.messages == []


def test_outside_client_refuses_targets_outside_loopback(users_file):
    rc, res, err = outside("--host", "192.0.2.1", "--port", 2587, "--users", users_file,
                           "-n", 1, timeout=10)
    assert rc == 2 and res is None
    assert "loopback" in err, err
