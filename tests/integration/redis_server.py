"""A private redis-server for the cluster tests: started on a free
loopback port with no persistence, stopped by its PID (never by name).

RedisServer(workdir, password=None, user=None, tls=None): .start(), .port,
.cli(...), tls=(cert, key, ca) serves TLS only on .port,
.kill() (SIGKILL), .pause() / .resume() (SIGSTOP / SIGCONT), .stop().
Restarting after kill() reuses the port, so the proxies find it again.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, workdir, password=None, user=None, tls=None,
                 acl="~* &* +@all"):
        self.tls = tls
        self.acl = acl
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.user = user
        self.port = None
        self.proc = None
        self.paused = False

    def start(self):
        if self.port is None:
            self.port = _free_port()
        if self.tls is not None:
            cert, key, ca = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                      "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        else:
            listen = ["--port", str(self.port)]
        args = ["redis-server", *listen, "--bind", LOOPBACK,
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self.workdir / "redis.log")]
        if self.user is not None:
            # An ACL user with just what msaproxy needs; the default user
            # keeps working for the test's own redis-cli.
            args += ["--user", self.user, "on", f">{self.password}",
                     *self.acl.split()]
        elif self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: " + self.log())
            try:
                with socket.create_connection((LOOPBACK, self.port), 0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server did not come up: " + self.log())

    def log(self):
        try:
            return (self.workdir / "redis.log").read_text()
        except OSError:
            return ""

    def cli(self, *args):
        """redis-cli against it (as the default user); returns stdout."""
        cmd = ["redis-cli", "-h", LOOPBACK, "-p", str(self.port)]
        if self.tls is not None:
            cmd += ["--tls", "--cacert", str(self.tls[2])]
        if self.password is not None and self.user is None:
            cmd += ["--no-auth-warning", "-a", self.password]
        out = subprocess.run(cmd + list(args), capture_output=True,
                             text=True, timeout=10)
        return out.stdout

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
