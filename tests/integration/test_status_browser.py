"""The status page in a real browser: Debian's chromium, headless, driven
by playwright-core from npm (tests/browser/, installed by `make
browser-deps`; no browser download).  A proxy with traffic (a message over
STARTTLS, a failed LOGIN, a SIZE= over the limit, a user at 75 % of
its messages, a resumed TLS session, a session refused by
limits.max_sessions), two bans and a backend a health check found dead
and the operator disabled; metrics.admin on; tests/browser/status_page.js loads
/status and checks
every section shows those values, that the page refreshes by itself (a
ban made while it is open appears), that it makes no request outside the
proxy and logs no error (its CSP would report any), drives the admin
view (/status?admin: a login, a ban through the form, a backend disabled
through its button, a wrong CSRF token refused), and takes a
screenshot: a test artifact in build/test-artifacts/status.png
($MSAPROXY_ARTIFACTS), and docs/status.png when MSAPROXY_UPDATE_DOCS=1."""

import json
import os
import shutil
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import LOOPBACK, MSAPROXYCTL_BIN, free_port, wait_until
from test_metrics import metrics_proxy
import socket

from test_status import (ctl_json, greeted, resumed_handshake, send, settled,
                         status_json, traffic)

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests/browser"
CHROMIUM = "/usr/bin/chromium"


def browser_ready():
    problems = []
    if shutil.which("node") is None:
        problems.append("node missing (scripts/install-deps.sh: nodejs)")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} missing (scripts/install-deps.sh: chromium)")
    if not (BROWSER_DIR / "node_modules/playwright-core").is_dir():
        problems.append("tests/browser/node_modules missing: run make browser-deps")
    if problems:
        pytest.fail("; ".join(problems))


def over_size_limit(p):
    """MAIL with SIZE= over limits.max_message_size: a message_size hit."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15) as s:
        s.starttls(context=ctx)
        s.login("bob", "bob-pass-3")
        code, _ = s.mail("bob@example.test", ["SIZE=60000000"])
        assert code == 552


def test_status_page_in_chromium(proxy, recording_backend, tmp_path):
    browser_ready()
    dead = free_port()
    p = metrics_proxy(proxy, [recording_backend.port, dead],
                      **{"metrics.admin": True, "limits.max_sessions": 2,
                         "limits.user": {"messages": "4/1h"},
                         "backends.health_check": {"interval": "1s", "fall": 1}})
    traffic(p)
    over_size_limit(p)
    send(p, "demo", 2)  # 3 of demo's 4 messages: 75 % used
    resumed_handshake(p)
    # Two sessions held, a third refused (limits.max_sessions).  The
    # sessions above must be gone first: on a loaded machine the proxy
    # may still be closing one, and it counts against the two.
    wait_until(lambda: all(l["open"] == 0 for l in status_json(p)["listeners"]), 10,
               "the earlier sessions closed")
    held = [greeted(p.starttls_port), greeted(p.starttls_port)]
    try:
        wait_until(lambda: {l["address"]: l["open"] for l in status_json(p)["listeners"]}
                   [f"{LOOPBACK}:{p.starttls_port}"] == 2, 10, "two sessions open")
        with socket.create_connection((LOOPBACK, p.starttls_port), timeout=10) as c:
            c.recv(512)
        wait_until(lambda: {l["address"]: l for l in status_json(p)["listeners"]}
                   [f"{LOOPBACK}:{p.starttls_port}"]["refusals"]["max_sessions"] == 1,
                   10, "the refusal counted")
    finally:
        for c in held:
            c.close()
    # The dead backend: a health check finds it refused, before the
    # operator disables it.
    wait_until(lambda: {b["backend"]: b for b in status_json(p)["backends"]}
               [f"{LOOPBACK}:{dead}"]["last_change"], 15, "the health check")
    p.ctl("ban", "192.0.2.0/24", "--ttl", "1h")
    p.ctl("ban", "198.51.100.7/32")
    p.ctl("backend", "disable", f"{LOOPBACK}:{dead}")
    d = settled(p, 3, 1)
    # Two points of the history (one every 10 s, and now) for the charts.
    wait_until(lambda: len(status_json(p)["series"]["t"]) >= 2, 25,
               "two points of the history")
    assert d["limits"]["message_size"] == 1
    assert {b["backend"]: b["admin"] for b in d["backends"]}[f"{LOOPBACK}:{dead}"] == "disabled"

    artifacts = Path(os.environ.get("MSAPROXY_ARTIFACTS", ROOT / "build/test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shots = [str(tmp_path / "status.png"), str(artifacts / "status.png")]
    if os.environ.get("MSAPROXY_UPDATE_DOCS") == "1":
        shots.append(str(ROOT / "docs/status.png"))
    expect = {
        "url": f"http://{LOOPBACK}:{p.metrics_port}/status?refresh=1",
        "chromium": CHROMIUM,
        "screenshots": shots,
        "ctl": [MSAPROXYCTL_BIN, "-s", str(p.control_socket), "ban", "203.0.113.0/24",
                "--ttl", "10m"],
        "new_ban": "203.0.113.0/24",
        "version": d["node"]["version"],
        "workers": 2,
        "listeners": [[f"{LOOPBACK}:{p.starttls_port}", "starttls"],
                      [f"{LOOPBACK}:{p.implicit_port}", "implicit"]],
        "tls13_min": 2,
        "cert": str(p.config["tls"]["certificates"][0]["cert"]),
        "auth": {"PLAIN": [3, 0], "LOGIN": [0, 1]},  # demo twice, bob; alice wrong
        "tls_resumed_min": 1,
        "messages": 3,
        "refusals": {f"{LOOPBACK}:{p.starttls_port}": "max_sessions 1",
                     f"{LOOPBACK}:{p.implicit_port}": "-"},
        "latency": {f"{LOOPBACK}:{recording_backend.port}": r"^\d+\.\d / \d+\.\d ms$",
                    f"{LOOPBACK}:{dead}": "^-$"},
        "changes": {f"{LOOPBACK}:{recording_backend.port}": "^none since the start$",
                    f"{LOOPBACK}:{dead}": r"^\d{4}-\d\d-\d\d .* UTC, disabled \(operator\)$"},
        "users": [["demo", "75%", "1"]],
        "limits": {"message_size": 1},
        "backends": {f"{LOOPBACK}:{recording_backend.port}": "up",
                     f"{LOOPBACK}:{dead}": "disabled"},
        "bans": {"192.0.2.0/24": ["manual", r"^(59m|1h)"],
                 "198.51.100.7/32": ["manual", r"^permanent$"]},
        "admin": {"user": "demo", "password": "demo-pass-1",
                  "ban": "192.0.2.128/25",
                  "backend": f"{LOOPBACK}:{recording_backend.port}"},
        "admin_screenshots": [str(artifacts / "status-admin.png")],
    }
    spec = tmp_path / "expect.json"
    spec.write_text(json.dumps(expect))
    proc = subprocess.run(["node", str(BROWSER_DIR / "status_page.js"), str(spec)],
                          capture_output=True, text=True, timeout=120,
                          cwd=BROWSER_DIR)
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["refreshes"] >= 2
    for shot in shots:
        data = Path(shot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, shot
    # The ban the browser saw appear is the proxy's; the admin view's
    # actions are too: its ban made and lifted again, the backend
    # disabled, the ban with a wrong token not made.
    prefixes = {b["prefix"] for b in ctl_json(p, "list")}
    assert "203.0.113.0/24" in prefixes
    assert "192.0.2.128/25" not in prefixes and "203.0.113.99/32" not in prefixes
    assert {b["backend"]: b["admin"] for b in ctl_json(p, "backends")}[
        f"{LOOPBACK}:{recording_backend.port}"] == "disabled"
    p.wait_for_log(r"msg=status-admin user=demo op=ban target=192.0.2.128/25 result=ok")
    p.wait_for_log(r"msg=status-admin .*user=demo result=refused")
    assert status_json(p)["node"]["status"]["state"] == "running"
