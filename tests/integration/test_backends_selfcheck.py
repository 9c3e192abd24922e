"""The harness checks itself, without the proxy: the backends record and
log what the proxy tests will rely on."""

import re
import smtplib
import socket
import uuid

import pytest

LOOPBACK = "127.0.0.1"

# Dot-stuffing, CRLF everywhere, a line that is only ".", trailing spaces.
MESSAGE = (
    b"From: <demo@example.test>\r\n"
    b"To: <bob@example.test>\r\n"
    b"Subject: selfcheck\r\n"
    b"\r\n"
    b"first line  \r\n"
    b".leading dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"last line\r\n"
)


def dot_stuff(data):
    return re.sub(rb"(?m)^\.", b"..", data)


def smtp_to(port, helo="selfcheck.example.test"):
    client = smtplib.SMTP(LOOPBACK, port, timeout=10)
    client.ehlo(helo)
    return client


def raw_session(port):
    """A plain socket plus a reply reader, for what smtplib won't send."""
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    reader = sock.makefile("rb")

    def reply():
        lines = []
        while True:
            line = reader.readline()
            assert line, f"connection closed after {lines!r}"
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    return sock, reply


def test_recording_backend_records_message_bytes(recording_backend):
    with smtp_to(recording_backend.port) as client:
        assert "xclient" in client.esmtp_features
        refused = client.sendmail("demo@example.test", ["bob@example.test", "eve@example.test"],
                                  MESSAGE)
        assert refused == {}
    (msg,) = recording_backend.wait_for_messages(1)
    assert msg["mail_from"] == "demo@example.test"
    assert msg["rcpt_tos"] == ["bob@example.test", "eve@example.test"]
    assert msg["content"] == MESSAGE
    assert msg["raw"] == dot_stuff(MESSAGE)
    assert b"\r\n...\r\n" not in msg["raw"] and b"\r\n..\r\n" in msg["raw"]
    assert msg["xclient"] == {}
    assert msg["helo"] == "selfcheck.example.test"
    assert any(c.startswith(b"mail FROM:<demo@example.test>") for c in msg["commands"])
    assert all(c.endswith(b"\r\n") for c in msg["commands"])


def test_recording_backend_keeps_bare_newlines(recording_backend):
    """aiosmtpd 1.4.3 splits DATA only at CRLF and does not normalise: a
    bare LF or CR stays inside its line, in content and raw alike."""
    sock, reply = raw_session(recording_backend.port)
    with sock:
        assert reply()[0] == 220
        for command, code in ((b"EHLO x", 250), (b"MAIL FROM:<a@example.test>", 250),
                              (b"RCPT TO:<b@example.test>", 250), (b"DATA", 354)):
            sock.sendall(command + b"\r\n")
            assert reply()[0] == code, command
        sock.sendall(b"a\nb\rc\r\n..d\r\n.\r\n")
        assert reply()[0] == 250
    (msg,) = recording_backend.wait_for_messages(1)
    assert msg["raw"] == b"a\nb\rc\r\n..d\r\n"
    assert msg["content"] == b"a\nb\rc\r\n.d\r\n"


def test_recording_backend_xclient(recording_backend):
    with smtp_to(recording_backend.port) as client:
        login = "dé mo+x=y"  # xtext: d+C3+A9+20mo+2Bx+3Dy
        attrs = ("LOGIN=d+C3+A9+20mo+2Bx+3Dy ADDR=198.51.100.7 NAME=[UNAVAILABLE] "
                 "PORT=4711 PROTO=ESMTP HELO=client.example.test")
        assert client.docmd("XCLIENT", attrs) == (220, b"backend.example.test ESMTP")
        # The session starts over: no EHLO in force any more.
        assert client.docmd("MAIL", "FROM:<demo@example.test>")[0] == 503
        client.ehlo("proxy.example.test")
        client.sendmail("demo@example.test", ["bob@example.test"], MESSAGE)
        # A second XCLIENT now comes from 198.51.100.7: not authorized.
        assert client.docmd("XCLIENT", "LOGIN=alice")[0] == 550
    (msg,) = recording_backend.wait_for_messages(1)
    assert msg["xclient"] == {
        "LOGIN": login, "ADDR": "198.51.100.7", "NAME": "[UNAVAILABLE]",
        "PORT": "4711", "PROTO": "ESMTP", "HELO": "client.example.test",
    }
    assert msg["helo"] == "proxy.example.test"
    assert msg["content"] == MESSAGE
    assert recording_backend.connections[0]["xclient"] == [msg["xclient"]]


@pytest.mark.parametrize("command, reply", [
    ("XCLIENT", "501 5.5.4 Syntax"),
    ("XCLIENT LOGIN", "501 5.5.4 Error: attribute=value expected"),
    ("XCLIENT FOO=bar", "501 5.5.4 Bad XCLIENT attribute name: FOO"),
    ("XCLIENT LOGIN=a+2b", "501 5.5.4 Bad LOGIN xtext"),
    ("XCLIENT PROTO=ESMTPSA", "501 5.5.4 Bad PROTO syntax"),
    ("XCLIENT ADDR=[127.0.0.1]", "501 5.5.4 Bad ADDR syntax"),
    ("XCLIENT PORT=x", "501 5.5.4 Bad PORT syntax"),
])
def test_recording_backend_rejects_bad_xclient(recording_backend, command, reply):
    sock, read_reply = raw_session(recording_backend.port)
    with sock:
        read_reply()
        sock.sendall(command.encode() + b"\r\n")
        code, text = read_reply()
    assert text.decode().startswith(reply)
    assert recording_backend.connections[0]["xclient"] == []


def test_recording_backend_xclient_not_inside_transaction(recording_backend):
    with smtp_to(recording_backend.port) as client:
        client.mail("demo@example.test")
        assert client.docmd("XCLIENT", "LOGIN=demo")[0] == 503


def test_recording_backend_chosen_failures(recording_backend):
    recording_backend.fail_rcpt = "450 4.2.0 mailbox busy"
    with smtp_to(recording_backend.port) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("demo@example.test", ["bob@example.test"], MESSAGE)
    recording_backend.fail_rcpt = None
    recording_backend.fail_data = "451 4.3.0 try later"
    with smtp_to(recording_backend.port) as client:
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail("demo@example.test", ["bob@example.test"], MESSAGE)
    assert err.value.smtp_code == 451
    assert recording_backend.messages == []
    assert [m["content"] for m in recording_backend.rejected] == [MESSAGE]


def _deliver_to_postfix(postfix, sender, xclient=None):
    with smtp_to(postfix.port) as client:
        if xclient:
            code, text = client.docmd("XCLIENT", xclient)
            assert code == 220, text
            client.ehlo("proxy.example.test")
        client.sendmail(sender, ["bob@example.test"], MESSAGE)


def _postfix_queue_id(postfix, sender):
    """The queue id Postfix gave the message from this (unique) sender."""
    return postfix.wait_for_log(rf"(\w+): from=<{re.escape(sender)}>")[1]


def test_postfix_accepts_and_logs(postfix_backend):
    sender = f"plain-{uuid.uuid4().hex[:12]}@example.test"
    _deliver_to_postfix(postfix_backend, sender)
    qid = _postfix_queue_id(postfix_backend, sender)
    postfix_backend.wait_for_log(rf"postfix/smtpd\[\d+\]: {qid}: client=unknown\[127\.0\.0\.1\]$")
    postfix_backend.wait_for_log(rf"{qid}: to=<bob@example\.test>, .*status=sent")


def test_postfix_logs_xclient_login(postfix_backend):
    sender = f"xclient-{uuid.uuid4().hex[:12]}@example.test"
    _deliver_to_postfix(postfix_backend, sender,
                        xclient="LOGIN=demo ADDR=198.51.100.7 NAME=[UNAVAILABLE] PORT=4711")
    qid = _postfix_queue_id(postfix_backend, sender)
    postfix_backend.wait_for_log(
        rf"postfix/smtpd\[\d+\]: {qid}: client=unknown\[198\.51\.100\.7\], "
        r"sasl_method=XCLIENT, sasl_username=demo$"
    )
