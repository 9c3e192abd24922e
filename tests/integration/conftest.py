"""Fixtures for the msaproxy end-to-end suite.

Everything here runs for real on loopback: certificates come from the
openssl CLI, the backends are an aiosmtpd server and a private Postfix
instance, and the proxy is the built binary.  Every fixture picks free
ports, bounds every wait, and stops what it started by PID.

    certs               session  demo CA + ECDSA/RSA/SNI server certificates
    users               session  passwd file (sha512-crypt) and the passwords
    recording_backend   function aiosmtpd backend speaking XCLIENT, records
                                 every transaction byte for byte
    postfix_backend     module   a private Postfix 3.7 instance
    proxy               function factory: proxy(backends=[port], **overrides)

Each test's code runs under a deadline (default 60 s, or
@pytest.mark.deadline(seconds)): a hung test fails instead of hanging.

@pytest.mark.slow marks a test that takes seconds by its nature (it
streams tens of megabytes, waits out a timer of several seconds, or runs
an external scanner): `make check` leaves those out (-m "not slow"),
`make test` (CI) runs them.

The suite runs on pytest-xdist workers (make check and make test: -n 2,
--dist loadgroup), so nothing here may be shared between tests that run
at once: ports are free ones, files live in per-test temp directories,
network namespaces carry the worker's PID in their names.  Tests that
cannot share the machine get @pytest.mark.xdist_group(name) and run on
one worker, one after the other.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import types
import warnings
from pathlib import Path

import pytest
from redis_server import RedisServer
from smtp_backend import RecordingBackend

LOOPBACK = "127.0.0.1"
SERVER_NAME = "mail.example.test"  # the proxy's hostname and cert name
SNI_OTHER_NAME = "other.example.test"
DEFAULT_TEST_DEADLINE = 60.0  # seconds, for the test body only

# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def free_ports(n):
    """n different free ports: each held bound until all are picked (two
    free_port() calls in a row may get the same port back)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll predicate() until it returns something truthy; return that.
    Fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_accepts(port, host=LOOPBACK):
    """Does host:port accept a TCP connection right now?"""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class SmtpLines:
    """One SMTP connection driven line by line, for what smtplib cannot
    express (pipelining, raw bytes): plaintext (the STARTTLS listener,
    before STARTTLS) or implicit TLS.  Every read is bounded by timeout."""

    AUTH_DEMO = b"AUTH PLAIN AGRlbW8AZGVtby1wYXNzLTE="  # demo / demo-pass-1

    def __init__(self, p, tls=True, timeout=15):
        port = p.implicit_port if tls else p.starttls_port
        raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.create_default_context(cafile=str(p.ca))
            raw = ctx.wrap_socket(raw, server_hostname=SERVER_NAME)
        self.sock = raw
        self.buf = b""
        greeting = self.reply()
        assert greeting.startswith(b"220 "), greeting

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """One reply, all its lines joined with CRLF (without the last)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r} {self.buf[:200]!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\r\n".join(lines)

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.reply()

    def login(self, ehlo=b"client.example.test"):
        """EHLO and AUTH PLAIN as demo; returns self."""
        assert self.cmd(b"EHLO " + ehlo).startswith(b"250")
        assert self.cmd(self.AUTH_DEMO).startswith(b"235")
        return self

    def close(self):
        self.sock.close()


def raw_greeting(port, source):
    """Connect from source and read what the server says first (b"" if it
    closes without a word)."""
    with socket.create_connection((LOOPBACK, port), timeout=5,
                                  source_address=(source, 0)) as s:
        data = b""
        try:
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data


def run(cmd, timeout=60, **kwargs):
    """subprocess.run with a time bound, captured output, and a readable
    failure message when the command fails."""
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} failed with {proc.returncode}: {' '.join(map(str, cmd))}\n"
            f"stdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
        )
    return proc


def wait_for_regex(read_text, regex, timeout, what, since=0):
    """Wait until regex matches read_text()[since:]; return the match."""
    pattern = re.compile(regex, re.MULTILINE)
    return wait_until(
        lambda: pattern.search(read_text(), since), timeout, f"{what} to match {regex!r}"
    )


def read_text_file(path):
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def tail(text, lines=60):
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# Per-test deadline (only the test body; fixtures bound their own waits)
# ---------------------------------------------------------------------------


class DeadlineExceeded(Exception):
    pass


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "deadline(seconds): fail the test if its body runs longer than this "
        f"(default {DEFAULT_TEST_DEADLINE:g}s)",
    )
    config.addinivalue_line(
        "markers",
        "slow: takes seconds by nature (volume, a long timer, an external "
        "scanner); make check deselects these, make test runs them",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("deadline")
    seconds = float(marker.args[0]) if marker else DEFAULT_TEST_DEADLINE

    def on_alarm(signum, frame):
        raise DeadlineExceeded(f"test body exceeded its {seconds:g}s deadline")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------
# certs: a demo CA and server certificates, all made by the openssl CLI
# ---------------------------------------------------------------------------

SERVER_SAN = f"DNS:{SERVER_NAME},DNS:localhost,IP:127.0.0.1"


def _openssl_key(path, kind):
    if kind == "ec":
        algo = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    else:
        algo = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    run(["openssl", "genpkey", *algo, "-out", str(path)])
    path.chmod(0o600)


def _openssl_server_cert(d, name, kind, cn, san, ca_crt, ca_key):
    """Key + certificate for a TLS server, signed by the CA; returns paths."""
    key, csr, crt, ext = (d / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _openssl_key(key, kind)
    usage = "digitalSignature" if kind == "ec" else "digitalSignature,keyEncipherment"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        f"keyUsage = critical, {usage}\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = {san}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    run(["openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr)])
    run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
         "-sha256", "-extfile", str(ext), "-out", str(crt)]
    )
    return crt, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Demo CA plus server certificates signed by it:
    ecdsa (P-256) and rsa (2048) for mail.example.test, localhost and
    127.0.0.1, and other (P-256) for the SNI name other.example.test."""
    d = tmp_path_factory.mktemp("certs")
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    _openssl_key(ca_key, "ec")
    run(
        ["openssl", "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "30",
         "-subj", "/CN=msaproxy test CA", "-out", str(ca_crt),
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    )
    ecdsa = _openssl_server_cert(d, "ecdsa", "ec", SERVER_NAME, SERVER_SAN, ca_crt, ca_key)
    rsa = _openssl_server_cert(d, "rsa", "rsa", SERVER_NAME, SERVER_SAN, ca_crt, ca_key)
    other = _openssl_server_cert(
        d, "other", "ec", SNI_OTHER_NAME, f"DNS:{SNI_OTHER_NAME}", ca_crt, ca_key
    )
    return types.SimpleNamespace(
        dir=d,
        ca=ca_crt,
        ecdsa_cert=ecdsa[0], ecdsa_key=ecdsa[1],
        rsa_cert=rsa[0], rsa_key=rsa[1],
        other_cert=other[0], other_key=other[1],
    )


# ---------------------------------------------------------------------------
# users: the passwd file the proxy authenticates against
# ---------------------------------------------------------------------------

DEMO_PASSWORDS = {"demo": "demo-pass-1", "alice": "alice-pass-2", "bob": "bob-pass-3"}


# Each user's hash comes from a different scheme and tool, so every login
# test also covers the crypt(3) schemes the passwd-file back end accepts.
HASH_SCHEMES = {"demo": "yescrypt", "alice": "bcrypt", "bob": "openssl-sha512"}


def hash_password(password, scheme="yescrypt"):
    """One passwd-file hash: `msaproxy hash-password` (yescrypt, bcrypt,
    sha512-crypt) or, for interoperability, the openssl CLI's sha512-crypt."""
    if scheme == "openssl-sha512":
        cmd, prefix = ["openssl", "passwd", "-6", "-stdin"], "$6$"
    else:
        cmd = [os.environ.get("MSAPROXY_BIN", "/work/main/build/msaproxy"),
               "hash-password", "--scheme", scheme]
        if scheme == "bcrypt":  # its default 12 would slow every login 50x
            cmd += ["--cost", "5"]
        prefix = {"yescrypt": "$y$", "bcrypt": "$2b$", "sha512-crypt": "$6$"}[scheme]
    hashed = run(cmd, input=password.encode()).stdout.decode().strip()
    assert hashed.startswith(prefix), hashed
    return hashed


@pytest.fixture(scope="session")
def users(tmp_path_factory):
    """passwd file "user:hash" (mode 0600) with demo and alice.
    Returns .path and .passwords {user: password}."""
    path = tmp_path_factory.mktemp("users") / "passwd"
    path.write_text("".join(f"{u}:{hash_password(p, HASH_SCHEMES[u])}\n"
                            for u, p in DEMO_PASSWORDS.items()))
    path.chmod(0o600)
    return types.SimpleNamespace(path=path, passwords=dict(DEMO_PASSWORDS))


# ---------------------------------------------------------------------------
# recording_backend: aiosmtpd with Postfix-style XCLIENT (smtp_backend.py)
# ---------------------------------------------------------------------------

@pytest.fixture
def recording_backend():
    backend = RecordingBackend()
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


# ---------------------------------------------------------------------------
# redis: a private redis-server (redis_server.py), for fleet mode
# ---------------------------------------------------------------------------

@pytest.fixture
def redis(tmp_path):
    """Factory: redis(password=None, user=None, tls=None) starts a
    redis-server on a free loopback port (tls=(cert, key, ca): TLS only);
    all are stopped at teardown."""
    started = []

    def start(password=None, user=None, tls=None, acl="~* &* +@all"):
        server = RedisServer(tmp_path / f"redis{len(started)}", password, user, tls,
                             acl)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


# ---------------------------------------------------------------------------
# postfix_backend: a private, real Postfix instance
# ---------------------------------------------------------------------------

POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
mail_owner = postfix
setgid_group = postdrop
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = example.test
relayhost =
default_transport = discard
relay_transport = discard
local_transport = discard
alias_maps =
alias_database =
smtpd_banner = $myhostname ESMTP
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.0/8
biff = no
"""

# chroot off (the instance has no chroot jail) and only the services an
# smtpd -> cleanup -> qmgr -> discard path needs, plus postlogd for
# maillog_file.
POSTFIX_MASTER_CF = """\
{listen} inet  n  -  n  -     -  smtpd
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n - n -   1  postlogd
"""


class PostfixInstance:
    """A Postfix of its own: config, queue and data directories and the mail
    log all under one temp dir, smtpd on 127.0.0.1:<free port>, every
    message accepted for *@example.test and discarded (nothing leaves).

    XCLIENT: 127.0.0.0/8 may send it (smtpd_authorized_xclient_hosts).
    smtpd advertises "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN
    DESTADDR DESTPORT" and answers a good XCLIENT with "220 <host> ESMTP".
    LOGIN=<user> makes smtpd log the transaction as SASL-authenticated even
    though smtpd_sasl_auth_enable is off:

      postfix/smtpd[N]: QID: client=unknown[198.51.100.7], sasl_method=XCLIENT, sasl_username=demo

    (client= shows NAME[ADDR] from XCLIENT; NAME=[UNAVAILABLE] shows as
    "unknown").  The disconnect line counts XCLIENT as failed
    ("xclient=0/1") even when it succeeded; that is Postfix's accounting.
    """

    def __init__(self, keep_logs_in):
        # Postfix daemons run as user postfix and must traverse the path:
        # not under pytest's 0700 tmp dirs.
        self.root = Path(tempfile.mkdtemp(prefix="msaproxy-postfix-", dir="/tmp"))
        self.root.chmod(0o755)
        self.etc = self.root / "etc"
        self.maillog = self.root / "maillog"
        self.keep_logs_in = keep_logs_in
        self.port = None
        self.master_pid = None

    def _configure(self):
        for sub in ("etc", "spool", "data"):
            (self.root / sub).mkdir(exist_ok=True)
        shutil.chown(self.root / "data", user="postfix")
        (self.etc / "main.cf").write_text(POSTFIX_MAIN_CF.format(root=self.root))
        (self.etc / "master.cf").write_text(
            POSTFIX_MASTER_CF.format(listen=f"{LOOPBACK}:{self.port}")
        )

    def start(self):
        for attempt in range(3):  # the free port can be taken meanwhile
            self.port = free_port()
            self._configure()
            proc = subprocess.run(["postfix", "-c", str(self.etc), "start"],
                                  capture_output=True, timeout=60)
            if proc.returncode == 0:
                break
            if "Address already in use" not in self.log_text() or attempt == 2:
                raise RuntimeError(
                    f"postfix start failed ({proc.returncode}): {proc.stderr!r}\n"
                    f"maillog:\n{tail(self.log_text())}"
                )
        self.master_pid = int((self.root / "spool/pid/master.pid").read_text().split()[0])
        wait_until(self._greets, 10, f"Postfix on port {self.port} to answer 220")

    def _greets(self):
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=2) as s:
                return s.recv(512).startswith(b"220 ")
        except OSError:
            return False

    def _instance_pids(self):
        """PIDs of this instance's processes: Postfix passes MAIL_CONFIG
        (our config dir) to every daemon it starts."""
        marker = f"MAIL_CONFIG={self.etc}".encode()
        pids = []
        for proc_dir in Path("/proc").iterdir():
            if proc_dir.name.isdigit():
                try:
                    if marker in (proc_dir / "environ").read_bytes().split(b"\0"):
                        pids.append(int(proc_dir.name))
                except OSError:
                    pass
        return pids

    def stop(self):
        subprocess.run(["postfix", "-c", str(self.etc), "stop"],
                       capture_output=True, timeout=30)
        if self.master_pid and not _wait_pid_gone(self.master_pid, 10):
            os.kill(self.master_pid, signal.SIGKILL)
            _wait_pid_gone(self.master_pid, 5)
        deadline = time.monotonic() + 10
        while (left := self._instance_pids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.maillog.exists():  # kept for post-mortems; the rest goes
            shutil.copy(self.maillog, self.keep_logs_in / "maillog")
        if left:
            raise RuntimeError(f"Postfix processes still running after stop: {left}")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self):
        return read_text_file(self.maillog)

    def mark(self):
        """Position in the log now; pass as since= to ignore older lines."""
        return len(self.log_text())

    def wait_for_log(self, regex, timeout=10, since=0):
        """Wait until regex (re.MULTILINE) matches the mail log after
        position since; returns the match."""
        return wait_for_regex(self.log_text, regex, timeout, "the Postfix mail log", since)


def _pid_alive(pid):
    try:
        # A zombie still has /proc/<pid>; it is gone for our purposes.
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def postfix_backend(tmp_path_factory):
    """A running private Postfix (see PostfixInstance): .port, .log_text(),
    .mark(), .wait_for_log(regex, timeout, since)."""
    if os.geteuid() != 0:
        pytest.fail("the Postfix backend needs root (postfix start)")
    instance = PostfixInstance(tmp_path_factory.mktemp("postfix"))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


# ---------------------------------------------------------------------------
# proxy: start the msaproxy binary with a generated config
# ---------------------------------------------------------------------------

MSAPROXY_BIN = os.environ.get("MSAPROXY_BIN", "/work/main/build/msaproxy")


def config_check(path):
    """`msaproxy -t -c path`: the CompletedProcess (text), bounded."""
    return subprocess.run([MSAPROXY_BIN, "-t", "-c", str(path)], capture_output=True,
                          text=True, timeout=30)
MSAPROXYCTL_BIN = os.environ.get(
    "MSAPROXYCTL_BIN", os.path.join(os.path.dirname(MSAPROXY_BIN), "msaproxyctl"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def _yaml_scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        # Double-quoted, JSON-style: valid YAML, and never read as a number,
        # boolean or null.
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value == {} or value == []:
        return "{}" if isinstance(value, dict) else "[]"
    raise TypeError(f"no YAML for {value!r}")


def to_yaml(value, indent=0):
    """Block-style YAML for dicts, lists and scalars (enough for the config)."""
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}- {to_yaml(item, indent + 1).lstrip()}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        return pad + _yaml_scalar(value)
    return "\n".join(lines)


def apply_override(config, dotted_key, value):
    """config["a"]["b"] = value for "a.b" (or "a__b"); dict values merge
    into an existing dict, anything else replaces; None deletes the key."""
    *parents, last = dotted_key.replace("__", ".").split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    elif isinstance(value, dict) and isinstance(node.get(last), dict):
        for key, item in value.items():
            apply_override(node[last], key, item)
    else:
        node[last] = value


def _backend_entry(backend):
    if isinstance(backend, dict):
        return backend
    address = f"{LOOPBACK}:{backend}" if isinstance(backend, int) else str(backend)
    return {"address": address, "identity": "xclient"}


class ProxyProcess:
    """One running msaproxy.

    .starttls_port / .implicit_port, .ca (CA file for clients),
    .hostname, .config (the dict written), .config_path,
    .log() stderr+stdout so far, .wait_for_log(regex, timeout, since),
    .mark() for since=, .ctl(*args), .stats() (msaproxyctl -j stats),
    .rss_kb(), .sanitized() (an ASan build?).
    """

    hostname = SERVER_NAME

    def __init__(self, workdir, config, ca, listener_options=None):
        self.workdir = workdir
        # A unix socket path must fit in 108 bytes: pytest's are longer.
        self.ctl_dir = Path(tempfile.mkdtemp(prefix="msa-ctl-", dir="/tmp"))
        self.control_socket = self.ctl_dir / "control.sock"
        config.setdefault("control", {}).setdefault("socket", str(self.control_socket))
        self.config = config
        self.ca = ca
        self.listener_options = dict(listener_options or {})
        self.config_path = workdir / "msaproxy.yaml"
        self.log_path = workdir / "msaproxy.log"
        self.proc = None
        self.starttls_port = self.implicit_port = None
        self.killed = False
        self.exit_expected = False  # a test that drains it sets this
        # Connections the readiness check made (each becomes a session
        # once the proxy accepts it, which may be after start() returns).
        self.probes = 0

    def start(self, binary):
        for attempt in range(3):  # a free port may be taken before we bind it
            since = self.mark()
            self.starttls_port, self.implicit_port = free_ports(2)
            self.probes = 0
            self.config["listeners"] = [
                {"address": f"{LOOPBACK}:{self.starttls_port}", "mode": "starttls",
                 **self.listener_options},
                {"address": f"{LOOPBACK}:{self.implicit_port}", "mode": "implicit",
                 **self.listener_options},
            ]
            self.config_path.write_text(to_yaml(self.config) + "\n")
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [binary, "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    cwd=self.workdir,
                )
            if self._wait_ready(10):
                return
            in_use = "in use" in self.log()[since:]
            if not in_use or attempt == 2:
                pytest.fail(
                    f"msaproxy did not come up (exit {self.proc.returncode}); "
                    f"log:\n{tail(self.log())}\nconfig:\n{self.config_path.read_text()}"
                )

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._probe(self.starttls_port) and self._probe(self.implicit_port):
                return True
            time.sleep(0.05)
        self._terminate()
        return False

    def _probe(self, port):
        accepted = port_accepts(port)
        self.probes += accepted
        return accepted

    def _terminate(self):
        """SIGTERM, up to 10 s, then SIGKILL.  Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def stop(self):
        """Stop it and report anything that says it misbehaved."""
        exited_early = self.proc.poll()
        status = self._terminate()
        log = self.log()
        problems = []
        if exited_early is not None and not (self.exit_expected and exited_early == 0):
            problems.append(f"msaproxy exited during the test with status {exited_early}")
        elif self.killed:
            warnings.warn("msaproxy ignored SIGTERM for 10 s and was killed")
        elif status not in (0, -signal.SIGTERM):
            problems.append(f"msaproxy exited with status {status} after SIGTERM")
        problems += [f"log shows {m!r}" for m in SANITIZER_MARKERS if m in log]
        shutil.rmtree(self.ctl_dir, ignore_errors=True)
        if problems:
            pytest.fail("; ".join(problems) + f"\nlog tail:\n{tail(log)}")

    def log(self):
        return read_text_file(self.log_path)

    def mark(self):
        return len(self.log())

    def wait_for_log(self, regex, timeout=10, since=0):
        return wait_for_regex(self.log, regex, timeout, "the msaproxy log", since)

    def ctl(self, *args, check=True, timeout=30):
        """Run msaproxyctl against this proxy; returns the CompletedProcess
        (text).  check: fail the test unless it exits 0."""
        proc = subprocess.run([MSAPROXYCTL_BIN, "-s", str(self.control_socket), *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"msaproxyctl {' '.join(args)} exited {proc.returncode}: "
                        f"{proc.stderr}\nlog tail:\n{tail(self.log())}")
        return proc

    def stats(self):
        """`msaproxyctl -j stats` as a dict."""
        return json.loads(self.ctl("-j", "stats").stdout)

    def settle(self, timeout=10):
        """Wait until the readiness check's connections have been accepted
        and have ended: for a test that counts sessions against a cap."""
        wait_until(lambda: (lambda st: st["sessions_accepted"] >= self.probes
                            and st["sessions_active"] == 0)(self.stats()),
                   timeout, "the readiness probes to end")

    def rss_kb(self):
        """The proxy's resident set (VmRSS), KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status)[1])

    def sanitized(self):
        """Is this an ASan build?  (Its RSS holds freed memory in
        quarantine and says nothing about what the proxy keeps.)"""
        return "libasan" in Path(f"/proc/{self.proc.pid}/maps").read_text() or \
            b"__asan_init" in Path(self.proc.args[0]).read_bytes()

    def rewrite_config(self, **overrides):
        """Apply dotted overrides to the config file (listeners kept) for a
        reload."""
        for key, value in overrides.items():
            apply_override(self.config, key, value)
        self.config_path.write_text(to_yaml(self.config) + "\n")


def default_proxy_config(certs, users, backends):
    return {
        "hostname": SERVER_NAME,
        "workers": 2,
        "log": {"level": "debug"},
        "tls": {
            "certificates": [{"cert": certs.ecdsa_cert, "key": certs.ecdsa_key}],
            "handshake_timeout": "10s",
        },
        "listeners": [],  # filled in with free ports at start
        "auth": {
            "passwd_file": users.path,
            "mechanisms": ["PLAIN", "LOGIN"],
            "threads": 2,
            "failure_delay": "0s",
        },
        "limits": {
            "max_message_size": "50MB",
            "command_timeout": "5m",
            "data_timeout": "10m",
            "bare_newlines": "reject",
            # Tests of other things must not trip the limits: 127.0.0.1 is
            # allowlisted and users are generous; test_limits.py sets its
            # own and connects from other 127/8 addresses.
            "user": {"messages": "100000/1m", "recipients": "100000/1m",
                     "bytes": "100GB/1m"},
            "ip": {"allow": ["127.0.0.1/32"]},
        },
        "backends": {"servers": [_backend_entry(b) for b in backends]},
        # Every test runs with the workers' system call filter: a call it
        # lacks stops the proxy with a line naming it, and fails the test.
        "privileges": {"seccomp": "kill"},
        # Teardown sends SIGTERM and waits 10 s: drain well within it.
        "shutdown": {"timeout": "5s"},
    }


@pytest.fixture
def proxy(tmp_path, certs, users):
    """Factory: proxy(backends=[port or "host:port" or dict, ...], **overrides)
    starts msaproxy ($MSAPROXY_BIN, default /work/main/build/msaproxy) and
    returns a ProxyProcess.  Overrides use dotted keys, e.g.
    proxy([port], **{"limits.command_timeout": "2s"}) or limits__command_timeout="2s";
    listener={...} adds keys to both listeners (e.g. {"sender_check": True}).
    Every proxy is stopped (SIGTERM) at teardown; a crash, a sanitizer
    report or an unclean exit fails the test."""
    started = []

    def start(backends, listener=None, **overrides):
        if not (os.path.isfile(MSAPROXY_BIN) and os.access(MSAPROXY_BIN, os.X_OK)):
            pytest.fail(f"no msaproxy binary at {MSAPROXY_BIN} (build it, or set MSAPROXY_BIN)")
        config = default_proxy_config(certs, users, backends)
        for key, value in overrides.items():
            apply_override(config, key, value)
        workdir = tmp_path / f"proxy{len(started)}"
        workdir.mkdir()
        instance = ProxyProcess(workdir, config, certs.ca, listener)
        instance.start(MSAPROXY_BIN)  # fails the test (and leaves no process) if it can't
        started.append(instance)
        return instance

    yield start
    failures = []
    for instance in started:
        try:
            instance.stop()
        except pytest.fail.Exception as exc:
            failures.append(str(exc))
        print(f"msaproxy log {instance.log_path}:\n{tail(instance.log(), 40)}")
    if failures:
        pytest.fail("\n\n".join(failures))
