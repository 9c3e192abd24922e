"""Privilege drop after start-up (proxy/ops/privilege.c), checked on the
running process through /proc: every thread's uid/gid, capability sets
and no_new_privs.

Started as root, msaproxy binds, reads its keys and attaches XDP, then
switches to privileges.user and keeps only CAP_NET_BIND_SERVICE (a reload
may add a listener below 1024) and, with XDP attached, CAP_BPF.  Without
privileges.user it stays uid 0 but with the same capabilities.  The XDP
case is in test_xdp_proxy.py (it needs namespaces).

These tests need root (to have privileges to drop); under CI a skip is a
failure (conftest.py).
"""

import os
import pwd
import grp
import shutil
import smtplib
import socket
import ssl

import pytest

from conftest import LOOPBACK, config_check, port_accepts, to_yaml, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: there are no privileges to drop")

CAP_NET_BIND_SERVICE = 10
CAP_BPF = 39
MSG = b"Subject: privileges\r\n\r\nhello\r\n"
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


def status_of(path):
    fields = {}
    for line in open(path).read().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def threads(pid):
    """/proc status of every thread of pid: {tid: fields}."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[tid] = status_of(f"/proc/{pid}/task/{tid}/status")
        except FileNotFoundError:
            pass  # a thread that just ended
    return out


def caps(fields, name):
    """The capability numbers set in CapPrm, CapEff, ... of a status."""
    mask = int(fields[name], 16)
    return {bit for bit in range(64) if mask >> bit & 1}


def jemalloc_linked(pid):
    """Is jemalloc the allocator (not the ASan build's own)?"""
    with open(f"/proc/{pid}/maps") as maps:
        return any("libjemalloc" in line for line in maps)


def assert_dropped(p, uid, gid, kept):
    p.wait_for_log(r"msg=ready")  # every thread has started
    every = threads(p.proc.pid)
    # main (the control plane), workers (2), auth threads (2), and with
    # jemalloc its purging thread: started after the drop (server.c), it
    # must show the dropped credentials like the others
    assert len(every) >= 5, every.keys()
    if jemalloc_linked(p.proc.pid):
        names = [st["Name"] for st in every.values()]
        assert names.count("jemalloc_bg_thd") == 1, names
    for tid, st in every.items():
        assert st["Uid"].split() == [str(uid)] * 4, (tid, st["Uid"])
        assert st["Gid"].split() == [str(gid)] * 4, (tid, st["Gid"])
        assert caps(st, "CapPrm") == kept, (tid, st["CapPrm"])
        assert caps(st, "CapEff") == kept, (tid, st["CapEff"])
        assert caps(st, "CapInh") == set(), (tid, st["CapInh"])
        assert caps(st, "CapAmb") == set(), (tid, st["CapAmb"])
        assert caps(st, "CapBnd") == kept, (tid, st["CapBnd"])
        assert st["NoNewPrivs"] == "1", tid


def submit(p, port=None, implicit=True):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    if implicit:
        s = smtplib.SMTP_SSL(LOOPBACK, port or p.implicit_port, context=ctx, timeout=15)
    else:
        s = smtplib.SMTP(LOOPBACK, port or p.starttls_port, timeout=15)
        s.starttls(context=ctx)
    with s:
        s.login("demo", "demo-pass-1")
        s.sendmail("a@example.test", ["r@example.test"], MSG)


def free_low_port():
    """A free port below 1024 (binding one needs CAP_NET_BIND_SERVICE)."""
    for port in range(1000, 600, -1):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024 on loopback")


def let_through(path):
    """path and its ancestors below /tmp."""
    while str(path) not in ("/", "/tmp"):
        yield path
        path = path.parent


def test_runs_as_the_configured_user_with_one_capability(proxy, recording_backend):
    p = proxy([recording_backend.port], **{"privileges.user": "nobody"})
    p.wait_for_log(r"msg=privileges user=nobody uid=%d gid=%d "
                   r"capabilities=cap_net_bind_service no_new_privs=1"
                   % (NOBODY.pw_uid, NOBODY.pw_gid))
    assert_dropped(p, NOBODY.pw_uid, NOBODY.pw_gid, {CAP_NET_BIND_SERVICE})
    submit(p)
    submit(p, implicit=False)
    recording_backend.wait_for_messages(2)
    # The control socket is the running user's, still only for its owner
    # (and root).
    st = os.stat(p.control_socket)
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert st.st_mode & 0o777 == 0o600
    assert "state running" in p.ctl("status").stdout or p.ctl("-j", "status")


def test_group_and_reload_as_the_user(proxy, recording_backend, certs, users, tmp_path,
                                      request):
    """After the switch, a reload reads the keys and users file as that
    user: readable by it, the reload works, including a new listener
    below 1024; unreadable, the reload is refused and the old
    configuration keeps serving."""
    own = tmp_path / "own"
    own.mkdir()
    for src in (certs.ecdsa_cert, certs.ecdsa_key, certs.rsa_cert, certs.rsa_key, users.path):
        shutil.copy(src, own / os.path.basename(src))
    for f in [own, *own.iterdir()]:
        os.chown(f, NOBODY.pw_uid, NOGROUP.gr_gid)
    # The config file too: let nobody through pytest's 0700 directories.
    for d in let_through(tmp_path):
        request.addfinalizer(lambda d=d, m=d.stat().st_mode: os.chmod(d, m))
        os.chmod(d, d.stat().st_mode | 0o111)
    p = proxy([recording_backend.port], **{
        "privileges.user": "nobody",
        "privileges.group": NOGROUP.gr_name,
        "tls.certificates": [{"cert": own / "ecdsa.crt", "key": own / "ecdsa.key"}],
        "auth.passwd_file": own / os.path.basename(users.path),
    })
    assert_dropped(p, NOBODY.pw_uid, NOGROUP.gr_gid, {CAP_NET_BIND_SERVICE})

    low = free_low_port()
    p.config["listeners"].append({"address": f"{LOOPBACK}:{low}", "mode": "starttls"})
    p.rewrite_config(**{"tls.certificates": [{"cert": own / "rsa.crt",
                                              "key": own / "rsa.key"}]})
    since = p.mark()
    p.ctl("reload")
    p.wait_for_log(r"msg=reloaded", since=since)
    wait_until(lambda: port_accepts(low), 5, f"the new listener on port {low}")
    submit(p, port=low, implicit=False)

    # A key the user cannot read: refused, and the running config stays.
    os.chown(own / "rsa.key", 0, 0)
    os.chmod(own / "rsa.key", 0o600)
    since = p.mark()
    bad = p.ctl("reload", check=False)
    assert bad.returncode != 0
    p.wait_for_log(r"msg=reload-failed.*rsa\.key", since=since)
    submit(p)
    recording_backend.wait_for_messages(2)
    assert_dropped(p, NOBODY.pw_uid, NOGROUP.gr_gid, {CAP_NET_BIND_SERVICE})


def test_root_without_a_user_still_sheds_capabilities(proxy, recording_backend):
    p = proxy([recording_backend.port])
    p.wait_for_log(r"msg=privileges user=\(unchanged\) uid=0 gid=0 "
                   r"capabilities=cap_net_bind_service no_new_privs=1")
    assert_dropped(p, 0, 0, {CAP_NET_BIND_SERVICE})
    submit(p)
    recording_backend.wait_for_messages(1)


def write_config(tmp_path, proxy_config_text):
    path = tmp_path / "bad.yaml"
    path.write_text(proxy_config_text)
    return path


@pytest.mark.parametrize("privileges, error", [
    ({"user": "no-such-user-here"}, r'privileges\.user: no user "no-such-user-here"'),
    ({"user": "root"}, r'privileges\.user: "root" is root'),
    ({"user": "Bad User"}, r"privileges\.user: expected a user name"),
    ({"group": "nogroup"}, r"privileges\.group: needs privileges\.user"),
    ({"user": "nobody", "seccomp": "maybe"}, r"privileges\.seccomp: must be off, log or kill"),
])
def test_bad_privileges_are_refused_with_file_and_line(tmp_path, certs, users, privileges,
                                                       error):
    import re
    from conftest import default_proxy_config
    config = default_proxy_config(certs, users, [2525])
    config["listeners"] = [{"address": f"{LOOPBACK}:2587", "mode": "starttls"}]
    config["privileges"] = privileges
    path = write_config(tmp_path, to_yaml(config) + "\n")
    run = config_check(path)
    assert run.returncode != 0
    lines = path.read_text().splitlines()
    section = lines.index("privileges:")
    line = next(n for n, text in enumerate(lines[section:], section + 1)
                if text.strip().startswith(list(privileges)[-1] + ":"))
    assert re.search(rf"{path}:{line}: " + error, run.stderr), run.stderr
