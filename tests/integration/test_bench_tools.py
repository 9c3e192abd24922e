"""The bench's load generator counts what really happened.

bench/ is measured, not tested for speed, but its instrument must be
right: every figure in bench/results/ comes from loadgen's report.  These
drive build/bench/loadgen through the proxy into a recording backend and
compare its counts with what the backend received; check that --think
paces a session and --rate bounds arrivals; and that it refuses to send
anywhere but loopback outside a namespace of its own.
"""

import json
import os
import subprocess
import time

import pytest

from conftest import DEMO_PASSWORDS

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOADGEN = os.environ.get("LOADGEN_BIN", os.path.join(TOP, "build/bench/loadgen"))


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
