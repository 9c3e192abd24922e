"""An SMTP backend for tests and the demo: aiosmtpd plus XCLIENT as
Postfix does it, recording every transaction byte for byte.

Used by tests/integration/conftest.py (the recording_backend fixture) and by
scripts/demo-backend (what `make run` starts).  Needs only the standard
library and aiosmtpd (Debian: python3-aiosmtpd).
"""

import collections
import ipaddress
import os
import re
import socket
import threading
import time

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.smtp import SMTP

LOOPBACK = "127.0.0.1"

# ---------------------------------------------------------------------------
# recording_backend: aiosmtpd with Postfix-style XCLIENT, recording it all
# ---------------------------------------------------------------------------

BACKEND_NAME = "backend.example.test"
# What Postfix 3.7 advertises, in its order (it includes REVERSE_NAME).
XCLIENT_ATTRIBUTES = ("NAME", "ADDR", "PROTO", "HELO", "REVERSE_NAME", "PORT",
                      "LOGIN", "DESTADDR", "DESTPORT")
XCLIENT_AUTHORIZED = ipaddress.ip_network("127.0.0.0/8")  # like smtpd_authorized_xclient_hosts
UNAVAILABLE, TEMPUNAVAIL = "[UNAVAILABLE]", "[TEMPUNAVAIL]"

_XTEXT_RE = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")
_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def xtext_decode(text):
    """Strict RFC 3461 xtext decoding (+HH with uppercase hex only).
    Postfix itself is lenient here ("+zz" passes through); we are strict so
    that a wrongly encoded value is a test failure, not a silent change."""
    if not _XTEXT_RE.fullmatch(text):
        raise ValueError(f"not xtext: {text!r}")
    raw = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)
    return raw.encode("latin-1").decode("utf-8", errors="surrogateescape")


def _valid_xclient_addr(value):
    if value == UNAVAILABLE:
        return True
    try:
        if value[:5].upper() == "IPV6:":
            ipaddress.IPv6Address(value[5:])
        else:
            ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False


def _valid_xclient_port(value):
    return value == UNAVAILABLE or (value.isdigit() and int(value) <= 65535)


def _valid_xclient_name(value):
    return value in (UNAVAILABLE, TEMPUNAVAIL) or bool(_HOSTNAME_RE.fullmatch(value))


# The checks Postfix 3.7 smtpd makes on each attribute value, replying
# "501 5.5.4 Bad <ATTR> syntax: <value>" (we also refuse ports > 65535,
# which Postfix lets through).
_XCLIENT_VALIDATORS = {
    "NAME": _valid_xclient_name,
    "REVERSE_NAME": _valid_xclient_name,
    "ADDR": _valid_xclient_addr,
    "DESTADDR": _valid_xclient_addr,
    "PORT": _valid_xclient_port,
    "DESTPORT": _valid_xclient_port,
    "PROTO": lambda v: v.upper() in ("SMTP", "ESMTP"),
    "HELO": lambda v: 0 < len(v) <= 255,
    "LOGIN": lambda v: len(v) > 0,
}


class XclientSMTP(SMTP):
    """aiosmtpd's SMTP plus XCLIENT as Postfix does it, and byte taps.

    XCLIENT attr=xtext ...: attribute names are case-insensitive and must be
    advertised ones; values are xtext-decoded and checked like Postfix does.
    On success the reply is a fresh greeting "220 <host> ESMTP", and the
    session is reset as if the client had just connected: HELO/EHLO
    forgotten (the client must EHLO again), no transaction.  Attributes
    merge into the ones already in force, except LOGIN, which is dropped
    unless given again (Postfix resets its SASL state on each XCLIENT).
    As in Postfix: XCLIENT inside a transaction gets 503 5.5.1, and only a
    client whose address in force (ADDR, once XCLIENT set it) is in
    127.0.0.0/8 may send it (550 5.7.0 otherwise), so a second XCLIENT
    after ADDR=<a real client address> is refused.

    Every line the client sends is recorded as it arrived: command lines in
    the connection record, DATA lines (dot-stuffing and CRLF intact) as the
    raw content of the transaction.
    """

    def __init__(self, handler, **kwargs):
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps command_size_limits on the class (shared by every
        # session); give each session its own.  XCLIENT lines can exceed
        # 512 bytes; the stream reader still caps any line at 1001 bytes.
        self.command_size_limits = collections.defaultdict(
            lambda: self.command_size_limit, XCLIENT=1001
        )
        self.xclient = {}
        self.conn = None
        self._data_raw = None
        self._bdat_raw = None

    def connection_made(self, transport):
        first = self._original_transport is None and self.transport is None
        super().connection_made(transport)
        if first:
            self.conn = self.event_handler.connection_opened(self.session.peer)

    def _client_connected_cb(self, reader, writer):
        super()._client_connected_cb(reader, writer)
        plain_readuntil = reader.readuntil

        async def recording_readuntil(separator=b"\n"):
            line = await plain_readuntil(separator)
            if self._data_raw is not None:
                self._data_raw += line
            elif self.conn is not None:
                self.conn["commands"].append(bytes(line))
            return line

        reader.readuntil = recording_readuntil

    async def smtp_DATA(self, arg):
        self._data_raw = bytearray()
        try:
            await super().smtp_DATA(arg)
        finally:
            self._data_raw = None

    def take_raw_content(self):
        """The DATA bytes exactly as received, up to but excluding the
        final ".\\r\\n" line (so still dot-stuffed); for BDAT, the chunks'
        bytes joined."""
        if self._bdat_raw is not None:
            return self._bdat_raw
        raw = bytes(self._data_raw)
        assert raw.endswith(b".\r\n"), raw[-10:]
        return raw[:-3]

    async def smtp_BDAT(self, arg):
        """RFC 3030 BDAT (no BINARYMIME), as Postfix does it: the chunk is
        always read, even when the command is refused; chunks add up in
        the envelope; LAST hands the message to handle_DATA.  Each chunk
        is recorded (size, last) in the connection and the envelope.
        With backend.die_in_bdat = N the connection is cut once N chunk
        bytes have arrived in this transaction (nothing delivered)."""
        backend = self.event_handler
        if not backend.chunking:
            await self.push('500 Error: command "BDAT" not recognized')
            return
        m = re.fullmatch(r"(\d+)( LAST)?", arg or "", re.IGNORECASE)
        if not m:
            await self.push("501 5.5.4 Syntax: BDAT count [LAST]")
            return
        size, last = int(m.group(1)), m.group(2) is not None
        chunks = self.envelope.__dict__.setdefault("bdat_chunks", [])
        got = sum(len(c) for _, _, c in chunks)
        if backend.die_in_bdat is not None and got + size > backend.die_in_bdat:
            part = await self._reader.readexactly(backend.die_in_bdat - got)
            with backend._cond:
                backend.bdat_cuts.append({"chunks": [(n, l) for n, l, _ in chunks]
                                          + [(size, last)],
                                          "received": got + len(part)})
                backend._cond.notify_all()
            self.transport.abort()
            return
        data = await self._reader.readexactly(size)
        with backend._cond:
            self.conn["bdat"].append((size, last))
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        chunks.append((size, last, data))
        if not last:
            if backend.fail_bdat:
                await self.push(backend.fail_bdat)
                return
            await self.push(f"250 2.0.0 Ok: {size} bytes")
            return
        raw = b"".join(c for _, _, c in chunks)
        self.envelope.content = self.envelope.original_content = raw
        self._bdat_raw = raw
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self._bdat_raw = None
        self._set_post_data_state()
        await self.push(status)

    def _xclient_authorized(self):
        """Postfix checks smtpd_authorized_xclient_hosts against the client
        address in force, so after XCLIENT ADDR=<outside address> a second
        XCLIENT is refused.  A unix-socket client is 127.0.0.1, as Postfix
        has it (smtpd_peer_not_inet())."""
        peer = self.session.peer
        addr = self.xclient.get("ADDR", peer[0] if isinstance(peer, tuple) else LOOPBACK)
        try:
            return ipaddress.ip_address(addr) in XCLIENT_AUTHORIZED
        except ValueError:
            return True

    async def smtp_XCLIENT(self, arg):
        backend = self.event_handler
        if not backend.advertise_xclient:
            await self.push('500 Error: command "XCLIENT" not recognized')
            return
        if not self._xclient_authorized():
            await self.push("550 5.7.0 Error: insufficient authorization")
            return
        if backend.xclient_needs_ehlo and not self.session.host_name:
            await self.push("503 5.5.1 Error: send HELO/EHLO first")
            return
        if self.envelope.mail_from:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        if not arg:
            await self.push("501 5.5.4 Syntax: XCLIENT attribute=value...")
            return
        attrs = {}
        for token in arg.split():
            name, eq, value = token.partition("=")
            if not eq:
                await self.push("501 5.5.4 Error: attribute=value expected")
                return
            name = name.upper()
            if name not in backend.xclient_attributes:
                await self.push(f"501 5.5.4 Bad XCLIENT attribute name: {name}")
                return
            try:
                value = xtext_decode(value)
            except ValueError:
                await self.push(f"501 5.5.4 Bad {name} xtext: {value}")
                return
            if not _XCLIENT_VALIDATORS[name](value):
                await self.push(f"501 5.5.4 Bad {name} syntax: {value}")
                return
            attrs[name] = value
        merged = {k: v for k, v in self.xclient.items() if k != "LOGIN"}
        merged.update(attrs)
        self.xclient = merged
        backend.xclient_seen(self.conn, attrs)
        # Back to the connection's initial state, as Postfix does.
        self._set_rset_state()
        self.session.host_name = None
        self.session.extended_smtp = False
        await self.push(f"220 {self.hostname} ESMTP")


class _PortZeroController(Controller):
    """Controller on an ephemeral port (aiosmtpd 1.4.3 would try to connect
    to port 0 to "trigger" the server)."""

    def factory(self):
        return XclientSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _UnixController(UnixSocketController):
    """The same server on a unix socket (peer address "" for aiosmtpd;
    XCLIENT is allowed from it, as from Postfix's local clients)."""

    def factory(self):
        return XclientSMTP(self.handler, **self.SMTP_kwargs)


class RecordingBackend:
    """An SMTP backend that records everything; the aiosmtpd handler.

    .port                  where it listens (127.0.0.1), None on a unix socket
    .address               127.0.0.1:PORT, or unix:PATH with unix_socket=PATH
    .messages              accepted transactions, dicts with:
        mail_from, mail_options, rcpt_tos, rcpt_options,
        content   the message as aiosmtpd hands it over: envelope.original_content,
                  i.e. the DATA lines with the transparency dot removed and
                  nothing else changed (CRLF, bare LF, bare CR all intact)
        raw       the DATA bytes exactly as they came off the wire, still
                  dot-stuffed, without the final ".\\r\\n"
        xclient   the XCLIENT attributes in force (decoded), {} if none
        helo      the EHLO/HELO name in force
        peer, queue_id, commands (the connection's command lines so far)
        chunks    BDAT: [(size, last), ...] in order; None after DATA
    .rejected              transactions refused because fail_data was set
    .connections           per connection: peer, commands (raw lines, CRLF
                           included), xclient (attrs of each XCLIENT sent),
                           bdat ((size, last) of each whole chunk read)
    .chunking              True: advertise CHUNKING and take BDAT (RFC 3030,
                           aiosmtpd 1.4.3 has none: XclientSMTP.smtp_BDAT)
    .fail_bdat             a reply for every chunk before the LAST one
    .die_in_bdat           cut the connection once this many chunk bytes of
                           a transaction arrived; .bdat_cuts records each cut
    .commands              all command lines of all connections
    .fail_mail / .fail_rcpt / .fail_data   set to a reply ("451 4.3.0 try
                           later") to refuse that step
    .advertise_xclient     False: no XCLIENT in EHLO, XCLIENT is unknown
    .xclient_needs_ehlo    True: XCLIENT before EHLO gets 503 (Postfix and
                           smtp-sink take it at once; another MTA may not)
    .wait_for_messages(n, timeout), .wait_for_connections(n, timeout)

    What aiosmtpd 1.4.3 does with DATA (smtp.py, SMTP.smtp_DATA): it reads
    lines with readuntil(b"\\r\\n"), so only CRLF ends a line and a bare LF
    or CR stays inside its line, untouched; data ends at a line that is
    exactly ".\\r\\n" ("\\n.\\r\\n" does not end it).  From each line that
    starts with "." it removes that one dot (transparency; a dot after a
    bare LF is not at a line start for it), and joins the lines into
    envelope.original_content.  With decode_data=False (ours) content is
    the same bytes.  Nothing else is normalised.  A line over 1001 bytes
    gets "500 Line too long" and more than data_size_limit (128 MiB here)
    "552"; neither message is delivered.  Because the dot is gone from
    content, `raw` is tapped from the stream reader as well.
    """

    def __init__(self, host=LOOPBACK, port=0, unix_socket=None):
        self.unix_socket = unix_socket
        self.messages = []
        self.rejected = []
        self.connections = []
        self.fail_mail = None
        self.fail_rcpt = None
        self.fail_data = None
        self.fail_bdat = None  # a reply for chunks before the LAST one
        self.chunking = False  # advertise CHUNKING and take BDAT
        self.die_in_bdat = None
        self.bdat_cuts = []
        self.advertise_xclient = True
        self.xclient_needs_ehlo = False
        self.xclient_attributes = XCLIENT_ATTRIBUTES
        self._cond = threading.Condition()
        self._queue_ids = 0
        smtp_options = dict(
            server_hostname=BACKEND_NAME,
            ident="ESMTP",
            data_size_limit=128 * 1024 * 1024,  # the proxy's limit must bite first
        )
        if unix_socket is not None:
            self.controller = _UnixController(self, unix_socket=str(unix_socket),
                                              **smtp_options)
        else:
            self.controller = _PortZeroController(self, hostname=host, port=port,
                                                  **smtp_options)

    @property
    def port(self):
        return None if self.unix_socket is not None else self.controller.port

    @property
    def address(self):
        """As the proxy's config writes it: 127.0.0.1:PORT or unix:PATH."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        return f"{LOOPBACK}:{self.controller.port}"

    @property
    def commands(self):
        with self._cond:
            return [line for conn in self.connections for line in conn["commands"]]

    def start(self):
        self.controller.start()
        with self._cond:
            self.connections.clear()  # the Controller's own start-up probe

    def stop(self):
        self.controller.stop()
        if self.unix_socket is not None:
            try:
                os.unlink(self.unix_socket)
            except FileNotFoundError:
                pass

    # -- called from the server's event loop thread --------------------------

    def connection_opened(self, peer):
        conn = {"peer": peer, "commands": [], "xclient": [], "bdat": []}
        with self._cond:
            self.connections.append(conn)
            self._cond.notify_all()
        return conn

    def xclient_seen(self, conn, attrs):
        with self._cond:
            conn["xclient"].append(dict(attrs))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.advertise_xclient:
            responses.insert(-1, "250-XCLIENT " + " ".join(self.xclient_attributes))
        if self.chunking:
            responses.insert(-1, "250-CHUNKING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        if self.fail_mail:
            return self.fail_mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, options):
        if self.fail_rcpt:
            return self.fail_rcpt
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self._cond:
            self._queue_ids += 1
            queue_id = f"REC{self._queue_ids:05d}"
        record = {
            "mail_from": envelope.mail_from,
            "mail_options": list(envelope.mail_options),
            "rcpt_tos": list(envelope.rcpt_tos),
            "rcpt_options": list(envelope.rcpt_options),
            "content": envelope.original_content,
            "raw": server.take_raw_content(),
            "xclient": dict(server.xclient),
            "helo": session.host_name,
            "peer": session.peer,
            "queue_id": queue_id,
            "commands": list(server.conn["commands"]),
            # BDAT: [(size, last), ...] as the chunks came; None for DATA
            "chunks": [(n, l) for n, l, _ in envelope.bdat_chunks]
            if hasattr(envelope, "bdat_chunks") else None,
        }
        with self._cond:
            if self.fail_data:
                self.rejected.append(record)
                reply = self.fail_data
            else:
                self.messages.append(record)
                reply = f"250 2.0.0 Ok: queued as {queue_id}"
            self._cond.notify_all()
        return reply

    # -- for tests --------------------------------------------------------------

    def _wait(self, what, n, timeout):
        with self._cond:
            if not self._cond.wait_for(lambda: len(getattr(self, what)) >= n, timeout):
                raise AssertionError(
                    f"recording backend: {len(getattr(self, what))} {what} after "
                    f"{timeout}s, expected {n}"
                )
            return list(getattr(self, what))

    def wait_for_messages(self, n, timeout=10):
        """Wait until at least n messages were accepted; returns them."""
        return self._wait("messages", n, timeout)

    def wait_for_connections(self, n, timeout=10):
        return self._wait("connections", n, timeout)


# ---------------------------------------------------------------------------
# FaultyBackend: a hand-written SMTP server for fault injection
# ---------------------------------------------------------------------------

PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_proxy_v2(rfile):
    """Parse one PROXY protocol v2 header (HAProxy proxy-protocol.txt 2.2)
    off rfile: {"command", "src", "dst" ((ip, port) or None), "tlvs"
    {type: bytes}, "ssl" {"client", "verify", subtype: bytes}}."""
    head = rfile.read(16)
    assert head[:12] == PROXY_V2_SIG, head
    cmd, fam, length = head[12], head[13], int.from_bytes(head[14:16], "big")
    body = rfile.read(length)
    assert len(body) == length
    out = {"command": {0x20: "LOCAL", 0x21: "PROXY"}[cmd], "src": None, "dst": None,
           "tlvs": {}, "ssl": None}
    if fam in (0x11, 0x21):
        n = 4 if fam == 0x11 else 16
        ip = ipaddress.IPv4Address if n == 4 else ipaddress.IPv6Address
        ports = body[2 * n:2 * n + 4]
        out["src"] = (str(ip(body[:n])), int.from_bytes(ports[:2], "big"))
        out["dst"] = (str(ip(body[n:2 * n])), int.from_bytes(ports[2:], "big"))
        off = 2 * n + 4
    else:
        assert fam == 0x00, fam
        off = 0
    while off < length:
        t, l = body[off], int.from_bytes(body[off + 1:off + 3], "big")
        value = body[off + 3:off + 3 + l]
        assert len(value) == l, "TLV runs past the header"
        out["tlvs"][t] = value
        if t == 0x20:
            ssl_facts = {"client": value[0], "verify": int.from_bytes(value[1:5], "big")}
            sub = value[5:]
            while sub:
                st, sl = sub[0], int.from_bytes(sub[1:3], "big")
                ssl_facts[st] = sub[3:3 + sl]
                sub = sub[3 + sl:]
            out["ssl"] = ssl_facts
        off += 3 + l
    return out


class FaultyBackend:
    """A small SMTP server: greets with `greeting`, then answers like an
    MTA and records each message; with die_in_data it cuts the connection
    after reading that many bytes of message data; with proxy_v2 it first
    reads and records a PROXY v2 header.  One thread, bounded in time."""

    def __init__(self, greeting=b"220 faulty.test ESMTP\r\n", die_in_data=None,
                 proxy_v2=False, ehlo=b"250 8BITMIME", hang_after_data=False):
        self.ehlo = ehlo
        self.hang_after_data = hang_after_data
        self.greeting = greeting
        self.die_in_data = die_in_data
        self.proxy_v2 = proxy_v2
        self.headers = []
        self.messages = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received_end = False
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        deadline = time.monotonic() + 90
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(10)
                try:
                    self.session(conn.makefile("rb"), conn)
                except OSError:
                    pass

    def session(self, rfile, conn):
        if self.proxy_v2:
            self.headers.append(read_proxy_v2(rfile))
        conn.sendall(self.greeting)
        if not self.greeting.startswith(b"220"):
            return
        while True:
            line = rfile.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-faulty.test\r\n" + self.ehlo + b"\r\n")
            elif verb == b"DATA" and self.die_in_data is None:
                conn.sendall(b"354 go\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    line = rfile.readline()
                    if not line:
                        return
                    data += line
                self.messages.append(data)
                if self.hang_after_data:  # never answer: until the proxy hangs up
                    rfile.read()
                    return
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go\r\n")
                got = b""
                while len(got) < self.die_in_data:
                    chunk = rfile.read1(65536)
                    if not chunk:
                        break
                    got += chunk
                self.received_end = b"\r\n.\r\n" in got
                conn.shutdown(socket.SHUT_RDWR)
                return
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    def close(self):
        self.stop_event.set()
        self.thread.join(5)
        self.sock.close()
