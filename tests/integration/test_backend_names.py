"""Backends by host name (issue 18, item 17, DNS part): a name is
resolved at start and at every reload (on the main thread), each address
it gives is a server of the pool ("HOST:PORT/IP"), and it is looked up
again every backends.resolve_interval: other addresses reload the pool, a
failed lookup is logged and the last good addresses stay; a name that does
not resolve is an error with file:line (-t, start, reload).

No network is used: `localhost` resolves from /etc/hosts, and for answers
that change the proxy runs in a mount namespace of its own (unshare -m)
whose /etc/hosts is a file the test rewrites."""

import json
import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest

from conftest import (MSAPROXY_BIN, ProxyProcess, default_proxy_config,
                      apply_override, to_yaml, wait_until)


def send_one(p, tag):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=30) as s:
        s.login("demo", "demo-pass-1")
        s.sendmail("demo@example.test", [f"{tag}@example.test"],
                   f"Subject: {tag}\r\n\r\n{tag}\r\n".encode())


def backend_names(p):
    return sorted(json.loads(line)["backend"]
                  for line in p.ctl("-j", "backends").stdout.splitlines())


def resolved(name):
    """What the system's resolver gives name, as the proxy asks for it."""
    infos = socket.getaddrinfo(name, 25, 0, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
    return sorted({i[4][0] for i in infos})


def test_localhost_backend_is_one_server_per_address(proxy, recording_backend):
    port = recording_backend.port
    p = proxy([f"localhost:{port}"])
    want = sorted(f"localhost:{port}/{ip}" for ip in resolved("localhost"))
    assert backend_names(p) == want
    p.wait_for_log(rf"msg=ready .*backends={len(want)} ")
    for i in range(3):  # an address with nothing on it (::1) fails over
        send_one(p, f"named{i}")
    got = recording_backend.wait_for_messages(3)
    assert sorted(m["rcpt_tos"][0] for m in got) == \
        [f"named{i}@example.test" for i in range(3)]


def test_name_that_does_not_resolve_is_refused(proxy, recording_backend, tmp_path):
    p = proxy([recording_backend.port])
    good = p.config_path.read_text()
    p.config["backends"]["servers"].append({"address": "nonexistent.invalid:25"})
    p.config_path.write_text(to_yaml(p.config) + "\n")
    line = next(i for i, l in enumerate(p.config_path.read_text().splitlines(), 1)
                if "nonexistent.invalid" in l)
    want = (f"{p.config_path}:{line}: backends.servers[1].address: "
            f"cannot resolve nonexistent.invalid: ")
    check = subprocess.run([MSAPROXY_BIN, "-t", "-c", str(p.config_path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and want in check.stderr, check.stderr
    # A reload is refused with it; the running pool stays and serves.
    r = p.ctl("reload", check=False)
    assert r.returncode == 1
    p.wait_for_log(r"msg=reload-failed .*cannot resolve nonexistent\.invalid")
    send_one(p, "still")
    recording_backend.wait_for_messages(1)
    p.config_path.write_text(good)
    # And a start is refused with the same words.
    bad = tmp_path / "bad.yaml"
    bad.write_text(p.config_path.read_text().replace(
        f"127.0.0.1:{recording_backend.port}", "nonexistent.invalid:25"))
    start = subprocess.run([MSAPROXY_BIN, "-c", str(bad)], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert start.returncode == 1
    assert "cannot resolve nonexistent.invalid: " in start.stderr, start.stderr


@pytest.fixture
def private_hosts(tmp_path):
    """A wrapper that runs msaproxy with tmp_path/hosts as its /etc/hosts
    (a mount namespace of its own; the machine's file is not touched)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind {hosts} /etc/hosts"],
        capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    wrapper = tmp_path / "msaproxy-private-hosts"
    wrapper.write_text("#!/bin/sh\n"
                       f"exec unshare -m sh -c 'mount --bind {hosts} /etc/hosts && "
                       f"exec {MSAPROXY_BIN} \"$@\"' msaproxy \"$@\"\n")
    wrapper.chmod(0o755)
    return hosts, wrapper


def test_names_are_looked_up_again(private_hosts, tmp_path, certs, users, recording_backend):
    hosts, wrapper = private_hosts
    port = recording_backend.port
    # In place (same inode): the bind mount shows every rewrite.
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 mx.test.internal\n")
    config = default_proxy_config(certs, users, [f"mx.test.internal:{port}"])
    apply_override(config, "backends.resolve_interval", "1s")
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    p = ProxyProcess(workdir, config, certs.ca)
    p.start(str(wrapper))
    try:
        assert backend_names(p) == [f"mx.test.internal:{port}/127.0.0.1"]
        p.wait_for_log(r"msg=backend-resolve generation=1 result=same")
        # The name gains an address: the pool is rebuilt with both, the
        # kept server keeps serving.
        since = p.mark()
        hosts.write_text("127.0.0.1 localhost\n127.0.0.1 mx.test.internal\n"
                         "127.0.0.2 mx.test.internal\n")
        p.wait_for_log(r"msg=backend-resolve-changed generation=1 "
                       rf'addresses="mx\.test\.internal:{port}: 127\.0\.0\.1,127\.0\.0\.2"',
                       since=since)
        p.wait_for_log(r"msg=reloaded generation=2 .*backends=2 ", since=since)
        assert backend_names(p) == [f"mx.test.internal:{port}/127.0.0.1",
                                    f"mx.test.internal:{port}/127.0.0.2"]
        # The name stops resolving: logged, the last good addresses stay.
        since = p.mark()
        hosts.write_text("127.0.0.1 localhost\n")
        p.wait_for_log(r"msg=backend-resolve-failed generation=2 "
                       rf'error="mx\.test\.internal:{port}: ', since=since)
        assert backend_names(p) == [f"mx.test.internal:{port}/127.0.0.1",
                                    f"mx.test.internal:{port}/127.0.0.2"]
        assert "msg=reloaded generation=3" not in p.log()
        send_one(p, "lastgood")
        wait_until(lambda: any(m["rcpt_tos"] == ["lastgood@example.test"]
                               for m in recording_backend.messages), 30,
                   "the message through the last good addresses")
    finally:
        p.stop()
