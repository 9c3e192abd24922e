"""The cache of verified logins, end to end.

A repeated good login is answered from the cache (the auth line says
cache=hit); a wrong password is never answered from it (535, cache=miss)
and does not evict the good entry; with auth.cache_ttl 0s every login is a
full check.  Outcomes only: how much faster a hit is belongs to bench/.
"""

import smtplib
import ssl

import pytest


def login(p, user, password):
    """One connection, AUTH, QUIT."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=15) as s:
        s.login(user, password)


def refused(p, user, password):
    """One connection whose AUTH PLAIN must be refused with 535 5.7.8 (one
    attempt: login() would retry with LOGIN)."""
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=15) as s:
        s.ehlo()
        s.user, s.password = user, password
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.auth("PLAIN", s.auth_plain)
        assert exc.value.smtp_code == 535
        assert exc.value.smtp_error.startswith(b"5.7.8")


def auth_line(p, user, result, cache, since):
    """Wait for the next auth line for user after since; check it and return
    the log position after it."""
    m = p.wait_for_log(rf"^.*msg=auth .*user={user} .*result=(\w+) cache=(\w+)$",
                       since=since)
    assert (m[1], m[2]) == (result, cache), m[0]
    return m.end()


def test_second_login_hits_the_cache(proxy, recording_backend, users):
    p = proxy([recording_backend.port])
    password = users.passwords["demo"]
    pos = p.mark()

    login(p, "demo", password)
    pos = auth_line(p, "demo", "ok", "miss", pos)
    login(p, "demo", password)
    pos = auth_line(p, "demo", "ok", "hit", pos)

    # A wrong password after that: refused, by the full check.
    refused(p, "demo", "Wrong-Secret-77")
    pos = auth_line(p, "demo", "failed", "miss", pos)
    # ... and the good entry is still there.
    login(p, "demo", password)
    pos = auth_line(p, "demo", "ok", "hit", pos)

    # Failures are not cached: the same wrong password twice, two misses.
    refused(p, "alice", "Wrong-Secret-77")
    pos = auth_line(p, "alice", "failed", "miss", pos)
    refused(p, "alice", "Wrong-Secret-77")
    pos = auth_line(p, "alice", "failed", "miss", pos)
    # An unknown user never gets in, cached or not.
    refused(p, "nobody", password)
    auth_line(p, "nobody", "failed", "miss", pos)


def test_cache_ttl_zero_disables(proxy, recording_backend, users):
    p = proxy([recording_backend.port], **{"auth.cache_ttl": "0s"})
    password = users.passwords["demo"]
    pos = p.mark()

    login(p, "demo", password)
    pos = auth_line(p, "demo", "ok", "miss", pos)
    login(p, "demo", password)
    auth_line(p, "demo", "ok", "miss", pos)
    assert "cache=hit" not in p.log()
