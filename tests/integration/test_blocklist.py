"""The blocklist at accept() (proxy/bans/bans.c, bantable.c): blocklist files,
bans over the control socket with a TTL, the allowlist, reload with a
diff, automatic bans listed, and a broken file refused with its line.
These run without XDP (loopback); test_xdp_proxy.py drives the same list
in the kernel.

Clients connect from 127.0.0.8/29 (Linux routes all of 127/8 to lo);
127.0.0.1 stays free for the harness.
"""

import json
import subprocess


from conftest import LOOPBACK, MSAPROXY_BIN, raw_greeting, wait_until


def greeting(p, source):
    """What the STARTTLS listener says first to a client from source."""
    return raw_greeting(p.starttls_port, source)


def admitted(p, source):
    return greeting(p, source).startswith(b"220 ")


def listing(p):
    return [json.loads(x) for x in p.ctl("-j", "list").stdout.splitlines()]


def test_file_allow_and_reload(proxy, recording_backend, tmp_path):
    listed = tmp_path / "block.txt"
    listed.write_text("# test list\n127.0.0.8/30   ; a /30\n127.0.0.13\n")
    p = proxy([recording_backend.port],
              **{"blocklist": {"files": [str(listed)], "allow": ["127.0.0.9"]}})
    p.wait_for_log(r"msg=blocklist-ready entries=2 allow=1 files=1 xdp=off")
    assert not admitted(p, "127.0.0.8")
    assert not admitted(p, "127.0.0.10")
    assert admitted(p, "127.0.0.9")  # the allowlist wins
    assert not admitted(p, "127.0.0.13")
    assert admitted(p, "127.0.0.12")  # a neighbour
    # The refusal names the client (of the line it writes, one a second).
    p.wait_for_log(r"msg=session-refused worker=\d+ listener=\S+ "
                   r"client=127\.0\.0\.(8|10|13) reason=blocklist suppressed=\d+")
    stats = json.loads(p.ctl("-j", "stats").stdout)
    assert stats["blocklist_refused_at_accept"] == 3
    entries = {(e["prefix"], e["table"], e["reason"]) for e in listing(p)}
    assert entries == {("127.0.0.8/30", "block", "file"), ("127.0.0.13/32", "block", "file"),
                       ("127.0.0.9/32", "allow", "file")}

    # Reload with a changed file: a diff, not a wipe.
    listed.write_text("127.0.0.12\n127.0.0.13\n")
    p.ctl("reload")
    assert admitted(p, "127.0.0.8")
    assert not admitted(p, "127.0.0.12")
    assert not admitted(p, "127.0.0.13")

    # A broken file is refused with its line; the old list stays.
    listed.write_text("127.0.0.14\nnot-an-address\n")
    r = p.ctl("reload", check=False)
    assert r.returncode == 1
    assert f"{listed}:2:" in r.stderr, r.stderr
    assert not admitted(p, "127.0.0.12")
    assert admitted(p, "127.0.0.14")


def test_manual_ban_ttl_and_unban(proxy, recording_backend):
    p = proxy([recording_backend.port])
    assert admitted(p, "127.0.0.10")
    # The TTL ban is checked first, while it surely holds (3 s).
    p.ctl("ban", "127.0.0.10", "--ttl", "3s")
    assert not admitted(p, "127.0.0.10")
    ttl = [e for e in listing(p) if e["prefix"] == "127.0.0.10/32"][0]
    assert ttl["reason"] == "manual" and 0 <= ttl["expires_in_s"] <= 3
    p.ctl("ban", "127.0.0.16/29")
    assert not admitted(p, "127.0.0.17")
    assert admitted(p, "127.0.0.11")
    human = p.ctl("list").stdout
    assert "127.0.0.16/29 block manual permanent" in human, human
    p.wait_for_log(r"msg=banned network=127\.0\.0\.10/32 ttl_ms=3000 reason=manual")
    # The TTL ban ends on its own.
    wait_until(lambda: admitted(p, "127.0.0.10"), 8, "the 3 s ban to expire")
    wait_until(lambda: all(e["prefix"] != "127.0.0.10/32" for e in listing(p)), 4,
               "the expired entry to be swept")
    p.ctl("unban", "127.0.0.16/29")
    assert admitted(p, "127.0.0.17")
    r = p.ctl("unban", "127.0.0.16/29", check=False)
    assert r.returncode == 1 and "is not banned" in r.stderr
    for bad in (["ban", "127.0.0.300"], ["ban", "127.0.0.1/33"],
                ["ban", "127.0.0.10", "--ttl", "soon"]):
        r = p.ctl(*bad, check=False)
        assert r.returncode == 1, bad
    # A TTL of nothing is a value error, and says what is wrong with it.
    for zero in ("0s", "0h"):
        r = p.ctl("ban", "127.0.0.10", "--ttl", zero, check=False)
        assert r.returncode == 1, zero
        assert "--ttl: must be above zero" in r.stderr, r.stderr
    # A request that is not a ban at all is a usage error: exit 2.
    for usage in (["ban"], ["ban", "127.0.0.10", "--ttl"], ["unban"]):
        r = p.ctl(*usage, check=False)
        assert r.returncode == 2, (usage, r.returncode, r.stderr)
        assert "usage: " in r.stderr, r.stderr


def test_shorter_ttl_on_a_ban_is_refused(proxy, recording_backend):
    """A ban is never shortened by a second ban: the operator is told so
    (and how long it still runs), and unbans first to shorten it."""
    p = proxy([recording_backend.port])
    p.ctl("ban", "127.0.0.10", "--ttl", "1h")
    r = p.ctl("ban", "127.0.0.10", "--ttl", "10s", check=False)
    assert r.returncode == 1
    assert "127.0.0.10/32 is already banned for" in r.stderr, r.stderr
    assert "unban it first" in r.stderr, r.stderr
    left = [e for e in listing(p) if e["prefix"] == "127.0.0.10/32"][0]["expires_in_s"]
    assert left > 3500, left
    # Longer, or the same again, is fine; so is permanent over timed.
    p.ctl("ban", "127.0.0.10", "--ttl", "2h")
    p.ctl("ban", "127.0.0.10")
    r = p.ctl("ban", "127.0.0.10", "--ttl", "1d", check=False)
    assert r.returncode == 1 and "already banned permanently" in r.stderr, r.stderr
    p.ctl("ban", "127.0.0.10")
    # Unban, then the short ban is taken.
    p.ctl("unban", "127.0.0.10")
    p.ctl("ban", "127.0.0.10", "--ttl", "10s")
    left = [e for e in listing(p) if e["prefix"] == "127.0.0.10/32"][0]["expires_in_s"]
    assert left <= 10, left


def test_login_bans_are_listed_and_answered_421(proxy, recording_backend):
    import smtplib
    import ssl
    p = proxy([recording_backend.port],
              **{"limits.ip.auth_failures": "2/1h", "limits.ip.ban_time": "30s"})
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15,
                      source_address=("127.0.0.20", 0)) as s:
        s.starttls(context=ctx)
        for _ in range(2):
            try:
                s.login("demo", "wrong")
            except (smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected):
                pass
    p.wait_for_log(r"msg=ip-banned .*network=127\.0\.0\.20/32")
    auto = [e for e in listing(p) if e["reason"] == "auto"]
    assert [e["prefix"] for e in auto] == ["127.0.0.20/32"]
    assert 20 <= auto[0]["expires_in_s"] <= 30
    # Without XDP the limits answer it, with the seconds left.
    text = greeting(p, "127.0.0.20")
    assert text.startswith(b"421 4.7.0") and b"failed logins" in text


def test_unban_lifts_a_login_ban(proxy, recording_backend):
    """An operator's unban lifts an automatic ban everywhere: the blocklist
    entry and the limits' own ban of the network (and its failure count)."""
    import smtplib
    import ssl
    p = proxy([recording_backend.port],
              **{"limits.ip.auth_failures": "2/1h", "limits.ip.ban_time": "1h"})
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15,
                      source_address=("127.0.0.21", 0)) as s:
        s.starttls(context=ctx)
        for _ in range(2):
            try:
                s.login("demo", "wrong")
            except (smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected):
                pass
    p.wait_for_log(r"msg=ip-banned .*network=127\.0\.0\.21/32")
    assert greeting(p, "127.0.0.21").startswith(b"421 4.7.0")
    p.ctl("unban", "127.0.0.21/32")
    assert all(e["prefix"] != "127.0.0.21/32" for e in listing(p))
    text = greeting(p, "127.0.0.21")
    assert text.startswith(b"220 "), text
    p.wait_for_log(r"msg=unbanned network=127\.0\.0\.21/32 blocklist=1 limits=1")
    # The failure count went too: one more failure (one AUTH PLAIN, where
    # login() may try two mechanisms) does not ban again.
    with smtplib.SMTP(LOOPBACK, p.starttls_port, timeout=15,
                      source_address=("127.0.0.21", 0)) as s:
        s.starttls(context=ctx)
        s.ehlo()
        s.user, s.password = "demo", "wrong"
        try:
            s.auth("PLAIN", s.auth_plain)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected):
            pass
    assert greeting(p, "127.0.0.21").startswith(b"220 ")
    # Unbanning what is banned nowhere is still an error.
    r = p.ctl("unban", "127.0.0.21/32", check=False)
    assert r.returncode == 1 and "is not banned" in r.stderr


def test_bad_file_or_xdp_required_stops_the_start(tmp_path, certs, users):
    from conftest import default_proxy_config, to_yaml, free_port
    bad = tmp_path / "bad.txt"
    bad.write_text("198.51.100.0/24\n198.51.100.1/24\n")
    cfg = default_proxy_config(certs, users, [free_port()])
    cfg["listeners"] = [{"address": f"{LOOPBACK}:{free_port()}", "mode": "starttls"}]
    cfg["blocklist"] = {"files": [str(bad)]}
    path = tmp_path / "msaproxy.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    r = subprocess.run([MSAPROXY_BIN, "-c", str(path)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1
    assert f"{bad}:2: host bits set after the prefix length" in r.stderr, r.stderr

    # XDP on an interface that does not exist: required -> no start.
    cfg["blocklist"] = {"xdp": {"enabled": True, "interfaces": ["msa-nonexist0"],
                                "required": True, "pin_dir": str(tmp_path / "pins")}}
    path.write_text(to_yaml(cfg) + "\n")
    r = subprocess.run([MSAPROXY_BIN, "-c", str(path)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1
    assert "blocklist.xdp" in r.stderr and "xdp.required is set" in r.stderr, r.stderr


def test_xdp_unusable_falls_back_to_accept(proxy, recording_backend, tmp_path):
    """Not required: the proxy says so loudly and keeps the list at accept()."""
    p = proxy([recording_backend.port],
              **{"blocklist": {"xdp": {"enabled": True, "interfaces": ["msa-nonexist0"],
                                       "pin_dir": str(tmp_path / "pins")}}})
    p.wait_for_log(r"level=error msg=xdp-(attach-failed|unavailable) ")
    p.ctl("ban", "127.0.0.10")
    assert not admitted(p, "127.0.0.10")
    assert admitted(p, "127.0.0.11")
