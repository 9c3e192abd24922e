"""What an operator is told, by `msaproxy -t`, by a start, and by
`msaproxyctl reload` and the control commands (issue 18, items 9-12, 17).

Every error about something the configuration names is written
"FILE:LINE: KEY: why", in words, with OpenSSL's own text after it where
OpenSSL had something to say; and it is the same text whether `-t`, a
start or a reload found it.  The tests below run the real binaries on real
files: each writes a configuration, breaks one thing, and compares the
line `msaproxy -t` prints with the one `msaproxyctl reload` prints for the
running proxy.

    reload            every error and warning reaches msaproxyctl: the
                      audit's findings (not "logged just before"), the
                      restart-only keys a reload leaves alone (exit 0 with
                      "warning:" lines on stdout), load errors
    files             certificate, key, key/certificate mismatch, users
                      file, control socket: FILE:LINE: KEY: at -t and at
                      reload
    preflight         -t fails when a path the start opens is wrong
                      (control.socket's directory, a blocklist file), with
                      the same line a start fails with
    nesting           a deeply nested or huge YAML file is refused at
                      once, with FILE:LINE
    small             the hostname/certificate-name warning, the status
                      and user limits wording, msaproxyctl without a
                      socket
"""

import os
import re
import shutil
import smtplib
import ssl
import subprocess
import types
from pathlib import Path

import pytest
from conftest import (LOOPBACK, MSAPROXY_BIN, MSAPROXYCTL_BIN, SERVER_NAME,
                      apply_override, default_proxy_config, free_ports, to_yaml)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def write_config(tmp_path, certs, users, name="msaproxy.yaml", **changes):
    """The conftest config (one STARTTLS listener, a control socket path
    that -t checks but nothing binds) with dotted-key changes; returns
    (path, text)."""
    backend, listener = free_ports(2)
    cfg = default_proxy_config(certs, users, [backend])
    cfg["listeners"] = [{"address": f"{LOOPBACK}:{listener}", "mode": "starttls"}]
    cfg["control"] = {"socket": "/tmp/msaproxy-check-only.sock"}
    for key, value in changes.items():
        apply_override(cfg, key, value)
    path = tmp_path / name
    text = to_yaml(cfg) + "\n"
    path.write_text(text)
    return path, text


def line_of(text, needle, after=None):
    """1-based number of the first line containing needle (after the line
    containing `after`, when given)."""
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, l in enumerate(lines) if after in l) + 1
    return next(i + 1 for i in range(start, len(lines)) if needle in lines[i])


def check(path, *args, timeout=30):
    return subprocess.run([MSAPROXY_BIN, "-t", *args, "-c", str(path)],
                          capture_output=True, text=True, timeout=timeout)


def check_error(path):
    """The one error `msaproxy -t` gives for path, without its prefix."""
    proc = check(path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert lines, proc.stderr
    return re.sub(r"^msaproxy: (error: )?", "", lines[0])


def reload_error(p):
    """Reload p through msaproxyctl; it must be refused: (first error
    without its prefix, the further lines)."""
    r = p.ctl("reload", check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines and lines[0].startswith("msaproxyctl: error: "), r.stderr
    assert all(l.startswith("msaproxyctl: ") for l in lines), r.stderr
    return lines[0][len("msaproxyctl: error: "):], lines[1:]


@pytest.fixture
def own_certs(tmp_path, certs):
    """Copies of the server certificate and keys that a test may break
    (the certs fixture is shared by the whole session)."""
    d = tmp_path / "tls"
    d.mkdir()
    for name in ("ecdsa.crt", "ecdsa.key", "rsa.crt", "rsa.key", "other.key"):
        shutil.copy(certs.dir / name, d / name)
        (d / name).chmod(0o600)
    return types.SimpleNamespace(
        cert=d / "ecdsa.crt", key=d / "ecdsa.key", rsa_cert=d / "rsa.crt",
        rsa_key=d / "rsa.key", other_key=d / "other.key", dir=d)


def own_cert_entry(c):
    return {"tls.certificates": [{"cert": c.cert, "key": c.key}]}


# ---------------------------------------------------------------------------
# 9. msaproxyctl reload returns every error and warning
# ---------------------------------------------------------------------------


def test_reload_prints_the_audit_errors_themselves(proxy, own_certs, users):
    """A world-readable key: the audit's FILE:LINE: KEY: why lines come
    back to msaproxyctl (first as the error, the rest after it, warnings
    too), the same words -t prints, and the old configuration runs on."""
    p = proxy([free_ports(1)[0]], **{
        "tls.certificates": [{"cert": own_certs.cert, "key": own_certs.key},
                             {"cert": own_certs.rsa_cert, "key": own_certs.rsa_key}]})
    own_certs.key.chmod(0o644)
    own_certs.rsa_key.chmod(0o644)
    p.rewrite_config(**{"tls.ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:AES128-SHA256"})
    text = p.config_path.read_text()
    first, more = reload_error(p)

    key_line = line_of(text, "key:", after="certificates:")
    rsa_line = line_of(text, "key:", after=str(own_certs.rsa_cert))
    assert first == (
        f"{p.config_path}:{key_line}: tls.certificates[0].key: {own_certs.key} is "
        "readable by every user on the host (mode 0644); chmod o-rwx it (0600, "
        "or 0640 owned by root:msaproxy)")
    assert (f"msaproxyctl: error: {p.config_path}:{rsa_line}: tls.certificates[1].key: "
            f"{own_certs.rsa_key} is readable by every user") in "\n".join(more)
    cipher_line = line_of(text, "ciphers:")
    assert (f"msaproxyctl: warning: {p.config_path}:{cipher_line}: tls.ciphers: weak TLS "
            "1.2 ciphers enabled: AES128-SHA256") in "\n".join(more)
    assert len(more) == 2, more
    assert "logged just before" not in first

    # -t says the same of the same file.
    t = check(p.config_path)
    assert t.returncode == 1
    assert f"msaproxy: error: {first}" in t.stderr.splitlines()

    status = p.ctl("-j", "status").stdout
    assert '"generation":1,' in status and '"reload_failures":1,' in status


def test_reload_warns_about_restart_only_keys(proxy, users):
    """A changed `workers` is left alone, and msaproxyctl says so: exit 0,
    a "warning:" line with the key's FILE:LINE on stdout."""
    p = proxy([free_ports(1)[0]])
    since = p.mark()
    p.rewrite_config(workers=3, **{"auth.threads": 3})
    text = p.config_path.read_text()
    r = p.ctl("reload")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [
        f"warning: {p.config_path}:{line_of(text, 'workers:')}: workers: changed from "
        "2 to 3: takes effect at restart (the running value stays until then)",
        f"warning: {p.config_path}:{line_of(text, 'threads:')}: auth.threads: changed: "
        "takes effect at restart (the running value stays until then)",
    ]
    assert r.stderr == ""
    p.wait_for_log(r"msg=reload-ignored key=workers ", since=since)
    p.wait_for_log(r"msg=reloaded generation=2 ", since=since)
    # Nothing changed since: nothing more to say, and still reported
    # against the running value (the start's).
    assert p.ctl("reload").stdout.count("warning: ") == 2


def test_reload_prints_a_load_error_with_file_and_line(proxy, users):
    p = proxy([free_ports(1)[0]])
    with open(p.config_path, "a") as f:
        f.write("limits:\n  max_line: 0\n")
    first, more = reload_error(p)
    line = len(p.config_path.read_text().splitlines()) - 1
    assert first.startswith(f"{p.config_path}:{line}: limits: duplicate key"), first
    assert more == []
    assert check_error(p.config_path) == first


# ---------------------------------------------------------------------------
# 10. Certificates, keys, users file: FILE:LINE: KEY: the same at -t and
#     at reload
# ---------------------------------------------------------------------------


def break_missing_cert(c, tmp_path):
    missing = tmp_path / "missing.crt"
    return ({"tls.certificates": [{"cert": missing, "key": c.key}]}, "cert:",
            "tls.certificates[0].cert",
            f"cannot open the certificate {missing}: No such file or directory")


def break_missing_key(c, tmp_path):
    missing = tmp_path / "missing.key"
    return ({"tls.certificates": [{"cert": c.cert, "key": missing}]}, "key:",
            "tls.certificates[0].key",
            f"cannot open the private key {missing}: No such file or directory")


def break_key_mismatch(c, tmp_path):
    return ({"tls.certificates": [{"cert": c.cert, "key": c.other_key}]}, "key:",
            "tls.certificates[0].key",
            f"{c.other_key} is not the private key of the certificate {c.cert}: "
            "OpenSSL: error:05800074:x509 certificate routines::key values mismatch")


def break_not_a_certificate(c, tmp_path):
    junk = tmp_path / "junk.crt"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    return ({"tls.certificates": [{"cert": junk, "key": c.key}]}, "cert:",
            "tls.certificates[0].cert", f"{junk} holds no PEM certificate: OpenSSL: ")


def break_users_file(c, tmp_path):
    missing = tmp_path / "no-users"
    return ({"auth.passwd_file": missing}, "passwd_file:", "auth.passwd_file",
            f"cannot open the users file {missing}: No such file or directory")


def break_users_dir(c, tmp_path):
    return ({"auth.passwd_file": tmp_path}, "passwd_file:", "auth.passwd_file",
            f"the users file {tmp_path} is not a regular file")


def break_backend_ca_file(c, tmp_path):
    missing = tmp_path / "backend-ca.crt"
    return ({"backends.servers": [{"address": f"{LOOPBACK}:{free_ports(1)[0]}",
                                   "tls": "starttls-verify", "ca_file": missing}]},
            "ca_file:", "backends.servers[0].ca_file",
            f"cannot open the CA file {missing}: No such file or directory")


@pytest.mark.parametrize("breakage", [
    break_missing_cert, break_missing_key, break_key_mismatch,
    break_not_a_certificate, break_users_file, break_users_dir,
    break_backend_ca_file,
], ids=lambda f: f.__name__[len("break_"):])
def test_file_errors_are_the_same_at_check_and_reload(proxy, own_certs, tmp_path,
                                                      breakage):
    changes, needle, key, why = breakage(own_certs, tmp_path)
    p = proxy([free_ports(1)[0]], **own_cert_entry(own_certs))
    p.rewrite_config(**changes)
    text = p.config_path.read_text()
    expected = f"{p.config_path}:{line_of(text, needle)}: {key}: {why}"

    at_check = check_error(p.config_path)
    first, more = reload_error(p)
    assert at_check == first
    assert first.startswith(expected), (first, expected)
    assert more == []
    # The running configuration still serves.
    assert '"generation":1,' in p.ctl("-j", "status").stdout


# ---------------------------------------------------------------------------
# 10 and 11. The control socket, and what else the start opens
# ---------------------------------------------------------------------------


def test_check_fails_when_the_control_socket_directory_is_missing(tmp_path, certs, users):
    """-t fails, at the key's line, when control.socket's directory does not
    exist; a start fails with the same line (as ExecStartPre and ExecStart
    would both)."""
    sock = tmp_path / "no-such-dir" / "control.sock"
    path, text = write_config(tmp_path, certs, users, **{"control.socket": sock})
    expected = (f"{path}:{line_of(text, 'socket:')}: control.socket: directory "
                f"{sock.parent}: No such file or directory (create it first)")
    assert check_error(path) == expected
    start = subprocess.run([MSAPROXY_BIN, "-c", str(path)], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert start.returncode == 1
    assert start.stderr.splitlines()[-1] == f"msaproxy: {expected}"


@pytest.mark.parametrize("case", ["regular-file", "parent-is-a-file", "too-long"])
def test_check_refuses_a_control_socket_it_could_not_bind(tmp_path, certs, users, case):
    if case == "regular-file":
        sock = tmp_path / "control.sock"
        sock.write_text("")
        why = f"{sock} exists and is not a socket"
    elif case == "parent-is-a-file":
        (tmp_path / "file").write_text("")
        sock = tmp_path / "file" / "control.sock"
        why = f"{tmp_path / 'file'} is not a directory"
    else:
        sock = Path("/tmp/" + "d" * 120 + "/control.sock")
        why = f"{sock}: path too long for a unix socket (at most 107 bytes)"
    path, text = write_config(tmp_path, certs, users, **{"control.socket": sock})
    assert check_error(path) == \
        f"{path}:{line_of(text, 'socket:')}: control.socket: {why}"


def test_reload_to_a_bad_control_socket_warns_as_check_errs(proxy, tmp_path):
    """control.socket needs a restart; a reload that changes it to a path
    the next start could not bind says so now, in -t's words."""
    p = proxy([free_ports(1)[0]])
    sock = tmp_path / "gone" / "control.sock"
    p.rewrite_config(**{"control.socket": str(sock)})
    text = p.config_path.read_text()
    expected = (f"{p.config_path}:{line_of(text, 'socket:')}: control.socket: "
                f"directory {sock.parent}: No such file or directory (create it first)")
    # -t on the new file: an error.
    assert check_error(p.config_path) == expected
    # The reload (through the socket still running): applied, and warned.
    r = p.ctl("reload")
    assert r.stdout.splitlines() == [
        f"warning: {p.config_path}:{line_of(text, 'socket:')}: control.socket: changed: "
        "takes effect at restart (the running value stays until then)",
        f"warning: {expected} (the next start fails)",
    ]


def test_check_reads_the_blocklist_files(tmp_path, certs, users):
    """A missing blocklist file failed the start but passed -t."""
    missing = tmp_path / "blocked.txt"
    path, text = write_config(tmp_path, certs, users,
                              **{"blocklist.files": [str(missing)]})
    assert check_error(path) == (
        f"{path}:{line_of(text, 'files:')}: blocklist.files[0]: {missing}: "
        "No such file or directory")
    missing.write_text("192.0.2.0/24\n")
    assert check(path).returncode == 0


@pytest.mark.parametrize("case", ["interface", "pin_dir"])
def test_check_looks_at_what_a_required_xdp_needs(tmp_path, certs, users, case):
    """With blocklist.xdp.required a start fails without its interfaces or
    pin directory; -t says so first (nothing is loaded or attached)."""
    xdp = {"enabled": True, "required": True, "interfaces": ["lo"],
           "pin_dir": str(tmp_path / "pins")}
    if case == "interface":
        xdp["interfaces"] = ["lo", "nosuch0"]
    else:
        xdp["pin_dir"] = str(tmp_path / "no-bpf-fs" / "pins")
    path, text = write_config(tmp_path, certs, users, **{"blocklist.xdp": xdp})
    if case == "interface":
        assert check_error(path) == (
            f"{path}:{line_of(text, 'interfaces:')}: blocklist.xdp.interfaces[1]: "
            "no network interface nosuch0 (xdp.required is set)")
    else:
        assert check_error(path) == (
            f"{path}:{line_of(text, 'pin_dir:')}: blocklist.xdp.pin_dir: cannot "
            f"create {xdp['pin_dir']}: {tmp_path / 'no-bpf-fs'} is not a directory "
            "(xdp.required is set)")


# ---------------------------------------------------------------------------
# 12. Deep nesting and size
# ---------------------------------------------------------------------------


def test_a_megabyte_of_nested_brackets_is_refused_at_once(tmp_path):
    """100,000 nested "[" took libyaml 54 s; the depth is counted as the
    events arrive (the subprocess is bounded by the test's own timeout,
    not measured: speed is for the bench)."""
    path = tmp_path / "deep.yaml"
    path.write_text("[" * (1024 * 1024 - 1))
    assert check_error(path) == (
        f"{path}:1: file: lists and mappings nested more than 64 deep; a "
        "configuration needs 6")


def test_deep_block_mappings_are_refused_at_the_line_past_the_bound(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("".join(" " * i + f"k{i}:\n" for i in range(100)) + " " * 100 + "v\n")
    assert check_error(path) == (
        f"{path}:65: file: lists and mappings nested more than 64 deep; a "
        "configuration needs 6")


def test_too_many_nodes_and_too_large_a_file_are_refused(tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text("hostname: [" + ",".join(["1"] * 100_001) + "]\n")
    assert check_error(many) == (
        f"{many}:1: file: more than 100000 values (YAML nodes); a configuration "
        "needs a few hundred")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (1024 * 1024) + "\n")
    assert check_error(big) == (
        f"{big}:1: file: larger than 1 MiB (1048576 bytes); a configuration needs a "
        "few KiB")


def test_reload_refuses_a_deep_file_as_check_does(proxy):
    p = proxy([free_ports(1)[0]])
    p.config_path.write_text(p.config_path.read_text() + "x: " + "[" * 100_000 + "\n")
    first, more = reload_error(p)
    line = len(p.config_path.read_text().splitlines())
    assert first == (f"{p.config_path}:{line}: file: lists and mappings nested more "
                     "than 64 deep; a configuration needs 6")
    assert check_error(p.config_path) == first


# ---------------------------------------------------------------------------
# 17. Small: hostname and certificates, status, user limits, no socket
# ---------------------------------------------------------------------------


def test_hostname_not_on_any_certificate_warns_at_check_and_reload(proxy, tmp_path,
                                                                   certs, users):
    name = "unlisted.example.test"
    path, text = write_config(tmp_path, certs, users, hostname=name)
    warning = (f"{path}:{line_of(text, 'hostname:')}: hostname: {name} is not among "
               f"the certificates' names ({SERVER_NAME}, localhost): clients that "
               "check the server's name will refuse it")
    t = check(path)
    assert t.returncode == 0
    assert t.stderr.splitlines() == [f"msaproxy: warning: {warning}"]
    assert check(path, "--strict").returncode == 1

    # The same at reload, returned to msaproxyctl; the covered name (and a
    # wildcard certificate's one-label match) says nothing.
    p = proxy([free_ports(1)[0]])
    p.rewrite_config(hostname=name)
    text = p.config_path.read_text()
    r = p.ctl("reload")
    assert r.stdout.splitlines() == [
        f"warning: {p.config_path}:{line_of(text, 'hostname:')}: hostname: {name} is "
        f"not among the certificates' names ({SERVER_NAME}, localhost): clients "
        "that check the server's name will refuse it"]
    p.rewrite_config(hostname="LOCALHOST")
    assert p.ctl("reload").stdout == ""

    # And a start logs it.
    started = proxy([free_ports(1)[0]], hostname=name)
    started.wait_for_log(r"level=warn msg=config-warning detail=\S*:\d+: hostname: "
                         + re.escape(name) + " is not among the certificates' names")


def test_wildcard_names_cover_one_label_only(tmp_path, certs, users):
    """RFC 6125 as clients apply it: "*.example.org" covers a.example.org,
    not a.b.example.org nor example.org; the subject CN is not a name."""
    d = tmp_path / "wild"
    d.mkdir()
    key, crt = d / "w.key", d / "w.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-days", "30", "-subj", "/CN=cn.example.org", "-addext",
                    "subjectAltName=DNS:*.example.org"],
                   check=True, capture_output=True, timeout=30)
    key.chmod(0o600)
    for name, covered in [("a.example.org", True), ("a.b.example.org", False),
                          ("example.org", False), ("cn.example.org", True),
                          ("xa.example.org", True)]:
        path, _ = write_config(tmp_path, certs, users, hostname=name,
                               **{"tls.certificates": [{"cert": crt, "key": key}]})
        t = check(path)
        assert t.returncode == 0, t.stderr
        assert ("hostname:" in t.stderr) == (not covered), (name, t.stderr)
    # A CN-only certificate covers nothing.
    subprocess.run(["openssl", "req", "-x509", "-key", str(key), "-out", str(crt),
                    "-days", "30", "-subj", f"/CN={SERVER_NAME}"],
                   check=True, capture_output=True, timeout=30)
    path, _ = write_config(tmp_path, certs, users,
                           **{"tls.certificates": [{"cert": crt, "key": key}]})
    assert "no DNS names in subjectAltName" in check(path).stderr


def test_status_says_reloads_applied_and_refused(proxy):
    p = proxy([free_ports(1)[0]])
    p.ctl("reload")
    p.ctl("reload")
    good = p.config_path.read_text()
    p.config_path.write_text(good + "workers: 1\n")
    assert p.ctl("reload", check=False).returncode == 1
    p.config_path.write_text(good)
    lines = p.ctl("status").stdout.splitlines()
    assert lines[1] == f"config {p.config_path}, generation 3; reloads: 2 applied, 1 refused"


def test_user_limits_in_the_configs_units(proxy, recording_backend, users):
    p = proxy([recording_backend.port], **{
        "limits.user": {"messages": "100/1m", "recipients": "500/1h burst 50",
                        "bytes": "1GB/30d", "messages_quota": "1000/1d"}})
    out = p.ctl("user", "limits", "demo").stdout
    assert out.splitlines() == [
        "messages 100 available of 100 (rate 100 per 1m)",
        "recipients 50 available of 50 (rate 500 per 1h)",
        "bytes 1GB available of 1GB (rate 1GB per 30d)",
        "quota 1000 available of 1000 (quota 1000 per 1d)",
    ]
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15) as s:
        s.starttls(context=ssl.create_default_context(cafile=str(p.ca)))
        s.login("demo", users.passwords["demo"])
        s.sendmail("demo@example.test", ["a@example.test"],
                   "Subject: x\r\n\r\n" + ("y" * 70 + "\r\n") * 4000)
    out = p.ctl("user", "limits", "demo").stdout.splitlines()
    assert out[0] == "messages 99 available of 100 (rate 100 per 1m)"
    # 1 GiB less ~280 KiB (and what ~400 bytes a second gave back since),
    # rounded down to a tenth of a MB.
    assert out[2] == "bytes 1023.7MB available of 1GB (rate 1GB per 30d)", out


def test_msaproxyctl_without_a_socket_says_how_to_name_one(tmp_path):
    r = subprocess.run([MSAPROXYCTL_BIN, "-s", str(tmp_path / "none.sock"), "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    assert r.stdout == ""
    assert r.stderr.splitlines()[0] == \
        f"msaproxyctl: {tmp_path / 'none.sock'}: No such file or directory"
    assert "control.socket" in r.stderr
    assert "-s SOCKET" in r.stderr and "--socket" in r.stderr
