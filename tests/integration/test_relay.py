"""Relay behaviour end to end: nothing lost, nothing half-delivered.

The client's verdict for a message is the backend's; a backend that dies
or refuses costs the client a temporary failure, never a false 250; a
message the client abandons, or that breaks a limit, never reaches the
backend complete; connection failures move to the next backend.
"""

import smtplib
import subprocess
import socket
import ssl
import time

import pytest

from conftest import SmtpLines, free_port
from smtp_backend import FaultyBackend


def login(p, user="demo", password="demo-pass-1"):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    s = smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=15)
    s.login(user, password)
    return s


def test_pipelined_transaction_replies_in_order(proxy, recording_backend):
    p = proxy([recording_backend.port])
    c = SmtpLines(p).login(b"c.test")
    c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
           b"RCPT TO:<c@example.test>\r\nDATA\r\n")
    replies = [c.reply() for _ in range(4)]
    assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"354"]
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert c.reply().startswith(b"250 ")
    assert c.reply().startswith(b"221 ")
    m = recording_backend.wait_for_messages(1)[0]
    assert m["rcpt_tos"] == ["b@example.test", "c@example.test"]


def test_abandoned_data_never_delivered(proxy, recording_backend):
    p = proxy([recording_backend.port])
    c = SmtpLines(p).login(b"c.test")
    assert c.cmd(b"MAIL FROM:<a@example.test>").startswith(b"250")
    assert c.cmd(b"RCPT TO:<b@example.test>").startswith(b"250")
    assert c.cmd(b"DATA").startswith(b"354")
    c.send(b"Subject: half\r\n\r\nthe first half\r\n")
    c.close()  # gone mid-DATA
    p.wait_for_log(r"msg=session-end .*reason=client-closed")
    time.sleep(0.5)
    assert recording_backend.messages == []


def test_oversize_message_refused_backend_gets_nothing(proxy, recording_backend):
    p = proxy([recording_backend.port], **{"limits.max_message_size": "64KB"})
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 80
    # Declared with SIZE=: refused at MAIL FROM.
    with login(p) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("a@example.test", ["b@example.test"], big)
        assert e.value.smtp_code == 552
    # Not declared: counted as it streams, refused at the end, and the
    # session goes on.
    c = SmtpLines(p).login(b"c.test")
    assert c.cmd(b"MAIL FROM:<a@example.test>").startswith(b"250")
    assert c.cmd(b"RCPT TO:<b@example.test>").startswith(b"250")
    assert c.cmd(b"DATA").startswith(b"354")
    c.send(big + b".\r\n")
    assert c.reply().startswith(b"552 5.3.4 ")
    assert c.cmd(b"MAIL FROM:<a@example.test>").startswith(b"250")
    assert c.cmd(b"RCPT TO:<b@example.test>").startswith(b"250")
    assert c.cmd(b"DATA").startswith(b"354")
    assert c.cmd(b"Subject: ok\r\n\r\nsmall\r\n.").startswith(b"250 ")
    c.close()
    got = recording_backend.wait_for_messages(1)
    time.sleep(0.3)
    assert len(recording_backend.messages) == 1 and b"small" in got[0]["content"]


@pytest.mark.parametrize("code", ["451 4.3.0 try later", "554 5.7.1 no thanks"])
def test_backend_verdict_is_the_clients(proxy, recording_backend, code):
    recording_backend.fail_data = code
    p = proxy([recording_backend.port])
    with login(p) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@example.test", ["b@example.test"], b"Subject: x\r\n\r\nx\r\n")
    assert e.value.smtp_code == int(code[:3])
    assert code[4:].encode() in e.value.smtp_error


def test_rcpt_refusal_relayed(proxy, recording_backend):
    recording_backend.fail_rcpt = "550 5.1.1 no such user"
    p = proxy([recording_backend.port])
    with login(p) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("a@example.test", ["nobody@example.test"], b"x\r\n")
    assert e.value.recipients["nobody@example.test"][0] == 550


def test_failover_to_next_backend(proxy, recording_backend):
    dead = free_port()  # nothing listens there
    p = proxy([dead, recording_backend.port])
    for i in range(4):  # round robin starts on either; all must arrive
        with login(p) as s:
            s.sendmail("a@example.test", ["b@example.test"], f"Subject: {i}\r\n\r\nx\r\n")
    assert len(recording_backend.wait_for_messages(4)) == 4
    p.wait_for_log(r"msg=backend-failed .*step=connect")


def test_backend_without_xclient_is_skipped(proxy, recording_backend):
    recording_backend.advertise_xclient = False
    p = proxy([recording_backend.port])
    with login(p) as s:
        code, _ = s.docmd("MAIL FROM:<a@example.test>")
    assert code == 451
    assert recording_backend.messages == []
    p.wait_for_log(r"msg=backend-failed .*backend does not offer XCLIENT")


def test_identity_none_backend(proxy, recording_backend):
    recording_backend.advertise_xclient = False
    p = proxy([{"address": f"127.0.0.1:{recording_backend.port}", "identity": "none"}])
    with login(p) as s:
        s.sendmail("a@example.test", ["b@example.test"], b"Subject: n\r\n\r\nx\r\n")
    assert recording_backend.wait_for_messages(1)[0]["xclient"] == {}


def test_backend_dies_mid_data_gives_451(proxy):
    backend = FaultyBackend(die_in_data=20000)
    try:
        p = proxy([{"address": f"127.0.0.1:{backend.port}", "identity": "none"}])
        body = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 2000
        with login(p) as s:
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail("a@example.test", ["b@example.test"], body)
            assert e.value.smtp_code == 451
            assert s.noop()[0] == 250  # the session survives
        assert not backend.received_end
        p.wait_for_log(r"msg=message-refused .*reason=backend-lost")
    finally:
        backend.close()


def test_pipelined_burst_larger_than_buffers(proxy, recording_backend):
    """4,000 pipelined commands in one TLS write (more than the proxy's
    input buffer and one TLS read): every one answered, in order."""
    p = proxy([recording_backend.port])
    c = SmtpLines(p).login(b"c.test")
    n = 4000
    c.send(b"".join(b"NOOP %d\r\n" % i for i in range(n)) + b"QUIT\r\n")
    for _ in range(n):
        assert c.reply() == b"250 2.0.0 OK"
    assert c.reply().startswith(b"221 ")


def test_smtp_sink_backend(proxy, tmp_path):
    """Postfix's smtp-sink as the backend: it answers XCLIENT with 250
    rather than a new 220, which must work as well."""
    port = free_port()
    log = open(tmp_path / "sink.log", "wb")
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "postfix", "-c",
                             f"127.0.0.1:{port}", "10"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "smtp-sink did not start"
            time.sleep(0.05)
        p = proxy([port])
        with login(p) as s:
            for i in range(3):
                s.sendmail("a@example.test", ["b@example.test"], f"Subject: {i}\r\n\r\nx\r\n")
        assert "backend-failed" not in p.log()
    finally:
        sink.terminate()
        sink.wait(10)
        log.close()


BIG_LINES = b"".join(b"line %06d " % i + b"x" * 60 + b"\r\n" for i in range(3000))


@pytest.mark.parametrize("pieces", [
    [b"Subject: s\r\n\r\nbody\r", b"\n.\r\n", b"QUIT\r\n"],
    [b"Subject: s\r\n\r\nbody\r\n", b".\r\nQUIT\r\n"],
    [b"Subject: s\r\n\r\nbody\r\n.", b"\r\nQUIT\r\n"],
    [b"Subject: s\r\n\r\n..dot\r\nbody\r\n.\r", b"\nQUIT\r\n"],
    [b"Subject: s\r\n\r\n", BIG_LINES, b".\r\nQUIT\r\n"],
    [b"Subject: s\r\n\r\n" + BIG_LINES + b".\r\nQUIT\r\n"],
], ids=["CR|LF.CRLF", "CRLF|.CRLF", "CRLF.|CRLF", "CRLF.CR|LF", "big|.CRLF", "big.CRLF"])
def test_end_of_data_across_tls_records(proxy, recording_backend, pieces):
    """Message bytes are decrypted straight into the backend's buffer and
    scanned there (PERFORMANCE.md change 14): the end of data found across
    TLS records and receives (each piece is a write of its own, a pause
    apart), never earlier, with the command behind it answered, and the
    backend given the message byte for byte (a 200 KB body fills its
    buffer on the way)."""
    p = proxy([recording_backend.port])
    c = SmtpLines(p).login(b"c.test")
    assert c.cmd(b"MAIL FROM:<a@example.test>").startswith(b"250")
    assert c.cmd(b"RCPT TO:<b@example.test>").startswith(b"250")
    assert c.cmd(b"DATA").startswith(b"354")
    for piece in pieces:
        c.send(piece)
        time.sleep(0.05)
    assert c.reply().startswith(b"250 ")
    assert c.reply().startswith(b"221 ")
    stream = b"".join(pieces)
    body = stream[:stream.index(b"\r\n.\r\n") + 2]
    m = recording_backend.wait_for_messages(1)[0]
    assert m["raw"] == body
    assert len(recording_backend.messages) == 1


@pytest.mark.parametrize("fake_end", [b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"], ids=["LF.CRLF", "CRLF.LF", "CR.CRLF"])
def test_fake_end_split_across_tls_records_is_refused(proxy, recording_backend, fake_end):
    """SMTP smuggling with the fake end of data split over two TLS records,
    the pipelined commands in a third: the message is refused whole and no
    second transaction reaches the backend."""
    p = proxy([recording_backend.port])
    c = SmtpLines(p).login(b"c.test")
    assert c.cmd(b"MAIL FROM:<a@example.test>").startswith(b"250")
    assert c.cmd(b"RCPT TO:<b@example.test>").startswith(b"250")
    assert c.cmd(b"DATA").startswith(b"354")
    for piece in (b"Subject: s\r\n\r\nhello" + fake_end[:2], fake_end[2:],
                  b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<v@example.test>\r\n"
                  b"DATA\r\nsmuggled\r\n", b".\r\nQUIT\r\n"):
        c.send(piece)
        time.sleep(0.05)
    assert c.reply().startswith(b"550 ")
    assert c.reply().startswith(b"221 ")
    p.wait_for_log(r"msg=message-refused .*reason=bare-newline")
    time.sleep(0.3)
    assert recording_backend.messages == []
    assert not any(b"evil@" in cmd for cmd in recording_backend.commands)
