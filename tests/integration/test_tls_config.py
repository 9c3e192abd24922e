"""TLS set-up, start-up checks and logs, end to end.

Certificates: ECDSA and RSA served together (the client's signature
algorithms pick), SNI choosing a certificate by name, old protocols refused,
the handshake timeout; `msaproxy -t` refusing a broken file with
file:line: key: why; every crypt scheme of the users file; passwords never
in the log.
"""

import os
import select
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import MSAPROXY_BIN, SERVER_NAME, config_check, SNI_OTHER_NAME, to_yaml


def tls_client(ca, **kw):
    ctx = ssl.create_default_context(cafile=str(ca))
    for key, value in kw.items():
        setattr(ctx, key, value)
    return ctx


def peer_cert_subject(port, ctx, server_hostname=SERVER_NAME):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            cert = tls.getpeercert()
            cipher = tls.cipher()
            version = tls.version()
    cn = dict(x[0] for x in cert["subject"])["commonName"]
    return cn, cipher, version


def test_ecdsa_and_rsa_for_one_name(proxy, recording_backend, certs):
    p = proxy([recording_backend.port], **{"tls.certificates": [
        {"cert": certs.ecdsa_cert, "key": certs.ecdsa_key},
        {"cert": certs.rsa_cert, "key": certs.rsa_key},
    ]})
    # A TLS 1.2 client that only accepts RSA signatures gets the RSA cert.
    rsa_only = tls_client(p.ca, maximum_version=ssl.TLSVersion.TLSv1_2)
    rsa_only.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    _, cipher, _ = peer_cert_subject(p.implicit_port, rsa_only)
    assert cipher[0] == "ECDHE-RSA-AES128-GCM-SHA256"
    ecdsa_only = tls_client(p.ca, maximum_version=ssl.TLSVersion.TLSv1_2)
    ecdsa_only.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    _, cipher, _ = peer_cert_subject(p.implicit_port, ecdsa_only)
    assert cipher[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_sni_picks_the_certificate(proxy, recording_backend, certs):
    p = proxy([recording_backend.port], **{"tls.certificates": [
        {"cert": certs.ecdsa_cert, "key": certs.ecdsa_key},
        {"cert": certs.other_cert, "key": certs.other_key},
    ]})
    ctx = tls_client(p.ca)
    assert peer_cert_subject(p.implicit_port, ctx, SNI_OTHER_NAME)[0] == SNI_OTHER_NAME
    assert peer_cert_subject(p.implicit_port, ctx, SERVER_NAME)[0] == SERVER_NAME
    # An unknown name gets the first (default) certificate.
    unchecked = tls_client(p.ca, check_hostname=False)
    assert peer_cert_subject(p.implicit_port, unchecked, "unknown.example")[0] == SERVER_NAME
    # SNI through STARTTLS as well.
    with smtplib.SMTP("127.0.0.1", p.starttls_port, timeout=10) as s:
        s._host = SNI_OTHER_NAME  # smtplib sends this as SNI
        s.starttls(context=ctx)
        assert s.sock.getpeercert()["subject"][0][0][1] == SNI_OTHER_NAME


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
                         ids=["tls1.0", "tls1.1"])
def test_old_tls_refused(proxy, recording_backend, version):
    p = proxy([recording_backend.port])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        peer_cert_subject(p.implicit_port, ctx)
    p.wait_for_log(r"msg=tls-failed .*step=handshake")


def test_tls13_resumption_with_ticket(proxy, recording_backend):
    p = proxy([recording_backend.port])
    ctx = tls_client(p.ca)
    with socket.create_connection(("127.0.0.1", p.implicit_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            tls.recv(100)  # greeting; the ticket arrives with it
            session = tls.session
    assert session is not None and session.has_ticket
    with socket.create_connection(("127.0.0.1", p.implicit_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=SERVER_NAME, session=session) as tls:
            assert tls.session_reused
            assert tls.recv(100).startswith(b"220 ")
    p.wait_for_log(r"msg=tls .*resumed=yes")


def test_handshake_timeout_closes(proxy, recording_backend):
    """tls.handshake_timeout 1s (the suite's is 10s): a client that never
    starts its handshake is closed without a word, by this timeout."""
    p = proxy([recording_backend.port], **{"tls.handshake_timeout": "1s"})
    with socket.create_connection(("127.0.0.1", p.implicit_port), timeout=8) as s:
        try:
            assert s.recv(100) == b""  # closed by the proxy, nothing sent
        except socket.timeout:
            pytest.fail("still open 8 s on with tls.handshake_timeout 1s")
    p.wait_for_log(r"msg=session-end .*reason=tls-handshake-timeout")


def test_every_hash_scheme_logs_in(proxy, recording_backend, users):
    p = proxy([recording_backend.port])
    ctx = tls_client(p.ca)
    for user, password in users.passwords.items():
        with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx,
                              timeout=10) as s:
            s.login(user, password)
            s.sendmail(f"{user}@example.test", ["rcpt@example.test"],
                       f"Subject: from {user}\r\n\r\nhi\r\n")
    got = recording_backend.wait_for_messages(len(users.passwords))
    assert sorted(m["xclient"]["LOGIN"] for m in got) == sorted(users.passwords)


def test_passwords_never_logged(proxy, recording_backend, users):
    p = proxy([recording_backend.port])  # log level debug
    ctx = tls_client(p.ca)
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=10) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("demo", "Wrong-Secret-77")
        s.login("demo", users.passwords["demo"])
    p.wait_for_log(r"msg=auth .*user=demo .*result=ok")
    log = p.log()
    assert "msg=auth" in log and "result=failed" in log
    for secret in ("Wrong-Secret-77", users.passwords["demo"]):
        assert secret not in log


def run_check(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return config_check(path)


def test_check_refuses_broken_config_with_file_line_key(tmp_path, certs, users):
    good = {
        "tls": {"certificates": [{"cert": str(certs.ecdsa_cert), "key": str(certs.ecdsa_key)}]},
        "listeners": [{"address": "127.0.0.1:2587", "mode": "starttls"}],
        "auth": {"passwd_file": str(users.path)},
        "backends": {"servers": [{"address": "127.0.0.1:2525"}]},
    }
    ok = run_check(tmp_path, to_yaml(good) + "\n")
    assert ok.returncode == 0, ok.stderr
    assert "configuration ok" in ok.stdout
    lines = (to_yaml(good) + "\n").splitlines()
    mode_line = next(i for i, line in enumerate(lines) if "mode:" in line)
    lines[mode_line] = lines[mode_line].replace('"starttls"', '"startls"')
    bad = run_check(tmp_path, "\n".join(lines) + "\n")
    assert bad.returncode == 1
    assert f"bad.yaml:{mode_line + 1}: listeners[0].mode: " in bad.stderr, bad.stderr


def test_check_refuses_missing_certificate_file(tmp_path, users):
    cfg = {
        "tls": {"certificates": [{"cert": str(tmp_path / "nope.crt"),
                                  "key": str(tmp_path / "nope.key")}]},
        "listeners": [{"address": "127.0.0.1:2587", "mode": "starttls"}],
        "auth": {"passwd_file": str(users.path)},
        "backends": {"servers": [{"address": "127.0.0.1:2525"}]},
    }
    res = run_check(tmp_path, to_yaml(cfg) + "\n")
    assert res.returncode == 1
    assert "nope.crt" in res.stderr


def test_listener_in_use_is_a_clear_error(tmp_path, certs, users):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        cfg = {
            "tls": {"certificates": [{"cert": str(certs.ecdsa_cert),
                                      "key": str(certs.ecdsa_key)}]},
            "listeners": [{"address": f"127.0.0.1:{port}", "mode": "starttls"}],
            "auth": {"passwd_file": str(users.path)},
            "backends": {"servers": [{"address": "127.0.0.1:2525"}]},
        }
        path = tmp_path / "inuse.yaml"
        path.write_text(to_yaml(cfg) + "\n")
        res = subprocess.run([MSAPROXY_BIN, "-c", str(path)], capture_output=True,
                             text=True, timeout=30)
    assert res.returncode == 1
    assert "inuse.yaml:" in res.stderr and "Address already in use" in res.stderr


def test_tls13_resumption_renews_ticket(proxy, recording_backend):
    """RFC 8446 C.4: clients should use a ticket once, so a resumed TLS 1.3
    handshake must hand out a fresh ticket, or every other connection pays
    a full handshake."""
    p = proxy([recording_backend.port])
    ctx = tls_client(p.ca)
    session = None
    ids = []
    for i in range(3):
        with socket.create_connection(("127.0.0.1", p.implicit_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=SERVER_NAME,
                                 session=session) as tls:
                assert tls.recv(100).startswith(b"220 ")
                assert tls.session_reused == (i > 0)
                session = tls.session
                ids.append(session.id)
    assert len(set(ids)) == 3, "a resumed handshake issued no new ticket"


def test_client_chosen_login_cannot_forge_log_fields(proxy, recording_backend):
    """A login name is the client's choice: spaces and '=' in it are quoted
    in the log, so it cannot add key=value fields of its own."""
    p = proxy([recording_backend.port])
    ctx = tls_client(p.ca)
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=10) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("x result=ok", "nope")
    p.wait_for_log(r"msg=auth ")
    line = next(l for l in p.log().splitlines() if "msg=auth " in l)
    assert 'user="x result=ok"' in line
    assert line.count("result=") == 2 and line.rstrip().endswith("cache=miss")
    assert "result=failed" in line


def test_hash_password_refuses_what_it_would_cut(tmp_path):
    ok = subprocess.run([MSAPROXY_BIN, "hash-password"], input="a" * 255,
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout.startswith("$y$")
    long = subprocess.run([MSAPROXY_BIN, "hash-password"], input="a" * 256,
                          capture_output=True, text=True, timeout=30)
    assert long.returncode == 1 and long.stdout == ""
    assert "too long" in long.stderr
    empty = subprocess.run([MSAPROXY_BIN, "hash-password"], input="",
                           capture_output=True, text=True, timeout=30)
    assert empty.returncode == 1 and "empty" in empty.stderr


# ---------------------------------------------------------------------------
# ALPN (ALPACA, cross-protocol attacks): a client that offers ALPN and not
# "smtp" is refused in the handshake with no_application_protocol; "smtp"
# is selected when offered; no ALPN at all is served as ever.
# ---------------------------------------------------------------------------

def s_client_greeting(port, ca, *args, servername=SERVER_NAME):
    """openssl s_client to the implicit-TLS port with extra args: (exit
    status, its stdout and stderr together) once the 220 greeting arrived
    and QUIT was answered, or once the handshake failed."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca),
         "-servername", servername, "-crlf", "-ign_eof", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out = b""
    try:
        deadline = time.monotonic() + 10
        while b"\n220 " not in out and proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"s_client: neither a greeting nor an end in 10 s:\n{out.decode()}")
            if select.select([proc.stdout], [], [], left)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        if proc.poll() is None:
            proc.stdin.write(b"QUIT\n")
            proc.stdin.close()
            out += proc.stdout.read()
        return proc.wait(timeout=10), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("offer", ["http/1.1", "h2,http/1.1"])
def test_alpn_without_smtp_is_refused(proxy, recording_backend, certs, offer):
    """Refused whichever certificate SNI picks (each has its own context)."""
    p = proxy([recording_backend.port], **{"tls.certificates": [
        {"cert": certs.ecdsa_cert, "key": certs.ecdsa_key},
        {"cert": certs.other_cert, "key": certs.other_key},
    ]})
    for name in (SERVER_NAME, SNI_OTHER_NAME):
        since = p.mark()
        status, out = s_client_greeting(p.implicit_port, p.ca, "-alpn", offer,
                                        servername=name)
        assert status != 0, out
        assert "no application protocol" in out, out
        assert "\n220 " not in out, out
        p.wait_for_log(r"msg=tls-failed .*step=handshake .*no application protocol",
                       since=since)
        p.wait_for_log(r"msg=session-end .*outcome=tls-failed", since=since)


@pytest.mark.parametrize("offer", ["smtp", "http/1.1,smtp", None])
def test_alpn_smtp_or_none_is_served(proxy, recording_backend, offer):
    p = proxy([recording_backend.port])
    args = ["-alpn", offer] if offer else []
    status, out = s_client_greeting(p.implicit_port, p.ca, *args)
    assert status == 0, out
    assert "\n220 " in out and "\n221 " in out, out
    if offer:
        assert "ALPN protocol: smtp" in out, out
    else:
        assert "No ALPN negotiated" in out, out


def test_alpn_after_starttls(proxy, recording_backend):
    p = proxy([recording_backend.port])
    http = tls_client(p.ca)
    http.set_alpn_protocols(["http/1.1"])
    with smtplib.SMTP("127.0.0.1", p.starttls_port, timeout=10) as s:
        s.ehlo()
        with pytest.raises(ssl.SSLError, match="no application protocol"):
            s.starttls(context=http)
    p.wait_for_log(r"msg=tls-failed .*step=handshake .*no application protocol")
    smtp = tls_client(p.ca)
    smtp.set_alpn_protocols(["smtp"])
    with smtplib.SMTP("127.0.0.1", p.starttls_port, timeout=10) as s:
        s.starttls(context=smtp)
        assert s.sock.selected_alpn_protocol() == "smtp"
        assert s.noop()[0] == 250
