"""What the shipped monitoring files rely on, against a real proxy:
the certificate expiry and memory cap metrics the alert rules use
(contrib/prometheus/msaproxy-alerts.yml), and every metric name the
Grafana dashboard (contrib/grafana/msaproxy.json) and the alert rules
query present in a real scrape.  promtool itself checks the rules and runs
their unit tests (make alerts-check)."""

import datetime
import json
import re
import shutil
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import SERVER_NAME, run
from test_metrics import metrics_proxy, scrape

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "contrib/prometheus/msaproxy-alerts.yml"
DASHBOARD = ROOT / "contrib/grafana/msaproxy.json"
METRIC_RE = re.compile(r"\bmsaproxy_[a-z0-9_]+\b")

# Families a scrape shows only where the thing is there: the XDP program's
# counters need blocklist.xdp attached (root, a NIC: tests/integration/
# test_xdp_proxy.py covers them), jemalloc's figures a build with jemalloc
# (the ASan build has none).  Everything else must be in the scrape below.
ONLY_WITH_XDP = {
    "msaproxy_xdp_dropped_packets_total", "msaproxy_xdp_dropped_bytes_total",
    "msaproxy_xdp_passed_packets_total", "msaproxy_xdp_allowed_packets_total",
}
ONLY_WITH_JEMALLOC = {
    "msaproxy_memory_allocated_bytes", "msaproxy_memory_active_bytes",
    "msaproxy_memory_resident_bytes", "msaproxy_memory_mapped_bytes",
}


def not_after(cert):
    """The certificate's notAfter as Unix time, from openssl(1)."""
    out = run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)]).stdout
    text = out.decode() if isinstance(out, bytes) else out
    stamp = text.strip().split("=", 1)[1]
    when = datetime.datetime.strptime(stamp, "%b %d %H:%M:%S %Y GMT")
    return int(when.replace(tzinfo=datetime.timezone.utc).timestamp())


def test_certificate_expiry_and_memory_cap_metrics(proxy, recording_backend, certs):
    p = metrics_proxy(proxy, [recording_backend.port],
                      **{"limits.max_memory": "512MB"})
    m = scrape(p.metrics_port)
    assert m.types["msaproxy_tls_certificate_expiry_seconds"] == "gauge"
    assert m.get("msaproxy_tls_certificate_expiry_seconds",
                 cert=str(certs.ecdsa_cert)) == not_after(certs.ecdsa_cert)
    assert m.get("msaproxy_memory_limit_bytes") == 512 * 1024 * 1024

    # A reload with a second certificate and no cap: the new generation's
    # certificates, each with its own date.
    p.rewrite_config(**{
        "tls.certificates": [
            {"cert": str(certs.ecdsa_cert), "key": str(certs.ecdsa_key)},
            {"cert": str(certs.rsa_cert), "key": str(certs.rsa_key)},
        ],
        "limits.max_memory": "off",
    })
    p.ctl("reload")
    m2 = scrape(p.metrics_port)
    assert m2.get("msaproxy_config_generation") == 2
    series = {dict(labels)["cert"]: v for (name, labels), v in m2.samples.items()
              if name == "msaproxy_tls_certificate_expiry_seconds"}
    assert series == {str(certs.ecdsa_cert): not_after(certs.ecdsa_cert),
                      str(certs.rsa_cert): not_after(certs.rsa_cert)}
    assert m2.get("msaproxy_memory_limit_bytes") == 0


def test_alert_rules_pass_promtool():
    """The same as make alerts-check, so a plain pytest run sees a broken
    rule file too."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run scripts/install-deps.sh (package prometheus)")
    check = subprocess.run([promtool, "check", "rules", str(ALERTS)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"SUCCESS: (\d+) rules found", check.stdout)


def dashboard_queries(dash):
    """Every PromQL text of the dashboard: panel targets (rows' nested
    panels too), template variable queries, annotations."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append(t["expr"])
            walk(p.get("panels", []))
    walk(dash["panels"])
    for var in dash["templating"]["list"]:
        q = var.get("query")
        if isinstance(q, dict):
            out.append(q["query"])
        if var.get("definition"):
            out.append(var["definition"])
    for a in dash["annotations"]["list"]:
        if a.get("expr"):
            out.append(a["expr"])
    return out


def alert_queries():
    rules = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_dashboard_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "msaproxy" and dash["title"]
    ids, cells = set(), set()
    titles = []
    for p in dash["panels"]:
        assert p["id"] not in ids, f"panel id {p['id']} twice"
        ids.add(p["id"])
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
        titles.append(p["title"])
        if p["type"] == "row":
            continue
        assert p["targets"], f"panel {p['title']} queries nothing"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            # every query follows the instance selector
            assert 'instance=~"$instance"' in t["expr"], t["expr"]
    rows = {t for p, t in zip(dash["panels"], titles) if p["type"] == "row"}
    assert rows == {"Node", "Sessions", "TLS and AUTH", "Limits and bans",
                    "Backends", "XDP", "Memory, workers and reloads",
                    "Cluster (fleet mode)"}


def test_every_queried_metric_is_in_a_real_scrape(proxy, recording_backend,
                                                  redis, certs):
    """A fleet-mode proxy (Redis up) with a message relayed, a failed
    login and a ban: every metric name the dashboard and the alert rules
    query must be in its scrape (histograms by their _bucket/_sum/_count
    samples), but for the documented XDP and jemalloc ones."""
    r = redis()
    p = metrics_proxy(proxy, [recording_backend.port],
                      cluster={"redis": f"127.0.0.1:{r.port}", "timeout": "300ms"},
                      **{"limits.max_memory": "256MB"})
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP("127.0.0.1", p.starttls_port, timeout=15) as s:
        s.starttls(context=ctx)
        s.login("demo", "demo-pass-1")
        s.sendmail("demo@example.test", ["r@example.test"],
                   b"Subject: dash\r\n\r\nhello\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, timeout=15,
                          context=ctx) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("demo", "wrong")
    p.ctl("ban", "192.0.2.0/24")
    m = scrape(p.metrics_port)
    assert m.get("msaproxy_cluster_up") == 1
    assert m.sum("msaproxy_auth_total", result="failure") >= 1
    assert m.get("msaproxy_blocklist_entries", source="manual") == 1
    present = {name for name, _ in m.samples}

    allowed = set(ONLY_WITH_XDP)
    if not m.has("msaproxy_memory_allocated_bytes"):
        assert p.sanitized(), "no jemalloc figures from a jemalloc build"
        allowed |= ONLY_WITH_JEMALLOC
    dash = json.loads(DASHBOARD.read_text())
    for where, queries in (("dashboard", dashboard_queries(dash)),
                           ("alert rules", alert_queries())):
        used = {n for q in queries for n in METRIC_RE.findall(q)}
        assert used, where
        missing = sorted(n for n in used - present - allowed)
        assert not missing, f"{where} query metrics no scrape has: {missing}"
    # The dashboard covers every area the issue names.
    used = {n for q in dashboard_queries(dash) for n in METRIC_RE.findall(q)}
    for family in ("msaproxy_sessions_active", "msaproxy_tls_handshakes_total",
                   "msaproxy_auth_total", "msaproxy_limit_hits_total",
                   "msaproxy_backend_up", "msaproxy_xdp_dropped_packets_total",
                   "msaproxy_memory_allocated_bytes",
                   "msaproxy_config_reloads_total", "msaproxy_cluster_up"):
        assert family in used, family
