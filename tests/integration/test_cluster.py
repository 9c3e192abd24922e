"""Fleet mode, end to end (proxy/cluster/): several msaproxy nodes share
their users' buckets and the failed-login counts through a real
redis-server, so a user gets a limit once for the whole cluster, and a
guesser who spreads tries across nodes is still caught.  Redis killed,
stopped (SIGSTOP) and back, in both fail modes; wrong credentials.

Every node gets the same config (as a real cluster would), its own ports,
and the same recording backend.  Clients connect from 127.0.0.2 and up
(127.0.0.1 is allowlisted by the default test config).
"""

import json
import re
import smtplib
import ssl
import threading
import time
import urllib.request

import pytest

from conftest import SERVER_NAME, config_check, free_ports, raw_greeting, wait_until

MSG = b"Subject: cluster\r\n\r\nhello\r\n"


def connect(p, source="127.0.0.2"):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    return smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx,
                            timeout=15, source_address=(source, 0))


def login(p, user="demo", password="demo-pass-1", source="127.0.0.2"):
    s = connect(p, source)
    s.login(user, password)
    return s


def cluster_conf(redis_server, **extra):
    conf = {"redis": f"127.0.0.1:{redis_server.port}", "timeout": "300ms"}
    conf.update(extra)
    return {"cluster": conf}


def nodes(proxy, backend, redis_server, n=2, cluster=None, **overrides):
    conf = cluster_conf(redis_server, **(cluster or {}))
    return [proxy([backend.port], **conf, **overrides) for _ in range(n)]


def try_send(p, source="127.0.0.2"):
    """One message from demo: the MAIL reply code (250 when delivered)."""
    with login(p, source=source) as s:
        try:
            s.sendmail("a@example.test", ["r@example.test"], MSG)
            return 250
        except smtplib.SMTPSenderRefused as exc:
            return exc.smtp_code


def test_a_user_gets_the_message_limit_once_for_the_cluster(
        proxy, recording_backend, redis):
    r = redis()
    a, b = nodes(proxy, recording_backend, r,
                 **{"limits.user": {"messages": "5/1h"}})
    codes = [try_send(p) for p in (a, b, a, b, a, b, a, b)]
    assert codes == [250] * 5 + [451] * 3, codes
    recording_backend.wait_for_messages(5)
    time.sleep(0.3)
    assert len(recording_backend.messages) == 5
    # The refusal names the limit and the wait, as on one node.
    with login(b) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            s.sendmail("a@example.test", ["r@example.test"], MSG)
        assert exc.value.smtp_error.startswith(
            b"4.7.1 Message rate limit reached (5 per 1h)"), exc.value
    b.wait_for_log(r"msg=limit .*user=demo limit=messages")
    # The state is in Redis, under the prefix, keyed by a hash of the
    # login (never the login itself).
    keys = r.cli("--scan", "--pattern", "msaproxy:u:*").split()
    assert any(k.endswith(":buckets") for k in keys), keys
    assert not any("demo" in k for k in keys), keys
    # The operator sees both views, and a reset lifts the user on every
    # node.
    view = json.loads(a.ctl("-j", "user", "limits", "demo").stdout)
    assert view["cluster"]["messages"]["available"] == 0, view
    assert view["messages"]["available"] == 5, view  # a's own table
    assert "cluster-wide:\n  messages 0 available" in \
        b.ctl("user", "limits", "demo").stdout
    a.ctl("user", "reset", "demo")
    assert try_send(b) == 250


def test_cluster_state_for_the_operator_and_prometheus(
        proxy, recording_backend, redis):
    r = redis()
    port, = free_ports(1)
    (a,) = nodes(proxy, recording_backend, r, n=1,
                 cluster={"node_id": "node-a"},
                 **{"metrics.listen": f"127.0.0.1:{port}"})
    assert try_send(a) == 250
    text = a.ctl("cluster").stdout
    assert text.startswith(f"node node-a, redis 127.0.0.1:{r.port}: up "
                           "(fail open)"), text
    st = json.loads(a.ctl("-j", "cluster").stdout)
    assert st["up"] is True and st["requests"] >= 2, st
    assert st["last_ok_s_ago"] >= 0 and st["last_sync_s_ago"] >= 0
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=10).read().decode()
    assert "msaproxy_cluster_up 1\n" in body
    requests = int(re.search(r"^msaproxy_cluster_requests_total (\d+)$",
                             body, re.M)[1])
    assert requests >= 2
    assert re.search(r"^msaproxy_cluster_rtt_seconds_count [1-9]", body,
                     re.M), body
    r.kill()
    wait_until(lambda: json.loads(a.ctl("-j", "cluster").stdout)["up"]
               is False or try_send(a) and False, 10, "the cluster down")
    assert try_send(a) == 250  # fail open
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=10).read().decode()
    assert "msaproxy_cluster_up 0\n" in body
    assert re.search(r"^msaproxy_cluster_fallbacks_total [1-9]", body,
                     re.M), body
    assert "DOWN" in a.ctl("cluster").stdout


def test_shared_buckets_are_exact_under_concurrency(proxy, recording_backend,
                                                    redis):
    """Three nodes, six clients at once: never more than the burst."""
    r = redis()
    ps = nodes(proxy, recording_backend, r, n=3,
               **{"limits.user": {"messages": "12/1h"}})
    results, lock = [], threading.Lock()

    def client(p, k):
        with login(p, source=f"127.0.1.{k + 1}") as s:
            for _ in range(5):
                try:
                    s.sendmail("a@example.test", ["r@example.test"], MSG)
                    code = 250
                except smtplib.SMTPSenderRefused as exc:
                    code = exc.smtp_code
                with lock:
                    results.append(code)

    threads = [threading.Thread(target=client, args=(ps[k % 3], k))
               for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 30
    assert results.count(250) == 12, results
    assert results.count(451) == 18, results
    recording_backend.wait_for_messages(12)
    time.sleep(0.3)
    assert len(recording_backend.messages) == 12


def test_recipients_and_undelivered_mail_are_shared_and_given_back(
        proxy, recording_backend, redis):
    r = redis()
    a, b = nodes(proxy, recording_backend, r,
                 **{"limits.user": {"recipients": "4/1h"}})
    # Refused by the backend: costs nothing anywhere.
    recording_backend.fail_data = "554 5.6.0 Rejected"
    with login(a) as s:
        for _ in range(3):
            with pytest.raises(smtplib.SMTPDataError):
                s.sendmail("a@example.test", ["x@example.test"], MSG)
    recording_backend.fail_data = None
    with login(a) as s:
        s.sendmail("a@example.test", ["r0@example.test", "r1@example.test"],
                   MSG)
    with login(b) as s:
        refused = s.sendmail("a@example.test",
                             [f"s{i}@example.test" for i in range(3)], MSG)
        assert list(refused) == ["s2@example.test"], refused
        assert refused["s2@example.test"][0] == 451


def test_failed_logins_on_different_nodes_add_up_to_a_ban(
        proxy, recording_backend, redis):
    r = redis()
    a, b = nodes(proxy, recording_backend, r,
                 **{"limits.ip": {"auth_failures": "4/1h", "ban_time": "1h"}})

    def bad(p):
        s = connect(p, "127.0.2.9")
        s.ehlo()
        s.user, s.password = "alice", "wrong-password"
        try:
            s.auth("PLAIN", s.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        finally:
            try:
                s.close()
            except OSError:
                pass
        return 235

    assert [bad(p) for p in (a, b, a)] == [535, 535, 535]
    # The fourth, on b, is the one that empties the allowance.
    s = connect(b, "127.0.2.9")
    s.ehlo()
    s.user, s.password = "alice", "wrong-password"
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.auth("PLAIN", s.auth_plain)
    assert s.getreply()[0] == 421
    s.close()
    b.wait_for_log(r"msg=ip-banned .*client=127\.0\.2\.9 .*reason=auth-failures")
    refused = raw_greeting(b.starttls_port, "127.0.2.9")
    assert refused.startswith(b"421 4.7.0 " + SERVER_NAME.encode()), refused
    # Nobody else is touched.
    assert try_send(a, "127.0.2.10") == 250


def test_state_outlives_a_node_restart(proxy, recording_backend, redis):
    r = redis()
    overrides = cluster_conf(r)
    overrides["limits.user"] = {"messages": "3/1h"}
    a = proxy([recording_backend.port], **overrides)
    assert [try_send(a) for _ in range(2)] == [250, 250]
    a.exit_expected = True  # stopped here, on purpose
    a.stop()
    a2 = proxy([recording_backend.port], **overrides)
    assert [try_send(a2) for _ in range(2)] == [250, 451]


def test_redis_down_fail_open_serves_on_local_limits_and_recovers(
        proxy, recording_backend, redis):
    r = redis()
    a, b = nodes(proxy, recording_backend, r,
                 **{"limits.user": {"messages": "3/1h"}})
    assert try_send(a) == 250
    # A reload first: the reconnect below must not need the config it
    # started with (the reload freed it; the ASan run checks).
    a.ctl("reload")
    r.kill()
    # Open: each node falls back to its own buckets (three each), logs
    # it once, and says so in its metrics.
    assert [try_send(a) for _ in range(4)] == [250, 250, 250, 451]
    a.wait_for_log(r"msg=cluster-down .*fail=open")
    st = a.stats()
    assert st["cluster"]["up"] is False
    assert st["cluster"]["unavailable"] >= 1
    # Back: the shared state resumes without a restart (the key was lost
    # with the unsaved Redis: a fresh bucket of three, shared again).
    marks = a.mark(), b.mark()
    r.start()
    a.wait_for_log(r"msg=cluster-up", timeout=15, since=marks[0])
    b.wait_for_log(r"msg=cluster-up", timeout=15, since=marks[1])
    assert [try_send(p) for p in (b, a, b, a)] == [250, 250, 250, 451]


def test_redis_stopped_fail_closed_refuses_mail_then_recovers(
        proxy, recording_backend, redis):
    r = redis()
    (a,) = nodes(proxy, recording_backend, r, n=1,
                 cluster={"fail": "closed"},
                 **{"limits.user": {"messages": "100/1h"}})
    assert try_send(a) == 250
    r.pause()
    mark = a.mark()
    try:
        with login(a) as s:
            started = time.monotonic()
            with pytest.raises(smtplib.SMTPSenderRefused) as exc:
                s.sendmail("a@example.test", ["r@example.test"], MSG)
            assert exc.value.smtp_code == 451
            assert exc.value.smtp_error.startswith(b"4.3.0 "), exc.value
            # Within the cluster timeout, not a client's timeout.
            assert time.monotonic() - started < 5
        a.wait_for_log(r"msg=mail-refused .*reason=cluster-down")
        before = len(recording_backend.messages)
        assert try_send(a) == 451
        assert len(recording_backend.messages) == before
    finally:
        r.resume()
    a.wait_for_log(r"msg=cluster-up", timeout=15, since=mark)
    assert try_send(a) == 250


# docs/CLUSTER.md's least-privilege user, word for word.
LEAST_ACL = ("~msaproxy:* &msaproxy:* +evalsha +script|load +subscribe +ping "
             "+time +get +set +del +hget +hmget +hset +hdel +hgetall +pexpire "
             "+publish +sadd +sscan +rename +exists")


def test_redis_password_and_acl_user(proxy, recording_backend, redis, tmp_path):
    r = redis(password="s3cret-redis", user="msaproxy", acl=LEAST_ACL)
    good = tmp_path / "redis.pass"
    good.write_text("s3cret-redis\n")
    good.chmod(0o600)
    a = proxy([recording_backend.port],
              **cluster_conf(r, username="msaproxy",
                             password_file=str(good)),
              **{"limits.user": {"messages": "1/1h"}})
    assert [try_send(a), try_send(a)] == [250, 451]
    a.ctl("ban", "127.0.5.0/24", "--ttl", "1m")  # the ban script's commands
    a.ctl("unban", "127.0.5.0/24")
    a.ctl("user", "reset", "demo")
    assert try_send(a) == 250
    assert "s3cret" not in a.log()
    assert "cluster-link-error" not in a.log()
    assert "msg=cluster-down" not in a.log()
    a.wait_for_log(r"msg=cluster-files-published node=\S+ entries=0")
    assert "cluster-files-failed" not in a.log()


def test_an_acl_without_the_files_commands_costs_only_the_files(
        proxy, recording_backend, redis, tmp_path):
    # An ACL written for an older release: the sets' commands refused.
    old = LEAST_ACL.replace(" +sadd +sscan +rename +exists", "")
    r = redis(password="s3cret-redis", user="msaproxy", acl=old)
    good = tmp_path / "redis.pass"
    good.write_text("s3cret-redis\n")
    a = proxy([recording_backend.port],
              **cluster_conf(r, username="msaproxy",
                             password_file=str(good)),
              **{"limits.user": {"messages": "1/1h"}})
    a.wait_for_log(r"msg=cluster-files-failed node=\S+ error=\"NOPERM|"
                   r"msg=cluster-files-failed node=\S+ error=\"ERR")
    assert [try_send(a), try_send(a)] == [250, 451]  # limits shared
    assert "msg=cluster-down" not in a.log()


def test_wrong_redis_credentials_stop_the_start_with_a_clear_error(
        recording_backend, redis, tmp_path, certs, users):
    import subprocess

    from conftest import MSAPROXY_BIN, default_proxy_config, free_ports, to_yaml

    r = redis(password="right-one", user="msaproxy")
    bad = tmp_path / "redis.pass"
    bad.write_text("wrong-one\n")
    bad.chmod(0o600)
    cfg = default_proxy_config(certs, users, [recording_backend.port])
    port, = free_ports(1)
    cfg["listeners"] = [{"address": f"127.0.0.1:{port}", "mode": "starttls"}]
    cfg["cluster"] = {"redis": f"127.0.0.1:{r.port}", "username": "msaproxy",
                      "password_file": str(bad)}
    path = tmp_path / "msaproxy.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    # -t checks what it can without connecting: the file is there.
    out = config_check(path)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([MSAPROXY_BIN, "-c", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"cluster.redis 127.0.0.1:{r.port}: AUTH refused: WRONGPASS" in \
        out.stderr, out.stderr
    assert "wrong-one" not in out.stderr
    # A missing password file is -t's to find, with the key.
    bad.unlink()
    out = config_check(path)
    assert out.returncode == 1
    assert f"cluster.password_file: {bad}: No such file" in out.stderr, \
        out.stderr


def test_cluster_config_errors_name_the_line(tmp_path, certs, users,
                                             recording_backend):
    from conftest import default_proxy_config, to_yaml

    cfg = default_proxy_config(certs, users, [recording_backend.port])
    cfg["listeners"] = [{"address": "127.0.0.1:2587", "mode": "starttls"}]
    for cluster, why in (
            ({"redis": "redis.example:6379"}, "cluster.redis"),
            ({"redis": "127.0.0.1:6379", "fail": "maybe"},
             "cluster.fail: expected open or closed"),
            ({"redis": "127.0.0.1:6379", "prefix": "a b"},
             "cluster.prefix: expected letters"),
            ({"timeout": "1s"}, "cluster: needs cluster.redis"),
            ({"redis": "127.0.0.1:6379", "tls_ca": "/etc/ssl/x.pem"},
             "cluster.tls: tls_ca and tls_name need tls: true")):
        cfg["cluster"] = cluster
        path = tmp_path / "msaproxy.yaml"
        path.write_text(to_yaml(cfg) + "\n")
        out = config_check(path)
        assert out.returncode == 1, (cluster, out.stdout)
        assert f"{path}:" in out.stderr and why in out.stderr, (cluster,
                                                                 out.stderr)


# ---------------------------------------------------------------------------
# Bans shared by every node
# ---------------------------------------------------------------------------

def admitted(p, source):
    return raw_greeting(p.starttls_port, source).startswith(b"220 ")


def test_a_ban_on_one_node_is_refused_on_the_others_within_a_second(
        proxy, recording_backend, redis):
    r = redis()
    a, b = nodes(proxy, recording_backend, r)
    assert admitted(b, "127.0.3.5")
    a.ctl("ban", "127.0.3.0/24", "--ttl", "1h")
    started = time.monotonic()
    wait_until(lambda: not admitted(b, "127.0.3.5"), 1.0,
               "the ban to reach the other node")
    assert time.monotonic() - started < 1.0
    b.wait_for_log(r"msg=cluster-ban network=127\.0\.3\.0/24 "
                   r"ttl_ms=3600000 reason=manual from=")
    listed = b.ctl("list").stdout
    assert "127.0.3.0/24 block manual" in listed, listed
    # A node that starts later reads it back from Redis.
    c = proxy([recording_backend.port], **cluster_conf(r))
    assert not admitted(c, "127.0.3.5")
    # Lifted on one node: lifted on all.
    b.ctl("unban", "127.0.3.0/24")
    wait_until(lambda: admitted(a, "127.0.3.5") and admitted(c, "127.0.3.5"),
               1.0, "the unban to reach every node")
    assert r.cli("HLEN", "msaproxy:bans").strip() == "0"


def test_an_automatic_ban_reaches_every_node(proxy, recording_backend, redis):
    r = redis()
    a, b = nodes(proxy, recording_backend, r,
                 **{"limits.ip": {"auth_failures": "2/1h", "ban_time": "1h"}})
    for _ in range(2):
        s = connect(a, "127.0.3.20")
        s.ehlo()
        s.user, s.password = "alice", "wrong-password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)
        s.close()
    a.wait_for_log(r"msg=ip-banned .*client=127\.0\.3\.20 ")
    wait_until(lambda: not admitted(b, "127.0.3.20"), 1.0,
               "the automatic ban on the other node")
    assert raw_greeting(b.starttls_port, "127.0.3.20").startswith(
        b"421 4.7.0 " + SERVER_NAME.encode() +
        b" Too many failed logins from your network")
    # (ttl_ms a little under the hour when b read it back at its start.)
    b.wait_for_log(r"msg=cluster-ban network=127\.0\.3\.20/32 "
                   r"ttl_ms=3[56]\d{5} reason=auto")
    assert admitted(b, "127.0.3.21")
    # The operator's unban lifts it everywhere, and the network starts
    # with a clean count of failures.
    b.ctl("unban", "127.0.3.20")
    wait_until(lambda: admitted(a, "127.0.3.20"), 1.0, "the unban on a")
    with login(a, source="127.0.3.20") as s:
        s.noop()


def test_tls_to_redis_verified_by_address_or_name(proxy, recording_backend,
                                                 redis, certs, tmp_path):
    r = redis(tls=(certs.ecdsa_cert, certs.ecdsa_key, certs.ca))
    # The certificate names 127.0.0.1 (checked as an address) and
    # mail.example.test (checked as a name).
    for extra in ({}, {"tls_name": SERVER_NAME}):
        p = proxy([recording_backend.port],
                  **cluster_conf(r, tls=True, tls_ca=str(certs.ca), **extra),
                  **{"limits.user": {"messages": "1/1h"}})
        assert try_send(p) in (250, 451)
        assert "cluster-up" in p.log()
        assert json.loads(p.ctl("-j", "cluster").stdout)["up"] is True
        assert "cluster-link-error" not in p.log()
    # Each node: the thread's two connections and one per worker (2),
    # every one of them TLS (the server listens on nothing else).
    wait_until(lambda: r.cli("CLIENT", "LIST").count("\n") >= 2 * 4, 10,
               "every worker's own TLS connection to Redis")
    keys = r.cli("--scan", "--pattern", "msaproxy:u:*").split()
    assert any(k.endswith(":buckets") for k in keys), keys


def test_tls_to_redis_with_a_wrong_name_or_ca_stops_the_start(
        recording_backend, redis, certs, users, tmp_path):
    import subprocess

    from conftest import MSAPROXY_BIN, default_proxy_config, to_yaml

    r = redis(tls=(certs.other_cert, certs.other_key, certs.ca))
    cfg = default_proxy_config(certs, users, [recording_backend.port])
    port, = free_ports(1)
    cfg["listeners"] = [{"address": f"127.0.0.1:{port}", "mode": "starttls"}]
    # (A timeout long enough for a handshake under ASan on a loaded
    # machine: the verdict must be the certificate's, not the clock's.)
    cfg["cluster"] = {"redis": f"127.0.0.1:{r.port}", "tls": True,
                      "tls_ca": str(certs.ca), "timeout": "10s"}
    path = tmp_path / "msaproxy.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    out = subprocess.run([MSAPROXY_BIN, "-c", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert (f"cluster.redis 127.0.0.1:{r.port}: tls: the certificate of "
            f"127.0.0.1:{r.port}: ") in out.stderr, out.stderr


def test_the_login_slow_down_is_shared(proxy, recording_backend, redis):
    """Failures for one login on node a slow that login down on node b."""
    r = redis()
    a, b = nodes(proxy, recording_backend, r,
                 **{"limits.login": {"failures": "2/1h", "max_delay": "1s"},
                    "auth.failure_delay": "0s"})
    for k in range(3):
        s = connect(a, f"127.0.4.{k + 1}")
        s.ehlo()
        s.user, s.password = "alice", "wrong-password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)
        s.close()
    mark = b.mark()
    with login(b, "alice", "alice-pass-2", source="127.0.4.9") as s:
        s.noop()
    b.wait_for_log(r"msg=auth .*user=alice mechanism=PLAIN delay_ms=1000 "
                   r"result=ok", since=mark)


def test_redis_stopped_fail_open_waits_one_timeout_then_answers_at_once(
        proxy, recording_backend, redis):
    """SIGSTOP: the first calls wait cluster.timeout and fall back; the
    node then knows Redis is gone (the thread checks), and later calls
    fall back at once instead of each waiting out the timeout."""
    r = redis()
    (a,) = nodes(proxy, recording_backend, r, n=1, cluster={"timeout": "1s"},
                 **{"limits.user": {"messages": "100/1h"}})
    assert try_send(a) == 250
    r.pause()
    try:
        started = time.monotonic()
        assert try_send(a) == 250  # open: the node's own bucket
        first = time.monotonic() - started
        a.wait_for_log(r"msg=cluster-down .*fail=open", timeout=10)
        started = time.monotonic()
        for _ in range(3):
            assert try_send(a) == 250
        later = (time.monotonic() - started) / 3
        assert first >= 0.9, first   # it did wait for Redis once
        assert later < first, (later, first)
        assert json.loads(a.ctl("-j", "cluster").stdout)["up"] is False
    finally:
        r.resume()


def test_delivered_bytes_count_on_every_node(proxy, recording_backend, redis):
    """Bytes stream against each node's own bucket; a delivered message's
    bytes are then charged to the cluster's (gathered for up to 0.1 s with
    other users' into one call), and a MAIL anywhere is refused while the
    shared bucket is in debt."""
    r = redis()
    a, b = nodes(proxy, recording_backend, r,
                 **{"limits.user": {"bytes": "3KB/1h"},
                    "limits.max_message_size": "2KB"})
    body = b"Subject: bytes\r\n\r\n" + (b"x" * 58 + b"\r\n") * 20

    def send(p):
        with login(p) as s:
            try:
                s.sendmail("a@example.test", ["r@example.test"], body)
                return 250
            except smtplib.SMTPSenderRefused as exc:
                assert exc.smtp_error.startswith(
                    b"4.7.1 Message data rate limit reached"), exc.smtp_error
                return exc.smtp_code

    assert send(a) == 250                     # 1.2 KB: a has 1.8 KB left
    assert [send(b), send(b)] == [250, 250]  # 2.4 KB of b's own 3 KB
    time.sleep(0.5)  # a node gathers delivered bytes for 0.1 s
    # The cluster now holds 3.6 KB against 3 KB: in debt, so a's MAIL is
    # refused although a's own bucket has room for the message.
    assert send(a) == 451
    a.wait_for_log(r"msg=limit .*user=demo limit=bytes")
    assert send(b) == 451


def test_a_ban_made_while_redis_was_away_reaches_the_others_on_reconnect(
        proxy, recording_backend, redis):
    r = redis()
    a, b = nodes(proxy, recording_backend, r)
    r.kill()
    a.wait_for_log(r"msg=cluster-down", timeout=10)
    a.ctl("ban", "127.0.6.0/24", "--ttl", "1h")  # only a knows of it now
    assert not admitted(a, "127.0.6.7")
    assert admitted(b, "127.0.6.7")
    marks = a.mark(), b.mark()
    r.start()
    a.wait_for_log(r"msg=cluster-ban-published network=127\.0\.6\.0/24",
                   timeout=15, since=marks[0])
    b.wait_for_log(r"msg=cluster-ban network=127\.0\.6\.0/24 .*reason=manual",
                   timeout=15, since=marks[1])
    assert not admitted(b, "127.0.6.7")
    assert "127.0.6.0/24" in r.cli("HKEYS", "msaproxy:bans")


def test_blocklist_files_reach_every_node_and_leave_with_their_lines(
        proxy, recording_backend, redis, tmp_path):
    r = redis()
    file_a, file_b = tmp_path / "a.txt", tmp_path / "b.txt"
    file_a.write_text("127.0.7.0/24\n")
    file_b.write_text("127.0.8.8\n")

    def node(name, listed, **extra):
        return proxy([recording_backend.port],
                     **cluster_conf(r, node_id=name, **extra),
                     **{"blocklist.files": [str(listed)]})

    b = node("node-b", file_b)
    assert admitted(b, "127.0.7.5")
    a = node("node-a", file_a)
    started = time.monotonic()
    wait_until(lambda: not admitted(b, "127.0.7.5"), 1.0,
               "a's file to reach b")
    assert time.monotonic() - started < 1.0
    wait_until(lambda: not admitted(a, "127.0.8.8"), 1.0,
               "b's file to reach a")
    assert admitted(b, "127.0.8.9") and admitted(a, "127.0.6.1")
    assert "127.0.7.0/24 block file" in b.ctl("list").stdout
    b.wait_for_log(r"msg=cluster-files entries=1")
    # In Redis: one set per node, named by its node id, that expires
    # unless the node renews it.
    assert r.cli("SMEMBERS", "msaproxy:files:{node-a}").split() == [
        "127.0.7.0/24"]
    assert 0 < int(r.cli("PTTL", "msaproxy:files:{node-b}")) <= 300000
    state = json.loads(b.ctl("-j", "cluster").stdout)
    assert (state["file_prefixes_shared"], state["file_nodes"]) == (1, 1)

    # A line removed on one node leaves every node within a second; a
    # line added arrives.
    file_a.write_text("127.0.9.0/24\n")
    a.ctl("reload")
    started = time.monotonic()
    wait_until(lambda: admitted(b, "127.0.7.5")
               and not admitted(b, "127.0.9.1"), 1.0,
               "a's reloaded file on b")
    assert time.monotonic() - started < 1.0

    # A prefix both nodes list stays while either lists it.
    file_b.write_text("127.0.8.8\n127.0.9.0/24\n")
    b.ctl("reload")
    file_a.write_text("")
    a.ctl("reload")
    wait_until(lambda: r.cli("EXISTS", "msaproxy:files:{node-a}").strip()
               == "0", 5.0, "a's empty set")
    time.sleep(0.3)
    assert not admitted(b, "127.0.9.1")  # b's own line
    assert not admitted(a, "127.0.9.1")  # b's line, on a

    # A node that starts later reads every set at its start; one with
    # share_files off neither reads nor writes one.
    (tmp_path / "c.txt").write_text("127.0.10.1\n")
    (tmp_path / "d.txt").write_text("")
    c = node("node-c", tmp_path / "c.txt", share_files=False)
    d = node("node-d", tmp_path / "d.txt")
    wait_until(lambda: not admitted(d, "127.0.8.8")
               and not admitted(d, "127.0.9.1"), 1.0, "the sets on d")
    assert admitted(c, "127.0.8.8")
    assert admitted(a, "127.0.10.1")
    assert r.cli("EXISTS", "msaproxy:files:{node-c}").strip() == "0"


def test_a_reload_that_raises_max_entries_reads_the_sets_again(
        proxy, recording_backend, redis, tmp_path):
    # blocklist.max_entries also caps what is read of another node's set;
    # a reload that raises it reads the sets again, not at the next
    # change of theirs.
    r = redis()
    file_a, file_b = tmp_path / "a.txt", tmp_path / "b.txt"
    file_a.write_text("127.0.14.1\n127.0.14.2\n127.0.14.3\n")
    file_b.write_text("")
    b = proxy([recording_backend.port], **cluster_conf(r, node_id="node-b"),
              **{"blocklist.files": [str(file_b)], "blocklist.max_entries": 2})
    proxy([recording_backend.port], **cluster_conf(r, node_id="node-a"),
          **{"blocklist.files": [str(file_a)]})
    b.wait_for_log(r"msg=cluster-files-bad node=node-a entries=2 skipped=1")
    assert sum(not admitted(b, f"127.0.14.{i}") for i in (1, 2, 3)) == 2
    b.rewrite_config(**{"blocklist.max_entries": 10})
    b.ctl("reload")
    wait_until(lambda: all(not admitted(b, f"127.0.14.{i}") for i in (1, 2, 3)),
               5.0, "all of a's set on b after the reload")


def test_a_set_with_bad_members_gives_only_its_prefixes(
        proxy, recording_backend, redis, tmp_path):
    # Redis is data anyone with access to it could have written: members
    # that are not prefixes, oversize ones, and an index entry whose
    # digest is malformed are skipped, never trusted.
    r = redis()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    b = proxy([recording_backend.port],
              **cluster_conf(r, node_id="node-b"),
              **{"blocklist.files": [str(empty)]})
    r.cli("SADD", "msaproxy:files:{node-x}", "127.0.11.0/24",
          "not-a-prefix", "1" * 300, "127.0.12.0/33")
    r.cli("SADD", "msaproxy:files:{node-y}", "127.0.13.0/24")
    r.cli("HSET", "msaproxy:files", "node-x", "0123456789abcdef",
          "node-y", "short")
    r.cli("PUBLISH", "msaproxy:bans", "files node-x#0011223344556677")
    wait_until(lambda: not admitted(b, "127.0.11.5"), 1.0,
               "node-x's one good prefix on b")
    b.wait_for_log(r"msg=cluster-files-bad node=node-x entries=1 skipped=3")
    assert admitted(b, "127.0.13.1")  # node-y's digest is malformed
    assert "cluster-down" not in b.log()
