"""CHUNKING / BDAT (RFC 3030) end to end.

Clients are smtplib sessions that send BDAT through smtplib's own socket
(smtplib has no BDAT command: .send() and .getreply()).  Backends are
aiosmtpd recording backends with BDAT added (smtp_backend.py: aiosmtpd
1.4.3 has none) and a real Postfix 3.7, whose smtpd takes BDAT by default.
Every transaction is checked on the backend side: the exact bytes, the
chunk sizes as the backend read them, and, when something fails, that no
LAST chunk ever reached it.
"""

import re
import smtplib
import ssl
import time

import pytest

from conftest import LOOPBACK, wait_until
from smtp_backend import RecordingBackend

PASSWORDS = {"demo": "demo-pass-1", "alice": "alice-pass-2", "bob": "bob-pass-3"}
HEALTH = {"interval": "1s", "timeout": "2s", "rise": 1, "fall": 1}
MAIL = b"MAIL FROM:<demo@example.test>\r\nRCPT TO:<rcpt@example.test>\r\n"


def entry(port):
    return {"address": f"{LOOPBACK}:{port}", "identity": "xclient"}


@pytest.fixture
def backends():
    """Factory: backends(n, chunking=True) starts n recording backends."""
    started = []

    def start(n, chunking=True):
        new = []
        for _ in range(n):
            b = RecordingBackend()
            b.chunking = chunking
            b.start()
            started.append(b)
            new.append(b)
        return new

    yield start
    for b in started:
        b.stop()


def checked_proxy(proxy, bs, **overrides):
    """A proxy over bs whose health checks have seen every backend, so
    what it offers clients is settled."""
    p = proxy([entry(b.port) for b in bs], **{"backends.health_check": HEALTH},
              **overrides)
    for b in bs:
        p.wait_for_log(rf"msg=backend-check backend=127\.0\.0\.1:{b.port} result=ok")
    return p


def login(p, user="demo"):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    s = smtplib.SMTP_SSL(LOOPBACK, p.implicit_port, context=ctx, timeout=20)
    s.login(user, PASSWORDS[user])
    s.ehlo("client.example.test")
    return s


def bdat(size, last=False):
    return b"BDAT %d%s\r\n" % (size, b" LAST" if last else b"")


def chunked(*chunks):
    """BDAT commands with their chunks, the last one LAST."""
    return b"".join(bdat(len(c), i == len(chunks) - 1) + c for i, c in enumerate(chunks))


def replies(s, n):
    return [s.getreply() for _ in range(n)]


def no_last_chunk(b):
    """The backend never read a whole LAST chunk, nor got a message."""
    return (b.messages == [] and
            all(not last for conn in b.connections for _, last in conn["bdat"]))


# ---------------------------------------------------------------------------
# What is offered
# ---------------------------------------------------------------------------


def test_chunking_offered_only_when_every_backend_takes_it(proxy, backends):
    """One backend without CHUNKING: not offered, and a hostile BDAT gets
    502 with its chunk dropped (the QUIT inside it is not obeyed)."""
    (a,) = backends(1)
    (plain,) = backends(1, chunking=False)
    p = checked_proxy(proxy, [a, plain])
    with login(p) as s:
        assert "chunking" not in s.esmtp_features
        s.send(MAIL + b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
        got = replies(s, 4)
        assert [c for c, _ in got] == [250, 250, 502, 250], got
        assert got[2][1].startswith(b"5.5.1 BDAT not available")
        assert s.rset()[0] == 250
    assert not any(c.upper().startswith(b"BDAT") for c in a.commands + plain.commands)

    (b,) = backends(1)
    p = checked_proxy(proxy, [a, b])
    with login(p) as s:
        assert "chunking" in s.esmtp_features
        # Before TLS it is not offered.
        plain_client = smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=20)
        try:
            plain_client.ehlo("client.example.test")
            assert "chunking" not in plain_client.esmtp_features
        finally:
            plain_client.close()


# ---------------------------------------------------------------------------
# Relay
# ---------------------------------------------------------------------------


def test_bdat_pipelined_chunks_arrive_byte_for_byte(proxy, backends):
    """MAIL, RCPT, three chunks and a NOOP in one write: replies in order,
    each chunk's reply the backend's own, the backend reads the same
    chunk sizes and the exact bytes (a CRLF split across chunks, a line
    ".", lines starting with dots, 8-bit bytes: nothing stuffed or
    changed)."""
    (b,) = backends(1)
    p = checked_proxy(proxy, [b])
    chunks = [b"Subject: bdat\r\nX-Test: 1\r\n\r\n.leading dot\r\n",
              bytes(range(0x20, 0x7f)) + b"\r\n\xc3\xa9t\xc3\xa9 8-bit\r",
              b"\n.\r\n..two dots\r\nend\r\n"]
    with login(p) as s:
        s.send(MAIL + chunked(*chunks) + b"NOOP\r\n")
        got = replies(s, 6)
    assert [c for c, _ in got] == [250] * 6, got
    assert got[2] == (250, b"2.0.0 Ok: %d bytes" % len(chunks[0]))
    assert got[3] == (250, b"2.0.0 Ok: %d bytes" % len(chunks[1]))
    assert got[4][1].startswith(b"2.0.0 Ok: queued as REC")
    (m,) = b.wait_for_messages(1)
    assert m["raw"] == b"".join(chunks)
    assert m["chunks"] == [(len(chunks[0]), False), (len(chunks[1]), False),
                           (len(chunks[2]), True)]
    assert m["xclient"]["LOGIN"] == "demo"
    p.wait_for_log(rf"msg=message .*size={len(b''.join(chunks))} result=250")


def test_bdat_chunks_across_tls_records(proxy, backends):
    """Chunk bytes are decrypted straight into the backend's buffer
    (PERFORMANCE.md change 14): a chunk split over TLS records and
    receives (each piece a write of its own, a pause apart), a chunk's end
    and the next BDAT in one record, a 200 KB chunk that fills the
    backend's buffer, and a NOOP right behind the LAST chunk: the backend
    gets each chunk whole and exact, the client every reply in order."""
    (b,) = backends(1)
    p = checked_proxy(proxy, [b])
    big = b"".join(b"line %06d " % i + b"y" * 60 + b"\r\n" for i in range(3000))
    chunks = [b"Subject: records\r\n\r\nfirst part\r\n", big, b"tail\r\n.\r\n"]
    stream = chunked(*chunks) + b"NOOP\r\n"
    cuts = [len(bdat(0)) + 5, len(bdat(0)) + len(chunks[0]) + 3,
            len(stream) - len(chunks[2]) - 20, len(stream) - 8]
    with login(p) as s:
        s.send(MAIL)
        assert [c for c, _ in replies(s, 2)] == [250, 250]
        last = 0
        for cut in cuts + [len(stream)]:
            s.send(stream[last:cut])
            last = cut
            time.sleep(0.05)
        got = replies(s, 4)
    assert [c for c, _ in got] == [250] * 4, got
    (m,) = b.wait_for_messages(1)
    assert m["raw"] == b"".join(chunks)
    assert m["chunks"] == [(len(chunks[0]), False), (len(chunks[1]), False),
                           (len(chunks[2]), True)]


def test_bdat_large_chunks_and_zero_last(proxy, backends):
    """3 MB in chunks bigger than every buffer on the way, one reply at a
    time, then "BDAT 0 LAST"; and a second message on the same session."""
    (b,) = backends(1)
    p = checked_proxy(proxy, [b])
    body = b"".join(b"%07d " % i + b"z" * 90 + b"\r\n" for i in range(30000))
    parts = [body[:1000000], body[1000000:2500000], body[2500000:]]
    with login(p) as s:
        assert s.mail("demo@example.test")[0] == 250
        assert s.rcpt("rcpt@example.test")[0] == 250
        for part in parts:
            s.send(bdat(len(part)) + part)
            assert s.getreply() == (250, b"2.0.0 Ok: %d bytes" % len(part))
        s.send(bdat(0, True))
        code, text = s.getreply()
        assert code == 250 and text.startswith(b"2.0.0 Ok: queued"), (code, text)
        # The session goes on, with DATA this time.
        s.sendmail("demo@example.test", ["rcpt@example.test"], b"Subject: 2\r\n\r\nx\r\n")
    m1, m2 = b.wait_for_messages(2)
    assert m1["raw"] == body
    assert m1["chunks"] == [(len(x), False) for x in parts] + [(0, True)]
    assert m2["chunks"] is None and m2["raw"] == b"Subject: 2\r\n\r\nx\r\n"


# ---------------------------------------------------------------------------
# Refusals (RFC 3030)
# ---------------------------------------------------------------------------


def test_bdat_refusals(proxy, backends):
    (b,) = backends(1)
    p = checked_proxy(proxy, [b], **{"limits.max_message_size": "10KB"})
    with login(p) as s:
        assert s.esmtp_features["size"] == "10240"
        # Unreadable size: 501, and nothing is skipped.
        s.send(b"BDAT twelve\r\nNOOP\r\n")
        assert [c for c, _ in replies(s, 2)] == [501, 250]
        # No transaction: 503, the chunk (a QUIT) dropped unread.
        s.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
        got = replies(s, 2)
        assert got == [(503, b"5.5.1 Need MAIL command"), (250, b"2.0.0 OK")], got
        # No recipient.
        assert s.mail("demo@example.test")[0] == 250
        s.send(b"BDAT 4 LAST\r\nNOOPRSET\r\n")
        assert [c for c, _ in replies(s, 2)] == [554, 250]
        # Over SIZE: 552 at the command; the chunk is dropped, the
        # transaction ends and the backend never gets the LAST chunk.
        s.send(MAIL + bdat(5000) + b"a" * 5000 + bdat(6000, True) + b"b" * 6000
               + b"NOOP\r\n")
        got = replies(s, 5)
        assert [c for c, _ in got] == [250, 250, 250, 552, 250], got
        assert got[3][1].startswith(b"5.3.4")
        # DATA after BDAT, RCPT after BDAT: 503; RSET ends it.
        s.send(MAIL + bdat(5) + b"hello" + b"DATA\r\nRCPT TO:<x@example.test>\r\nRSET\r\n")
        got = replies(s, 6)
        assert [c for c, _ in got] == [250, 250, 250, 503, 503, 250], got
        assert got[3][1] == b"5.5.1 DATA not permitted after BDAT"
        # A whole message still goes through.
        s.send(MAIL + chunked(b"Subject: ok\r\n\r\nfine\r\n"))
        assert [c for c, _ in replies(s, 3)] == [250, 250, 250]
    (m,) = b.wait_for_messages(1)
    assert m["raw"] == b"Subject: ok\r\n\r\nfine\r\n"
    # Only whole messages: the over-size one never got a LAST.
    assert [last for conn in b.connections for _, last in conn["bdat"]].count(True) == 1


def test_bdat_bare_lf_or_nul_is_refused(proxy, backends):
    (b,) = backends(1)
    p = checked_proxy(proxy, [b])
    with login(p) as s:
        for bad in (b"Subject: x\r\n\r\nbare\nLF\r\n", b"nul\0\r\n", b"ends on CR\r"):
            s.send(MAIL + bdat(10) + b"Subject: \r" + bdat(len(bad), True) + bad)
            got = replies(s, 4)
            assert [c for c, _ in got] == [250, 250, 250, 550], (bad, got)
            assert got[3][1].startswith(b"5.6.0")
        # A bare CR inside a chunk ends that chunk's transaction (550 for
        # it, 503 for the pipelined LAST); "BDAT 0 LAST" after a chunk
        # that ended in CR is a bare CR too (a CR then LF across chunks
        # is a CRLF: test_bdat_pipelined_chunks_arrive_byte_for_byte).
        s.send(MAIL + bdat(3) + b"a\r\r" + bdat(1, True) + b"\n")
        assert [c for c, _ in replies(s, 4)] == [250, 250, 550, 503]
        s.send(MAIL + bdat(3) + b"a\r\n" + bdat(1) + b"\r" + bdat(0, True))
        assert [c for c, _ in replies(s, 5)] == [250, 250, 250, 250, 550]
    p.wait_for_log(r"msg=message-refused .*reason=bare-newline")
    assert no_last_chunk(b)


def test_bdat_user_byte_rate(proxy, backends):
    (b,) = backends(1)
    p = checked_proxy(proxy, [b], **{"limits.max_message_size": "4KB",
                                     "limits.user": {"bytes": "6KB/1h"}})
    body = b"Subject: rate\r\n\r\n" + b"r" * 3900 + b"\r\n"
    with login(p) as s:
        s.send(MAIL + chunked(body))
        assert [c for c, _ in replies(s, 3)] == [250, 250, 250]
        s.send(MAIL + chunked(body[:2000], body[2000:]))
        got = replies(s, 4)
        assert [c for c, _ in got] == [250, 250, 250, 451], got
        assert got[3][1].startswith(b"4.7.1 Message data rate limit reached")
        assert s.noop()[0] == 250
    p.wait_for_log(r"msg=message-refused .*reason=rate-limit")
    assert len(b.wait_for_messages(1)) == 1
    assert sum(1 for c in b.connections for _, last in c["bdat"] if last) == 1


# ---------------------------------------------------------------------------
# Nothing lost, nothing duplicated
# ---------------------------------------------------------------------------


def test_backend_dying_mid_bdat(proxy, backends):
    """The backend dies inside the second chunk: 451 for it, 503 for the
    pipelined LAST one (the transaction failed, RFC 3030 2), and the
    backend never got a LAST chunk; the next transaction reconnects."""
    (b,) = backends(1)
    p = checked_proxy(proxy, [b])
    b.die_in_bdat = 100000
    big = b"y" * 80000
    with login(p) as s:
        s.send(MAIL + bdat(80000) + big + bdat(80000) + big + bdat(80000, True) + big)
        got = replies(s, 5)
        assert [c for c, _ in got] == [250, 250, 250, 451, 503], got
        assert got[3][1].startswith(b"4.4.2")
        assert s.noop()[0] == 250
        wait_until(lambda: b.bdat_cuts, 10, "the cut")
        assert b.bdat_cuts[0]["chunks"] == [(80000, False), (80000, False)]
        assert not any(re.match(rb"BDAT \d+ LAST", c, re.I) for c in b.commands)
        assert no_last_chunk(b)
        b.die_in_bdat = None
        s.send(MAIL + chunked(b"Subject: again\r\n\r\n", b"ok\r\n"))
        assert [c for c, _ in replies(s, 4)] == [250] * 4
    (m,) = b.wait_for_messages(1)
    assert m["raw"] == b"Subject: again\r\n\r\nok\r\n"
    p.wait_for_log(r"msg=backend-lost ")


def test_backend_refusing_a_chunk_ends_the_transaction(proxy, backends):
    """A 452 to a middle chunk is the client's answer; the pipelined
    LAST chunk gets 503 and never reaches the backend."""
    (b,) = backends(1)
    p = checked_proxy(proxy, [b])
    b.fail_bdat = "452 4.3.1 Insufficient system storage"
    with login(p) as s:
        s.send(MAIL + chunked(b"x" * 100, b"y" * 100) + b"NOOP\r\n")
        got = replies(s, 5)
        assert [c for c, _ in got] == [250, 250, 452, 503, 250], got
        assert got[2][1] == b"4.3.1 Insufficient system storage"
    assert no_last_chunk(b)


# ---------------------------------------------------------------------------
# A real Postfix
# ---------------------------------------------------------------------------


def test_bdat_through_to_postfix(proxy, postfix_backend):
    """Postfix offers CHUNKING; the proxy offers it on, relays the chunks
    as BDAT (Postfix counts them in its disconnect line) and the client's
    250 is Postfix's queue ID."""
    p = proxy([entry(postfix_backend.port)], **{"backends.health_check": HEALTH})
    p.wait_for_log(rf"msg=backend-check backend=127\.0\.0\.1:{postfix_backend.port} "
                   r"result=ok")
    since = postfix_backend.mark()
    body = b"Subject: bdat to postfix\r\n\r\n" + b"p" * 5000 + b"\r\n"
    with login(p, "alice") as s:
        assert "chunking" in s.esmtp_features
        s.send(MAIL + chunked(body[:3000], body[3000:]))
        got = replies(s, 4)
        assert [c for c, _ in got] == [250] * 4, got
        queue_id = re.search(rb"queued as (\w+)", got[3][1])[1].decode()
    postfix_backend.wait_for_log(
        rf"postfix/smtpd\[\d+\]: {queue_id}: client=\S*\[127\.0\.0\.1\], "
        r"sasl_method=XCLIENT, sasl_username=alice$", since=since)
    postfix_backend.wait_for_log(rf"{queue_id}: from=<demo@example\.test>, size=\d+",
                                 since=since)
    postfix_backend.wait_for_log(r"disconnect from \S+ .*bdat=2 ", since=since)
