"""End-to-end tests of msaproxy: real clients (smtplib, raw sockets, swaks,
curl, openssl s_client) -> proxy -> real backends (aiosmtpd recording
backend, Postfix).

The contract under test:
  - greeting "220 mail.example.test ESMTP", no software name;
  - starttls listener: EHLO before TLS offers STARTTLS, not AUTH; AUTH
    before TLS -> 538 5.7.11; MAIL before AUTH -> 530 5.7.0;
  - after TLS, EHLO offers AUTH PLAIN LOGIN, SIZE, PIPELINING,
    ENHANCEDSTATUSCODES, 8BITMIME; never STARTTLS or CRAM-MD5, and no
    CHUNKING when the backend does not offer it (test_chunking.py);
    STARTTLS inside TLS -> 503;
  - bad password -> 535 5.7.8 and no backend connection at all;
  - XCLIENT/XFORWARD/PROXY from a client -> 5xx, never seen by a backend;
  - the message reaches the backend byte for byte (dot-stuffing
    included), with XCLIENT LOGIN=<user> ADDR=<client address>.
"""

import asyncio
import base64
import dataclasses
import hashlib
import os
import random
import re
import resource
import select
import smtplib
import socket
import ssl
import subprocess
import time
import uuid

import pytest

LOOPBACK = "127.0.0.1"
SERVER_NAME = "mail.example.test"
GREETING = f"220 {SERVER_NAME} ESMTP"
SENDER = "demo@example.test"
RECIPIENT = "bob@example.test"
MAX_MESSAGE_SIZE = 50 * 1024 * 1024  # the fixture's limits.max_message_size "50MB"
NO_EVENT_GRACE = 0.5  # how long we watch for something that must not happen

# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


def make_message(tag):
    """A small CRLF message whose body needs dot-stuffing."""
    head = (
        f"From: Demo <{SENDER}>\r\n"
        f"To: <{RECIPIENT}>\r\n"
        f"Subject: {tag}\r\n"
        f"Message-ID: <{tag}@client.example.test>\r\n"
        "\r\n"
    ).encode()
    return head + b"Hello.\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n"


def dot_stuff(data):
    """The wire form of a CRLF message (what smtplib and curl send)."""
    return re.sub(rb"(?m)^\.", b"..", data)


def unique_tag(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def random_message(size, seed):
    """About size bytes of printable lines (0..200 chars, CRLF); some lines
    start with "." and some are only ".", so dot-stuffing matters."""
    rng = random.Random(seed)
    printable = bytes(range(0x20, 0x7F))
    table = bytes(printable[b % len(printable)] for b in range(256))
    text = rng.randbytes(size).translate(table)
    out, pos = bytearray(b"Subject: large\r\n\r\n"), 0
    while pos < size:
        n = rng.randint(0, 200)
        out += text[pos:pos + n] + b"\r\n"
        if rng.random() < 0.01:
            out += b".\r\n"
        pos += n
    return bytes(out)


# ---------------------------------------------------------------------------
# A line-level SMTP client on a plain socket (for what smtplib won't do)
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    code: int
    lines: list  # the text of each line, after "DDD-" / "DDD "
    raw: bytes

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """The enhanced status code of the first line ("5.7.8"), or ""."""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.lines[0])
        return m.group(1) if m else ""

    @property
    def extensions(self):
        """EHLO keywords (upper case) -> the rest of their line."""
        ext = {}
        for line in self.lines[1:]:
            keyword, _, args = line.partition(" ")
            ext[keyword.upper()] = args
        return ext

    def __str__(self):
        return self.raw.decode(errors="replace").strip()


class SmtpWire:
    """One SMTP connection driven line by line.  Every read is bounded."""

    def __init__(self, port, tls_context=None, timeout=10):
        self.timeout = timeout
        self.buf = b""
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        if tls_context is not None:
            self.start_tls(tls_context)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def start_tls(self, context):
        """TLS handshake on the connection as it is (after a 220 to
        STARTTLS, or at once for implicit TLS)."""
        assert self.buf == b"", f"plaintext left unread before TLS: {self.buf!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=SERVER_NAME)

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete reply in time; have {self.buf!r}")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no complete reply in time; have {self.buf!r}") from None
        if not data:
            raise AssertionError(f"connection closed; unread {self.buf!r}")
        self.buf += data

    def read_reply(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        lines, raw = [], b""
        while True:
            while b"\n" not in self.buf:
                self._recv(deadline)
            line, self.buf = self.buf.split(b"\n", 1)
            line += b"\n"
            raw += line
            assert re.match(rb"[2-5]\d\d([ -]|\r\n)", line), f"not an SMTP reply line: {raw!r}"
            assert line.endswith(b"\r\n"), f"reply line without CRLF: {line!r}"
            lines.append(line[4:-2].decode(errors="replace"))
            if line[3:4] != b"-":
                return Reply(int(line[:3]), lines, raw)

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.read_reply(timeout)

    def expect(self, line, code):
        reply = self.cmd(line)
        assert reply.code == code, f"{line!r}: expected {code}, got {reply}"
        return reply

    def ehlo(self, name="client.example.test"):
        return self.expect(f"EHLO {name}", 250)

    def auth_plain(self, user, password):
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    def pending(self, wait):
        """Whatever the server sends within `wait` seconds (plus anything
        already buffered); silence is not an error."""
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            # recv, not select: in TLS a record may carry no application
            # data (session tickets), and SSLSocket.recv waits past it.
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            self.buf += data
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, timeout):
        """True if the server closes the connection within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionError, ssl.SSLError):
                return True
            if not data:
                return True
            self.buf += data
        return False

    def send_message(self, sender, recipients, wire_data):
        """MAIL, RCPT..., DATA, then wire_data (already dot-stuffed, without
        the final ".\\r\\n").  Returns the reply to the end of data."""
        self.expect(f"MAIL FROM:<{sender}>", 250)
        for rcpt in recipients:
            self.expect(f"RCPT TO:<{rcpt}>", 250)
        self.expect("DATA", 354)
        self.send(wire_data + b".\r\n")
        return self.read_reply()


# ---------------------------------------------------------------------------
# Fixtures and helpers around the proxy
# ---------------------------------------------------------------------------


def tls_context(ca):
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = True
    return context


@pytest.fixture
def relay(proxy, recording_backend):
    """A proxy with the default config in front of the recording backend."""
    return proxy([recording_backend.port])


@pytest.fixture
def demo(users):
    return ("demo", users.passwords["demo"])


def free_port_nobody_listens_on():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def open_session(proxy, mode="starttls", auth=None, ehlo_name="client.example.test"):
    """A connection that is in TLS and has said EHLO; authenticated if auth
    = (user, password) is given."""
    context = tls_context(proxy.ca)
    if mode == "implicit":
        wire = SmtpWire(proxy.implicit_port, tls_context=context)
        assert wire.read_reply().code == 220
    else:
        wire = SmtpWire(proxy.starttls_port)
        assert wire.read_reply().code == 220
        wire.ehlo(ehlo_name)
        wire.expect("STARTTLS", 220)
        wire.start_tls(context)
    wire.ehlo(ehlo_name)
    if auth:
        reply = wire.auth_plain(*auth)
        assert reply.code == 235, f"AUTH as {auth[0]}: {reply}"
    return wire


def smtplib_client(proxy, mode="starttls", timeout=30):
    context = tls_context(proxy.ca)
    if mode == "implicit":
        client = smtplib.SMTP_SSL(LOOPBACK, proxy.implicit_port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(LOOPBACK, proxy.starttls_port, timeout=timeout)
        client.starttls(context=context)
    client.ehlo("client.example.test")
    return client


def smtplib_submit(proxy, auth, message, mode="starttls", timeout=30):
    with smtplib_client(proxy, mode, timeout) as client:
        client.login(*auth)
        assert client.sendmail(SENDER, [RECIPIENT], message) == {}


def assert_delivered(backend, message, login="demo", recipients=(RECIPIENT,)):
    """Exactly one message arrived, byte for byte as the client sent it,
    with the client's identity in XCLIENT."""
    messages = backend.wait_for_messages(1)
    assert len(messages) == 1, f"{len(messages)} messages at the backend"
    got = messages[0]
    assert got["mail_from"] == SENDER
    assert got["rcpt_tos"] == list(recipients)
    assert got["content"] == message
    assert got["raw"] == dot_stuff(message)
    assert got["xclient"].get("LOGIN") == login
    assert got["xclient"].get("ADDR") == LOOPBACK
    return got


def assert_backend_untouched(backend):
    time.sleep(NO_EVENT_GRACE)
    assert backend.connections == [], "the backend was contacted"
    assert backend.messages == []


def assert_no_message(backend):
    time.sleep(NO_EVENT_GRACE)
    assert backend.messages == [], "a message reached the backend"


class ProcessLines:
    """Read a child's stdout line by line, with time bounds."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no line from {self.proc.args[0]} in time: {self.buf!r}")
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(f"{self.proc.args[0]} closed its output: {self.buf!r}")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")

    def reply(self, timeout=10):
        lines = [self.readline(timeout)]
        while lines[-1][3:4] == "-":
            lines.append(self.readline(timeout))
        return lines


# ---------------------------------------------------------------------------
# Greeting, EHLO, STARTTLS, AUTH policy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_greeting_names_host_only(relay, mode):
    if mode == "implicit":
        wire = SmtpWire(relay.implicit_port, tls_context=tls_context(relay.ca))
    else:
        wire = SmtpWire(relay.starttls_port)
    with wire:
        assert wire.read_reply().raw == (GREETING + "\r\n").encode()


def test_plaintext_ehlo_offers_starttls_not_auth(relay, recording_backend, demo):
    with SmtpWire(relay.starttls_port) as wire:
        wire.read_reply()
        ext = wire.ehlo().extensions
        assert "STARTTLS" in ext
        assert "AUTH" not in ext
        reply = wire.auth_plain(*demo)
        assert (reply.code, reply.enhanced) == (538, "5.7.11"), str(reply)
        reply = wire.cmd("MAIL FROM:<a@b>")
        assert (reply.code, reply.enhanced) == (530, "5.7.0"), str(reply)
        wire.expect("QUIT", 221)
    assert_backend_untouched(recording_backend)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_mail_before_auth_refused_in_tls(relay, recording_backend, mode):
    with open_session(relay, mode) as wire:
        reply = wire.cmd("MAIL FROM:<a@b>")
        assert (reply.code, reply.enhanced) == (530, "5.7.0"), str(reply)
    assert_backend_untouched(recording_backend)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_ehlo_in_tls(relay, mode):
    with open_session(relay, mode) as wire:
        reply = wire.ehlo()
        assert reply.lines[0].split()[0] == SERVER_NAME
        ext = reply.extensions
        assert set(ext["AUTH"].upper().split()) == {"PLAIN", "LOGIN"}
        assert ext["SIZE"] == str(MAX_MESSAGE_SIZE)
        for keyword in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"):
            assert keyword in ext, keyword
        for keyword in ("STARTTLS", "CHUNKING", "XCLIENT", "XFORWARD"):
            assert keyword not in ext, keyword
        reply = wire.cmd("STARTTLS")
        assert reply.code == 503, str(reply)
        wire.expect("NOOP", 250)  # and the session goes on


# ---------------------------------------------------------------------------
# Delivery with real clients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("initial_response", [True, False], ids=["initial", "challenge"])
def test_smtplib_starttls_auth(relay, recording_backend, demo, mechanism, initial_response):
    message = make_message(unique_tag("smtplib"))
    with smtplib_client(relay) as client:
        client.user, client.password = demo
        authobject = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, _ = client.auth(mechanism, authobject, initial_response_ok=initial_response)
        assert code == 235
        assert client.sendmail(SENDER, [RECIPIENT], message) == {}
    assert_delivered(recording_backend, message)


def test_smtplib_implicit_tls(relay, recording_backend, demo):
    message = make_message(unique_tag("smtps"))
    smtplib_submit(relay, demo, message, mode="implicit")
    assert_delivered(recording_backend, message)


@pytest.mark.parametrize("tls_option", ["--tls", "--tlsc"], ids=["starttls", "implicit"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks(relay, recording_backend, demo, tmp_path, tls_option, mechanism):
    message = make_message(unique_tag("swaks"))
    # --no-data-fixup sends the file as it is, then CRLF: so the file is the
    # dot-stuffed message plus the final "." without its CRLF.
    data_file = tmp_path / "message"
    data_file.write_bytes(dot_stuff(message) + b".")
    port = relay.starttls_port if tls_option == "--tls" else relay.implicit_port
    proc = subprocess.run(
        ["swaks", "--server", LOOPBACK, "--port", str(port), tls_option,
         "--tls-verify", "--tls-ca-path", str(relay.ca), "--tls-sni", SERVER_NAME,
         "--auth", mechanism, "--auth-user", demo[0], "--auth-password", demo[1],
         "--from", SENDER, "--to", RECIPIENT,
         "--data", f"@{data_file}", "--no-data-fixup", "--timeout", "15"],
        capture_output=True, timeout=45,
    )
    assert proc.returncode == 0, proc.stdout.decode(errors="replace")[-3000:]
    assert_delivered(recording_backend, message)


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_curl(relay, recording_backend, demo, tmp_path, scheme):
    message = make_message(unique_tag("curl"))
    upload = tmp_path / "message"
    upload.write_bytes(message)  # curl dot-stuffs it itself
    port = relay.starttls_port if scheme == "smtp" else relay.implicit_port
    proc = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "20",
         f"{scheme}://{LOOPBACK}:{port}", "--ssl-reqd", "--cacert", str(relay.ca),
         "--mail-from", SENDER, "--mail-rcpt", RECIPIENT,
         "--upload-file", str(upload), "--user", f"{demo[0]}:{demo[1]}"],
        capture_output=True, timeout=45,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert_delivered(recording_backend, message)


def test_openssl_s_client_starttls(relay, demo):
    token = base64.b64encode(f"\0{demo[0]}\0{demo[1]}".encode()).decode()
    proc = subprocess.Popen(
        ["openssl", "s_client", "-starttls", "smtp", "-name", "client.example.test",
         "-connect", f"{LOOPBACK}:{relay.starttls_port}", "-CAfile", str(relay.ca),
         "-servername", SERVER_NAME, "-verify_hostname", SERVER_NAME,
         "-verify_return_error", "-quiet", "-nocommands"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out = ProcessLines(proc)
    try:
        def say(line):
            proc.stdin.write(line.encode() + b"\r\n")
            proc.stdin.flush()
            return out.reply()

        ehlo = say("EHLO client.example.test")
        assert ehlo[0].startswith("250-") and ehlo[-1].startswith("250 ")
        assert any(re.fullmatch(r"250[- ]AUTH( \S+)*", line) and "PLAIN" in line for line in ehlo)
        assert not any("STARTTLS" in line for line in ehlo)
        assert say(f"AUTH PLAIN {token}")[0].startswith("235 2.7.0")
        assert say("QUIT")[0].startswith("221")
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0, proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


# ---------------------------------------------------------------------------
# Protocol attacks and edge cases
# ---------------------------------------------------------------------------


def test_starttls_drops_pipelined_plaintext(relay):
    """CVE-2011-0411 class: a command pipelined behind STARTTLS in plaintext
    must never be executed, neither before nor after the handshake."""
    with SmtpWire(relay.starttls_port) as wire:
        wire.read_reply()
        wire.ehlo()
        wire.send(b"STARTTLS\r\nEHLO evil\r\n")
        reply = wire.read_reply()
        assert reply.code == 220, str(reply)
        assert wire.pending(NO_EVENT_GRACE) == b"", "plaintext after the 220 to STARTTLS"
        wire.start_tls(tls_context(relay.ca))
        wire.send(b"NOOP\r\n")
        reply = wire.read_reply()
        assert reply.code == 250 and len(reply.lines) == 1, f"first reply in TLS: {reply}"
        assert wire.pending(NO_EVENT_GRACE) == b""
        # A real EHLO works, so the 250 above was the NOOP's.
        assert "AUTH" in wire.ehlo("good.example.test").extensions


@pytest.mark.parametrize("line_length", [1001, 70_000])
def test_overlong_command_line(relay, line_length):
    """max_line (default 1000) counts the CRLF; a longer line gets one 500
    5.5.x and the session continues."""
    with open_session(relay) as wire:
        fits = "NOOP " + "x" * (1000 - len("NOOP ") - 2)
        wire.expect(fits, 250)
        wire.send(b"NOOP " + b"y" * (line_length - len("NOOP ") - 2) + b"\r\n")
        reply = wire.read_reply()
        assert reply.code == 500 and reply.enhanced.startswith("5.5."), str(reply)
        wire.expect("NOOP", 250)


@pytest.mark.parametrize("command", [
    "XCLIENT LOGIN=admin ADDR=192.0.2.66 NAME=spoofed.example.test",
    "XFORWARD ADDR=192.0.2.66 NAME=spoofed.example.test",
    "PROXY TCP4 192.0.2.66 127.0.0.1 4711 587",
])
def test_client_cannot_forge_identity(relay, recording_backend, demo, command):
    message = make_message(unique_tag("forge"))
    with open_session(relay) as wire:
        reply = wire.cmd(command)
        assert 500 <= reply.code < 600, f"before AUTH: {reply}"
        assert recording_backend.connections == []
        assert wire.auth_plain(*demo).code == 235
        reply = wire.cmd(command)
        assert 500 <= reply.code < 600, f"after AUTH: {reply}"
        assert wire.send_message(SENDER, [RECIPIENT], dot_stuff(message)).code == 250
    got = assert_delivered(recording_backend, message)
    assert "spoofed.example.test" not in got["xclient"].values()
    forged = [c for c in recording_backend.commands
              if b"192.0.2.66" in c or b"spoofed" in c or c.upper().startswith((b"XFORWARD", b"PROXY"))]
    assert forged == []
    xclients = [c for c in recording_backend.commands if c.upper().startswith(b"XCLIENT")]
    assert len(xclients) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_cancel(relay, recording_backend, demo, mechanism):
    with open_session(relay) as wire:
        assert wire.cmd(f"AUTH {mechanism}").code == 334
        assert wire.cmd("*").code == 501
        assert_backend_untouched(recording_backend)
        assert wire.auth_plain(*demo).code == 235  # the session is still usable


@pytest.mark.parametrize("user, password_of", [
    ("demo", None),  # a wrong password
    ("demo", "alice"),  # another user's password
    ("nobody", "demo"),  # no such user
])
def test_bad_credentials(relay, recording_backend, users, user, password_of):
    password = users.passwords[password_of] if password_of else "wrong-password"
    with open_session(relay) as wire:
        reply = wire.auth_plain(user, password)
        assert (reply.code, reply.enhanced) == (535, "5.7.8"), str(reply)
        reply = wire.cmd(f"MAIL FROM:<{SENDER}>")
        assert reply.code == 530, str(reply)
        wire.expect("QUIT", 221)
    assert_backend_untouched(recording_backend)


def test_failed_login_then_other_user(relay, recording_backend, users):
    message = make_message(unique_tag("second-login"))
    with open_session(relay) as wire:
        reply = wire.auth_plain("alice", "not-alices-password")
        assert (reply.code, reply.enhanced) == (535, "5.7.8"), str(reply)
        assert wire.auth_plain("demo", users.passwords["demo"]).code == 235
        assert wire.send_message(SENDER, [RECIPIENT], dot_stuff(message)).code == 250
    assert_delivered(recording_backend, message, login="demo")
    assert not any(b"alice" in c for c in recording_backend.commands)


def test_auth_failure_delay(proxy, recording_backend, demo):
    """auth.failure_delay holds a failed login's 535 back that long (the
    configured delay is honoured: a lower bound, never a speed limit); a
    good login is not held, which the proxy's own log line says
    (delay_ms=0), so no clock has to tell it."""
    slow = proxy([recording_backend.port], **{"auth.failure_delay": "1s"})
    with open_session(slow) as wire:
        started = time.monotonic()
        assert wire.auth_plain("demo", "wrong-password").code == 535
        assert time.monotonic() - started >= 0.9
        assert wire.auth_plain(*demo).code == 235
    slow.wait_for_log(r"msg=auth .*user=demo .*delay_ms=1000 result=failed")
    slow.wait_for_log(r"msg=auth .*user=demo .*delay_ms=0 result=ok")


def _send_with_bare_newline(proxy, demo, body):
    with open_session(proxy, auth=demo) as wire:
        final = wire.send_message(SENDER, [RECIPIENT], body)
        wire.expect("NOOP", 250)  # still in step with the client
    return final


def test_bare_lf_rejected(relay, recording_backend, demo):
    final = _send_with_bare_newline(relay, demo, b"Subject: bare LF\r\n\r\na\nb\r\n")
    assert 500 <= final.code < 600, str(final)
    assert_no_message(recording_backend)


def test_bare_lf_normalized(proxy, recording_backend, demo):
    relay = proxy([recording_backend.port], **{"limits.bare_newlines": "normalize"})
    final = _send_with_bare_newline(relay, demo, b"Subject: bare LF\r\n\r\na\nb\r\n")
    assert final.code == 250, str(final)
    (got,) = recording_backend.wait_for_messages(1)
    assert got["content"] == b"Subject: bare LF\r\n\r\na\r\nb\r\n"
    assert got["raw"] == got["content"]


SMUGGLED = (b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\n"
            b"DATA\r\nsmuggled\r\n")


@pytest.mark.parametrize("policy", ["reject", "normalize"])
@pytest.mark.parametrize("fake_end", [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r"],
                         ids=["LF.CRLF", "CRLF.LF", "LF.LF", "CR.CRLF", "CRLF.CR"])
def test_smtp_smuggling_is_not_split(proxy, recording_backend, demo, policy, fake_end):
    """A fake end of data made with bare LF/CR must not end the message at
    the backend: either the whole message is refused, or it arrives as one
    message with the would-be commands inside its body."""
    relay = proxy([recording_backend.port], **{"limits.bare_newlines": policy})
    body = b"Subject: smuggling\r\n\r\nhello" + fake_end + SMUGGLED
    final = _send_with_bare_newline(relay, demo, body)
    if policy == "reject":
        assert 500 <= final.code < 600, str(final)
        assert_no_message(recording_backend)
    else:
        assert final.code == 250, str(final)
        (got,) = recording_backend.wait_for_messages(1)
        time.sleep(NO_EVENT_GRACE)
        assert len(recording_backend.messages) == 1
        assert got["mail_from"] == SENDER and got["rcpt_tos"] == [RECIPIENT]
        assert b"MAIL FROM:<evil@example.test>\r\n" in got["content"]
        assert got["content"].endswith(b"smuggled\r\n")
        assert re.search(rb"\r(?!\n)|(?<!\r)\n", got["raw"]) is None, "bare CR/LF reached the backend"
    assert not any(b"evil@" in c for c in recording_backend.commands)


@pytest.mark.slow  # a 20 MB message
@pytest.mark.deadline(120)
def test_large_message_byte_identical(relay, recording_backend, demo):
    message = random_message(20 * 1024 * 1024, seed=20)
    smtplib_submit(relay, demo, message, timeout=60)
    (got,) = recording_backend.wait_for_messages(1, timeout=60)
    assert hashlib.sha256(got["content"]).hexdigest() == hashlib.sha256(message).hexdigest()
    assert hashlib.sha256(got["raw"]).hexdigest() == hashlib.sha256(dot_stuff(message)).hexdigest()
    assert got["xclient"]["LOGIN"] == "demo"


# ---------------------------------------------------------------------------
# Backends: real Postfix, and none at all
# ---------------------------------------------------------------------------


def test_real_postfix_backend(proxy, postfix_backend, demo):
    relay = proxy([postfix_backend.port])
    since = postfix_backend.mark()
    sender = f"{unique_tag('postfix')}@example.test"
    with smtplib_client(relay) as client:
        client.login(*demo)
        assert client.sendmail(sender, [RECIPIENT], make_message("postfix")) == {}
    qid = postfix_backend.wait_for_log(rf"(\w+): from=<{re.escape(sender)}>", since=since)[1]
    postfix_backend.wait_for_log(
        rf"postfix/smtpd\[\d+\]: {qid}: client=\S*\[127\.0\.0\.1\], "
        r"sasl_method=XCLIENT, sasl_username=demo$", since=since)
    postfix_backend.wait_for_log(rf"{qid}: to=<{re.escape(RECIPIENT)}>, .*status=sent", since=since)


def test_backend_down(proxy, demo):
    relay = proxy([free_port_nobody_listens_on()])
    with open_session(relay, auth=demo) as wire:
        reply = wire.cmd(f"MAIL FROM:<{SENDER}>", timeout=30)
        assert reply.code == 451 and reply.enhanced.startswith("4.4."), str(reply)
        assert wire.cmd(f"RCPT TO:<{RECIPIENT}>").code != 250
        reply = wire.cmd("DATA")
        assert reply.code not in (250, 354), str(reply)


# ---------------------------------------------------------------------------
# Load and timeouts
# ---------------------------------------------------------------------------


async def _async_reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError(f"closed after {lines!r}")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def _async_submission(proxy, context, auth, n):
    """One whole session; starttls and implicit alternate."""
    if n % 2:
        reader, writer = await asyncio.open_connection(
            LOOPBACK, proxy.implicit_port, ssl=context, server_hostname=SERVER_NAME,
            ssl_handshake_timeout=30)
    else:
        reader, writer = await asyncio.open_connection(LOOPBACK, proxy.starttls_port)

    async def step(line, code):
        if line is not None:
            writer.write(line)
        got, text = await _async_reply(reader)
        assert got == code, f"session {n}: {line!r} -> {text!r}"

    try:
        await step(None, 220)
        if not n % 2:
            await step(b"EHLO load.example.test\r\n", 250)
            await step(b"STARTTLS\r\n", 220)
            await writer.start_tls(context, server_hostname=SERVER_NAME,
                                   ssl_handshake_timeout=30)
        token = base64.b64encode(f"\0{auth[0]}\0{auth[1]}".encode())
        await step(b"EHLO load.example.test\r\n", 250)
        await step(b"AUTH PLAIN " + token + b"\r\n", 235)
        await step(f"MAIL FROM:<{SENDER}>\r\n".encode(), 250)
        await step(f"RCPT TO:<{RECIPIENT}>\r\n".encode(), 250)
        await step(b"DATA\r\n", 354)
        await step(dot_stuff(make_message(f"load-{n}")) + b".\r\n", 250)
        await step(b"QUIT\r\n", 221)
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout=5)
        except (ConnectionError, ssl.SSLError, asyncio.TimeoutError):
            pass


@pytest.mark.deadline(150)
def test_300_concurrent_sessions(relay, recording_backend, demo):
    count = 300
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * count:  # client and backend sockets both live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    context = tls_context(relay.ca)

    async def all_sessions():
        return await asyncio.gather(
            *(_async_submission(relay, context, demo, n) for n in range(count)),
            return_exceptions=True)

    results = asyncio.run(asyncio.wait_for(all_sessions(), timeout=120))
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} sessions failed, e.g. {failures[:3]!r}"
    messages = recording_backend.wait_for_messages(count, timeout=30)
    assert len(messages) == count
    expected = sorted(make_message(f"load-{n}") for n in range(count))
    assert sorted(m["content"] for m in messages) == expected
    assert {m["xclient"].get("LOGIN") for m in messages} == {"demo"}


def test_idle_client_gets_421_others_unaffected(proxy, recording_backend, demo):
    relay = proxy([recording_backend.port], **{"limits.command_timeout": "2s"})
    with SmtpWire(relay.starttls_port) as idle:
        idle.read_reply()
        connected = time.monotonic()
        # Meanwhile, a busy client gets its message through.
        message = make_message(unique_tag("busy"))
        smtplib_submit(relay, demo, message)
        assert_delivered(recording_backend, message)
        # The suite's command_timeout is 5m: a 421 within 15 s is this
        # test's 2s (read_reply fails the test after that).
        reply = idle.read_reply(timeout=15)
        waited = time.monotonic() - connected
        assert (reply.code, reply.enhanced) == (421, "4.4.2"), str(reply)
        # Not before its time: the configured timeout is honoured.
        assert waited >= 1.5, f"421 after {waited:.1f}s with command_timeout 2s"
        assert idle.closed_by_peer(timeout=3)
