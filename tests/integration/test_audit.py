"""Config audit: `msaproxy -t`, `--strict`, `-T`, and the audit at start.

Each test writes a real configuration (the conftest defaults, changed where
the test says), runs the built binary on it, and checks the exact
"FILE:LINE: key: why" lines it prints, its exit status, and, for a normal
start, the log.  Secrets on disk: the binary must refuse a world-readable
users file or key (at -t and at start) and warn about a foreign group.
Certificates with chosen dates are made with `openssl ca`.
"""

import datetime
import os
import re
import shutil
import subprocess

import pytest
from conftest import (LOOPBACK, MSAPROXY_BIN, default_proxy_config, free_port,
                      run, to_yaml)

NOGROUP = 65534  # a group that is neither root's nor the proxy's


def write_config(tmp_path, certs, users, **changes):
    """The conftest config (one STARTTLS listener) with dotted-key changes;
    returns (path, text)."""
    cfg = default_proxy_config(certs, users, [free_port()])
    cfg["listeners"] = [{"address": f"{LOOPBACK}:{free_port()}", "mode": "starttls"}]
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    path = tmp_path / "msaproxy.yaml"
    text = to_yaml(cfg) + "\n"
    path.write_text(text)
    return path, text


def line_of(text, needle, after=None):
    """1-based number of the first line containing needle (after the
    line containing `after`, when given)."""
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, l in enumerate(lines) if after in l) + 1
    return next(i + 1 for i in range(start, len(lines)) if needle in lines[i])


def check(path, *args):
    return subprocess.run([MSAPROXY_BIN, *args, "-c", str(path)],
                          capture_output=True, text=True, timeout=30)


def warnings_of(proc):
    return [l for l in proc.stderr.splitlines() if l.startswith("msaproxy: warning: ")]


def test_good_config_has_no_findings(tmp_path, certs, users):
    path, _ = write_config(tmp_path, certs, users)
    proc = check(path, "-t")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"msaproxy: {path}: configuration ok\n"
    assert proc.stderr == ""
    assert check(path, "-T").returncode == 0
    assert check(path, "-t", "--strict").returncode == 0


def test_weak_ciphers_warn_and_strict_fails(tmp_path, certs, users):
    path, text = write_config(
        tmp_path, certs, users,
        **{"tls.ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:AES128-SHA256"})
    line = line_of(text, "ciphers:")
    proc = check(path, "-t")
    assert proc.returncode == 0, proc.stderr
    assert warnings_of(proc) == [
        f"msaproxy: warning: {path}:{line}: tls.ciphers: weak TLS 1.2 ciphers "
        "enabled: AES128-SHA256 (not forward-secret, not AEAD); use ECDHE with "
        "AES-GCM or ChaCha20-Poly1305 only"]
    assert proc.stdout == f"msaproxy: {path}: configuration ok, 1 warning\n"
    for args in (["-t", "--strict"], ["-T"], ["--strict", "-t"]):
        strict = check(path, *args)
        assert strict.returncode == 1, args
        assert strict.stdout == ""
        assert strict.stderr.endswith(
            f"msaproxy: {path}: 1 warning, fatal with --strict\n")
    # TLS 1.3 only: the TLS 1.2 list is never used, nothing to say.
    path, _ = write_config(
        tmp_path, certs, users,
        **{"tls.ciphers": "AES128-SHA256", "tls.min_version": "TLSv1.3"})
    assert warnings_of(check(path, "-t")) == []


def test_limits_off_and_port_25(tmp_path, certs, users):
    path, text = write_config(
        tmp_path, certs, users,
        **{"limits.user": {"messages": "off", "recipients": "off", "bytes": "off"},
           "limits.login": {"failures": "off"},
           "limits.ip": {"connections": "off", "concurrency": 0,
                         "auth_failures": "off"},
           # -t never binds, so *:25 is safe to check.
           "listeners": [{"address": "*:25", "mode": "starttls"},
                         {"address": "*:2525", "mode": "implicit"},
                         {"address": "0.0.0.0:25", "mode": "implicit",
                          "allow": ["192.0.2.0/24"]}]})
    proc = check(path, "-t")
    assert proc.returncode == 0, proc.stderr
    assert warnings_of(proc) == [
        f"msaproxy: warning: {path}:{line_of(text, 'auth_failures:')}: "
        "limits.ip.auth_failures: off, and so is limits.login.failures: nothing "
        "slows down password guessing",
        f"msaproxy: warning: {path}:{line_of(text, 'limits:')}: limits: every "
        "limit is off (per user, per class, per login and per client network): "
        "one stolen password can send without bound",
        f"msaproxy: warning: {path}:{line_of(text, '*:25')}: "
        "listeners[0].address: *:25 is open to every client without an allow "
        "list; port 25 is for MTAs relaying to each other: serve submission on "
        "587/465, or list the clients in allow",
    ]
    assert check(path, "-T").returncode == 1


def test_world_readable_secrets_are_refused(tmp_path, certs, users):
    """-t and a start both refuse, with the file, its mode and the fix."""
    passwd = tmp_path / "passwd"
    shutil.copy(users.path, passwd)
    passwd.chmod(0o644)
    path, text = write_config(tmp_path, certs, users, **{"auth.passwd_file": passwd})
    proc = check(path, "-t")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"msaproxy: error: {path}:{line_of(text, 'passwd_file:')}: "
        f"auth.passwd_file: {passwd} is readable by every user on the host "
        "(mode 0644); chmod o-rwx it (0600, or 0640 owned by root:msaproxy)\n"
        f"msaproxy: {path}: 1 error in the audit\n")
    start = subprocess.run([MSAPROXY_BIN, "-c", str(path)], capture_output=True,
                           text=True, timeout=30)
    assert start.returncode == 1
    assert "is readable by every user on the host (mode 0644)" in start.stderr

    key = tmp_path / "key.pem"
    shutil.copy(certs.ecdsa_key, key)
    key.chmod(0o604)
    path, text = write_config(
        tmp_path, certs, users,
        **{"tls.certificates": [{"cert": certs.ecdsa_cert, "key": key}]})
    proc = check(path, "-t")
    assert proc.returncode == 1
    assert (f"msaproxy: error: {path}:{line_of(text, 'key:')}: "
            f"tls.certificates[0].key: {key} is readable by every user on the "
            "host (mode 0604)") in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="chgrp to another group needs root")
def test_group_readable_secrets(tmp_path, certs, users):
    """Group-readable is the packaged layout when the group is the proxy's
    (here root's, the test runs as root); another group is a warning."""
    passwd = tmp_path / "passwd"
    shutil.copy(users.path, passwd)
    passwd.chmod(0o640)
    os.chown(passwd, 0, os.getegid())
    path, text = write_config(tmp_path, certs, users, **{"auth.passwd_file": passwd})
    assert check(path, "-T").returncode == 0

    os.chown(passwd, 0, NOGROUP)
    import grp
    group = grp.getgrgid(NOGROUP).gr_name
    proc = check(path, "-t")
    assert proc.returncode == 0, proc.stderr
    assert warnings_of(proc) == [
        f"msaproxy: warning: {path}:{line_of(text, 'passwd_file:')}: "
        f"auth.passwd_file: {passwd} is readable by group {group} (mode 0640); "
        "chmod g-r it, or give it the proxy's own group"]
    assert check(path, "-T").returncode == 1


def ca_signed_cert(certs, d, not_before, not_after):
    """A certificate for the ecdsa key with the given dates (openssl ca)."""
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    cnf = d / "ca.cnf"
    cnf.write_text(
        "[ca]\ndefault_ca = test\n"
        f"[test]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\n"
        f"serial = {d}/serial\ndefault_md = sha256\npolicy = any\n"
        "unique_subject = no\n"
        "[any]\ncommonName = supplied\n"
        "[leaf]\nsubjectAltName = DNS:mail.example.test\n")
    csr, crt = d / "leaf.csr", d / "leaf.crt"
    run(["openssl", "req", "-new", "-key", str(certs.ecdsa_key),
         "-subj", "/CN=mail.example.test", "-out", str(csr)])
    fmt = "%Y%m%d%H%M%SZ"
    run(["openssl", "ca", "-batch", "-notext", "-config", str(cnf), "-extensions", "leaf",
         "-cert", str(certs.ca), "-keyfile", str(certs.dir / "ca.key"),
         "-in", str(csr), "-out", str(crt),
         "-startdate", not_before.strftime(fmt), "-enddate", not_after.strftime(fmt)])
    return crt


def test_certificate_dates(tmp_path, certs, users):
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)

    soon = ca_signed_cert(certs, tmp_path, now - day, now + 5 * day + datetime.timedelta(hours=1))
    path, text = write_config(
        tmp_path, certs, users,
        **{"tls.certificates": [{"cert": soon, "key": certs.ecdsa_key}]})
    proc = check(path, "-t")
    assert proc.returncode == 0, proc.stderr
    (warning,) = warnings_of(proc)
    assert re.fullmatch(
        rf"msaproxy: warning: {re.escape(str(path))}:{line_of(text, 'cert:')}: "
        rf"tls\.certificates\[0\]\.cert: {re.escape(str(soon))} expires on "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, in 5 days", warning), warning

    expired = ca_signed_cert(certs, tmp_path, now - 30 * day, now - day)
    path, text = write_config(
        tmp_path, certs, users,
        **{"tls.certificates": [{"cert": expired, "key": certs.ecdsa_key}]})
    proc = check(path, "-t")
    assert proc.returncode == 1
    assert re.search(
        rf"msaproxy: error: {re.escape(str(path))}:{line_of(text, 'cert:')}: "
        rf"tls\.certificates\[0\]\.cert: {re.escape(str(expired))} expired on ",
        proc.stderr), proc.stderr
    start = subprocess.run([MSAPROXY_BIN, "-c", str(path)], capture_output=True,
                           text=True, timeout=30)
    assert start.returncode == 1
    assert " expired on " in start.stderr


def test_start_logs_warnings(proxy, recording_backend):
    """A normal start runs the audit too: warnings become log lines."""
    p = proxy([recording_backend.port],
              **{"tls.ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:AES256-SHA"})
    m = p.wait_for_log(r"level=warn msg=config-warning detail=(\".*\")$")
    detail = m.group(1)
    assert f"{p.config_path}:" in detail
    assert ": tls.ciphers: weak TLS 1.2 ciphers enabled: AES256-SHA " in detail
    p.wait_for_log(r"msg=ready")  # and it started


def test_strict_start_is_refused(tmp_path, certs, users):
    path, _ = write_config(tmp_path, certs, users,
                           **{"tls.ciphers": "AES256-SHA"})
    proc = subprocess.run([MSAPROXY_BIN, "--strict", "-c", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.endswith(f"msaproxy: {path}: 1 warning, fatal with --strict\n")
    assert "msg=ready" not in proc.stderr
