"""TLS grading: Debian's testssl.sh against both listeners, default TLS
settings.

The proxy runs with every tls.* key at its default and serves an ECDSA and
an RSA certificate for the same name, so every TLS 1.2 suite of the default
list can be negotiated.  The certificates come from a test CA made here,
with a CRL and an OCSP URI and a 90-day life, like a real deployment:
testssl.sh rates a certificate without them HIGH, and that would grade the
test PKI, not the proxy.  The CA is handed to testssl.sh with --add-ca.

One scan per listener: the implicit-TLS one directly, the STARTTLS one with
--starttls smtp.  Each scan's JSON (--jsonfile) must show no finding rated
HIGH or CRITICAL and no scan problem; MEDIUM and LOW ones are printed.  On
top of testssl.sh's own ratings: only TLS 1.2 and 1.3 are offered, and
every offered cipher suite is forward-secret (ECDHE/DHE, or TLS 1.3) and
AEAD (GCM, CCM, ChaCha20-Poly1305).

Kept short and offline: only the checks that grade the server (-p
protocols, -P server preferences, -S server defaults and certificate, -U
vulnerabilities, -E ciphers per protocol); no client simulation, no
standard-category or separate forward-secrecy pass (-E lists every suite,
which the assertions check more strictly), no DNS (--nodns none), no
CRL/OCSP fetching (no --phone-out), --warnings batch so it never asks.
HEADER_MAXSLEEP=1: on the implicit port testssl.sh first sends an HTTP GET
to guess the service and waits that long (default 5 s) for an answer that
an SMTP server never gives.  No --connect-timeout/--openssl-timeout: they
wrap every connection in timeout(1) and an extra shell, which costs more
here than they could save; the whole scan is bounded instead.  The two
scans run one after the other: testssl.sh is one busy shell forking
openssl, and two at once on two cores took as long as two in a row.

WARN lines are printed, not failed: they are the scanner's own problems.
Two are expected with Debian's testssl.sh 3.0.8: no GOST engine in the
system openssl, and often "sessionresumption_ticket: check failed because
of connect problem" -- its s_client </dev/null closes right after a TLS 1.3
handshake, before the server's NewSessionTicket arrives, so it has no
ticket to resume with (the same happens against `openssl s_server`;
test_tls_config.py tests resumption properly).

testssl.sh missing: the tests skip, or fail when CI is set.
"""

import json
import os
import re
import shutil
import subprocess
import time
import types

import pytest

from conftest import SERVER_NAME, run

# A scan takes tens of seconds: make check leaves these out.
pytestmark = pytest.mark.slow

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
SCAN_TIMEOUT = 150  # seconds per scan; a scan takes about 60-80 s here
CHECKS = ["-p", "-S", "-U", "-E"]

# What the grading accepts for an offered suite (IANA names, as testssl.sh
# prints them last on each -E line).
TLS13_SUITES = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
}
TLS12_FS_AEAD = re.compile(
    r"^TLS_(ECDHE|DHE)_(ECDSA|RSA)_WITH_\w+_(GCM_SHA(256|384)|CCM|CCM_8|"
    r"POLY1305_SHA256)$"
)
FAIL_SEVERITIES = {"HIGH", "CRITICAL", "FATAL"}
REPORT_SEVERITIES = {"MEDIUM", "LOW", "WARN"}


@pytest.fixture(scope="module")
def testssl():
    if TESTSSL is None:
        why = "testssl.sh is not installed (Debian package testssl.sh)"
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must run the TLS grading")
        pytest.skip(why)
    return TESTSSL


def _key(path, kind):
    if kind == "ec":
        algo = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    else:
        algo = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    run(["openssl", "genpkey", *algo, "-out", str(path)])
    path.chmod(0o600)


@pytest.fixture(scope="module")
def graded_certs(tmp_path_factory):
    """A CA, and ECDSA P-256 and RSA 2048 certificates for SERVER_NAME,
    localhost and 127.0.0.1 with the extensions a public CA puts in."""
    d = tmp_path_factory.mktemp("graded-certs")
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    _key(ca_key, "ec")
    run(["openssl", "req", "-x509", "-new", "-key", str(ca_key), "-sha256",
         "-days", "400", "-subj", "/CN=msaproxy grading CA", "-out", str(ca_crt),
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    out = {"dir": d, "ca": ca_crt}
    for kind in ("ec", "rsa"):
        key, csr, crt, ext = (d / f"{kind}.{s}" for s in ("key", "csr", "crt", "ext"))
        _key(key, kind)
        usage = "digitalSignature" if kind == "ec" else "digitalSignature,keyEncipherment"
        ext.write_text(
            "basicConstraints = critical, CA:FALSE\n"
            f"keyUsage = critical, {usage}\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = DNS:{SERVER_NAME},DNS:localhost,IP:127.0.0.1\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid\n"
            "crlDistributionPoints = URI:http://ca.example.test/ca.crl\n"
            "authorityInfoAccess = OCSP;URI:http://ocsp.example.test/,"
            "caIssuers;URI:http://ca.example.test/ca.crt\n"
        )
        run(["openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={SERVER_NAME}",
             "-out", str(csr)])
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt),
             "-CAkey", str(ca_key), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
             "-days", "90", "-sha256", "-extfile", str(ext), "-out", str(crt)])
        out[kind] = (crt, key)
    return types.SimpleNamespace(**out)


@pytest.fixture
def graded_proxy(proxy, recording_backend, graded_certs):
    """The proxy with every tls.* key at its default and both certificates.
    127.0.0.1 is exempt from the per-network limits: a scan opens hundreds
    of connections a minute, and a refused one would read as a protocol or
    cipher "not offered" (grade() checks that none was refused)."""
    return proxy([recording_backend.port], **{
        "tls": None,
        "tls.certificates": [
            {"cert": graded_certs.ec[0], "key": graded_certs.ec[1]},
            {"cert": graded_certs.rsa[0], "key": graded_certs.rsa[1]},
        ],
        "limits.ip.allow": ["127.0.0.1/32"],
    })


def scan(testssl, target, workdir, ca, starttls=False):
    """Run testssl.sh on target; returns (findings, seconds, stdout)."""
    jsonfile = workdir / ("starttls.json" if starttls else "implicit.json")
    cmd = [testssl, "--quiet", "--color", "0", "--warnings", "batch",
           "--nodns", "none", "--add-ca", str(ca), *CHECKS, "--jsonfile", str(jsonfile)]
    if starttls:
        cmd += ["--starttls", "smtp"]
    cmd.append(target)
    env = dict(os.environ, HEADER_MAXSLEEP="1")
    began = time.monotonic()
    # The exit status counts findings in a way 3.0 does not document; the
    # JSON is what is graded, and a scan that did not finish has no scanTime.
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=workdir, timeout=SCAN_TIMEOUT)
    seconds = time.monotonic() - began
    if not jsonfile.exists():
        pytest.fail(f"testssl.sh wrote no JSON (exit {proc.returncode})\n"
                    f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-2000:]}")
    findings = json.loads(jsonfile.read_text())
    return findings, seconds, proc.stdout


def offered_suites(findings):
    """{protocol: [IANA name, ...]} from the -E lines
    ("TLS 1.2   xc02c   ECDHE-ECDSA-AES256-GCM-SHA384  ECDH 253 ... IANA")."""
    suites = {}
    for f in findings:
        m = re.match(r"cipher-(\w+?)_x[0-9a-f]+$", f["id"])
        if m:
            suites.setdefault(m.group(1), []).append(f["finding"].split()[-1])
    return suites


def grade(findings, seconds, stdout, label, proxy_log):
    """Assert everything the issue asks of one scan; print the rest."""
    print(f"\ntestssl.sh {label}: {seconds:.0f} s, {len(findings)} findings")
    assert "msg=session-refused" not in proxy_log, \
        f"{label}: the proxy refused scan connections; the results would be wrong"
    by_id = {f["id"]: f for f in findings}
    for f in findings:
        if f["severity"] in REPORT_SEVERITIES:
            print(f"  {f['severity']:8} {f['id']}: {f['finding']}")
    if "scanTime" not in by_id:
        pytest.fail(f"{label}: the scan did not finish\n{stdout[-4000:]}")
    bad = [f for f in findings if f["severity"] in FAIL_SEVERITIES
           # Debian's openssl has no GOST engine; this is about the scanner.
           and f["id"] != "engine_problem"]
    assert not bad, f"{label}: findings rated HIGH or worse:\n" + "\n".join(
        f"  {f['severity']} {f['id']}: {f['finding']}" for f in bad)

    offered = {p for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
               if p in by_id and by_id[p]["finding"].startswith("offered")}
    missing = [p for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
               if p not in by_id]
    assert not missing, f"{label}: no protocol result for {missing}"
    assert offered == {"TLS1_2", "TLS1_3"}, f"{label}: protocols offered: {sorted(offered)}"

    suites = offered_suites(findings)
    assert set(suites) == {"tls1_2", "tls1_3"}, f"{label}: suites by protocol: {suites}"
    weak = [s for s in suites["tls1_3"] if s not in TLS13_SUITES]
    weak += [s for s in suites["tls1_2"] if not TLS12_FS_AEAD.match(s)]
    assert not weak, f"{label}: suites that are not forward-secret AEAD: {weak}"
    # With an ECDSA and an RSA certificate, the whole default list is there.
    assert any("_ECDSA_" in s for s in suites["tls1_2"]), suites
    assert any("_RSA_" in s for s in suites["tls1_2"]), suites
    print(f"  suites: {suites}")


@pytest.mark.deadline(SCAN_TIMEOUT + 10)
def test_testssl_implicit_tls(testssl, graded_proxy, graded_certs, tmp_path):
    p = graded_proxy
    findings, seconds, stdout = scan(testssl, f"127.0.0.1:{p.implicit_port}",
                                     tmp_path, graded_certs.ca)
    grade(findings, seconds, stdout, "implicit TLS", p.log())


@pytest.mark.deadline(SCAN_TIMEOUT + 10)
def test_testssl_starttls(testssl, graded_proxy, graded_certs, tmp_path):
    p = graded_proxy
    findings, seconds, stdout = scan(testssl, f"127.0.0.1:{p.starttls_port}",
                                     tmp_path, graded_certs.ca, starttls=True)
    assert findings and any(f["id"] == "service" and f["finding"] == "smtp"
                            for f in findings), "testssl.sh did not speak STARTTLS"
    grade(findings, seconds, stdout, "STARTTLS", p.log())
