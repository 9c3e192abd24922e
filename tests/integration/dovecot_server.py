"""A private Dovecot, auth only, for the auth.backend dovecot tests.

DovecotAuth(users, mechanisms="plain login", tcp_port=None, oauth2_url=None):
.start() writes a minimal
dovecot.conf in a fresh directory under /tmp (Dovecot's auth process runs
as the dovecot user and must read the users file; unix socket paths must
fit 108 bytes), runs `dovecot -F -c CONF` and waits for its auth-client
socket.  .socket is that path.  users: {name: (password, extra)}, extra
being passwd-file extra fields such as "user=alice@example.test" (the
canonical login Dovecot answers with).  tcp_port: an inet_listener on
127.0.0.1 too (.start() then also waits for it).  oauth2_url: an oauth2
passdb too, for OAUTHBEARER and XOAUTH2 (the passwd-file one then serves
PLAIN and LOGIN only), which POSTs each token to that introspection URL
(introspection_mode = post) and takes the login from "username" when
"active" is true (oauth_server.py runs such an endpoint).  .stop() SIGKILLs the master by its
PID, then its children by theirs; .start() again reuses the socket path.
.auth_pid() is the PID of its auth process (a child of the master), for
SIGSTOP/SIGCONT.  Nothing is stopped by name.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/users{passwd_mechs}
}}{oauth2}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  unix_listener auth-client {{
    path = {d}/auth-client
    mode = 0666
  }}{inet}
}}
"""

INET = """
  inet_listener auth-tcp {{
    address = 127.0.0.1
    port = {port}
  }}"""

OAUTH2_PASSDB = """
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/dovecot-oauth2.conf.ext
}}"""

# Dovecot's oauth2 passdb: the token POSTed as token=..., the answer's
# "username" is the login (it must match the one the client named, after
# auth_username_format), "active" must be "true".
OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid):
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def dovecot_binary():
    return shutil.which("dovecot") or "/usr/sbin/dovecot"


class DovecotAuth:
    def __init__(self, users, mechanisms="plain login", tcp_port=None,
                 oauth2_url=None):
        self.dir = Path(tempfile.mkdtemp(prefix="msa-dv-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.socket = str(self.dir / "auth-client")
        self.conf = self.dir / "dovecot.conf"
        self.tcp_port = tcp_port
        inet = INET.format(port=tcp_port) if tcp_port else ""
        oauth2 = passwd_mechs = ""
        if oauth2_url:
            oauth2 = OAUTH2_PASSDB.format(d=self.dir)
            passwd_mechs = "\n  mechanisms = plain login"
            (self.dir / "dovecot-oauth2.conf.ext").write_text(
                OAUTH2_CONF.format(url=oauth2_url))
            os.chmod(self.dir / "dovecot-oauth2.conf.ext", 0o644)
        self.conf.write_text(CONF.format(d=self.dir, mechanisms=mechanisms, inet=inet,
                                         oauth2=oauth2, passwd_mechs=passwd_mechs))
        lines = []
        for name, (password, extra) in users.items():
            fields = [name, "{PLAIN}" + password, "", "", "", "", "", extra or ""]
            lines.append(":".join(fields))
        users_file = self.dir / "users"
        users_file.write_text("\n".join(lines) + "\n")
        os.chmod(users_file, 0o644)
        self.proc = None

    def start(self, timeout=10):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.out = open(self.dir / "dovecot.out", "ab")
        self.proc = subprocess.Popen([dovecot_binary(), "-F", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {self.log()}")
            if os.path.exists(self.socket) and (
                    not self.tcp_port or _accepts(self.tcp_port)):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not make {self.socket}: {self.log()}")

    def log(self):
        text = ""
        for name in ("dovecot.out", "dovecot.log"):
            p = self.dir / name
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def children(self):
        """{pid: cmdline} of the master's children."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if self.proc is not None and ppid == self.proc.pid:
                found[int(entry)] = cmdline
        return found

    def auth_pid(self, timeout=10):
        """The auth process (started on the first connection)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid, cmdline in self.children().items():
                if cmdline.startswith(b"dovecot/auth"):
                    return pid
            time.sleep(0.05)
        raise RuntimeError("no dovecot auth process")

    def stop(self, timeout=10):
        """The master and its children, at once (SIGKILL, by PID): without
        its master, Dovecot's auth process goes on serving the connections
        it has until they close, and the master's own SIGTERM shutdown
        waits a second for them.  A killed Dovecot is also what "down"
        means to the proxy."""
        if self.proc is None:
            return
        children = list(self.children())
        for pid in [self.proc.pid, *children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        for pid in children:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.proc = None
        self.out.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
