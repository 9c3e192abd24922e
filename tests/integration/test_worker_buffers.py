"""worker_buffers (issue 18, item 18): each worker's provided receive
buffers are configurable.  With the smallest pools (8 x 16 KiB, 1 x 64 KiB)
and one worker, big messages over TLS from several clients at once still
relay whole; a count that is no power of two is refused with file:line at
-t and at start; a reload that changes it says it waits for a restart."""

import hashlib
import os
import smtplib
import ssl
import subprocess
import threading

from conftest import MSAPROXY_BIN, to_yaml


def send_big(p, tag, size):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    body = (f"Subject: {tag}\r\n\r\n".encode()
            + (hashlib.sha256(tag.encode()).hexdigest().encode() + b"\r\n") * (size // 66))
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=60) as s:
        s.login("demo", "demo-pass-1")
        s.sendmail("demo@example.test", [f"{tag}@example.test"], body)
    return body


def test_small_pools_still_relay_big_messages(proxy, recording_backend):
    p = proxy([recording_backend.port], workers=1,
              worker_buffers={"receive": 8, "data": 1})
    p.wait_for_log(r"msg=ready .*worker_buffers_kib=192\b")  # 8x16 + 1x64
    sent, errors = {}, []

    def client(tag):
        try:
            sent[tag] = send_big(p, tag, 3 << 20)
        except Exception as e:  # reported below, with the tag
            errors.append((tag, repr(e)))

    threads = [threading.Thread(target=client, args=(f"big{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client did not finish"
    assert errors == []
    got = recording_backend.wait_for_messages(4, timeout=30)
    by_rcpt = {m["rcpt_tos"][0].split("@")[0]: m["content"] for m in got}
    for tag, body in sent.items():
        assert by_rcpt[tag] == body, f"{tag}: the message arrived changed"
    # A change needs a restart, and the reload says so.
    since = p.mark()
    p.rewrite_config(**{"worker_buffers.receive": 16})
    p.ctl("reload")
    p.wait_for_log(r"msg=reload-ignored key=worker_buffers ", since=since)


def test_bad_count_is_refused_with_its_line(tmp_path, certs, users):
    conf = tmp_path / "msaproxy.yaml"
    conf.write_text(to_yaml({
        "hostname": "mail.example.test",
        "tls": {"certificates": [{"cert": str(certs.ecdsa_cert), "key": str(certs.ecdsa_key)}]},
        "listeners": [{"address": "127.0.0.1:1", "mode": "starttls"}],
        "auth": {"passwd_file": str(users.path)},
        "backends": {"servers": [{"address": "127.0.0.1:2"}]},
        "worker_buffers": {"receive": 100},
    }) + "\n")
    line = next(i for i, l in enumerate(conf.read_text().splitlines(), 1)
                if "receive:" in l)
    want = (f"{conf}:{line}: worker_buffers.receive: must be a power of two "
            f"(e.g. 64 or 128), not 100")
    for args in (["-t"], []):
        r = subprocess.run([MSAPROXY_BIN, *args, "-c", str(conf)], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 1, (args, r)
        assert want in r.stderr, r.stderr
