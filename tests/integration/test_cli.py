"""The command lines of both binaries (issue 18, item 14): --help and
--version, and `msaproxy hash-password` (bcrypt's default cost 12, a cost
for every scheme, the retype prompt on a terminal).  The binaries are run
as an operator runs them; the terminal is a real pty (python's pty
module), so the prompts, the echo and the retype are the real ones."""

import base64
import os
import pty
import select
import subprocess
import termios
import time

import pytest

from conftest import MSAPROXY_BIN, MSAPROXYCTL_BIN, SmtpLines


def run(args, stdin_text="", timeout=60):
    return subprocess.run(args, input=stdin_text, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("binary", [MSAPROXY_BIN, MSAPROXYCTL_BIN],
                         ids=["msaproxy", "msaproxyctl"])
def test_help_and_version(binary):
    name = os.path.basename(binary)
    for flag in ("--help", "-h"):
        r = run([binary, flag])
        assert r.returncode == 0, (flag, r.stderr)
        assert r.stdout.startswith(f"usage: {name} "), r.stdout
        assert "--version" in r.stdout and r.stderr == ""
    r = run([binary, "--version"])
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith(f"{name} ") and r.stdout.count("\n") == 1, r.stdout
    version = r.stdout.split()[1]
    assert version[0].isdigit(), version
    # Both binaries of one build say the same version.
    other = MSAPROXYCTL_BIN if binary == MSAPROXY_BIN else MSAPROXY_BIN
    assert run([other, "--version"]).stdout.split()[1] == version
    # A wrong option is still a usage error: stderr and 2.
    r = run([binary, "--no-such-option"])
    assert r.returncode == 2 and r.stdout == ""
    assert "usage: " in r.stderr


def test_hash_password_help_is_not_an_error():
    r = run([MSAPROXY_BIN, "hash-password", "--help"])
    assert r.returncode == 0 and "--cost N | --rounds N" in r.stdout, r
    r = run([MSAPROXY_BIN, "hash-password", "--nope"])
    assert r.returncode == 2 and "usage: " in r.stderr


def hash_of(password, *args):
    r = run([MSAPROXY_BIN, "hash-password", *args], password + "\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_bcrypt_default_cost_is_12():
    assert hash_of("pw", "--scheme", "bcrypt").startswith("$2b$12$")


@pytest.mark.parametrize("args,prefix", [
    (["--scheme", "bcrypt", "--cost", "4"], "$2b$04$"),
    (["--scheme", "bcrypt", "--rounds", "6"], "$2b$06$"),
    (["--scheme", "sha512-crypt", "--rounds", "20000"], "$6$rounds=20000$"),
    (["--scheme", "sha512-crypt", "--cost", "1000"], "$6$rounds=1000$"),
])
def test_cost_for_each_scheme(args, prefix):
    assert hash_of("pw", *args).startswith(prefix)


def test_yescrypt_cost_changes_its_parameters():
    # yescrypt spells its cost in the parameter field ("$y$j9T$...").
    params = {cost: hash_of("pw", "--cost", cost).split("$")[2]
              for cost in ("3", "5", "7")}
    assert params["5"] == hash_of("pw").split("$")[2]  # 5 is the default
    assert len(set(params.values())) == 3, params


@pytest.mark.parametrize("args,message", [
    (["--scheme", "bcrypt", "--cost", "3"], "cost 3: bcrypt takes 4 to 31"),
    (["--scheme", "bcrypt", "--cost", "32"], "cost 32: bcrypt takes 4 to 31"),
    (["--cost", "12"], "cost 12: yescrypt takes 1 to 11"),
    (["--scheme", "sha512-crypt", "--rounds", "999"],
     "rounds 999: sha512-crypt takes 1000 to 999999999"),
    (["--cost", "0"], "--cost: expected a whole number above 0"),
    (["--rounds", "-5"], "--rounds: expected a whole number above 0"),
    (["--scheme", "md5"], "unknown hash scheme md5"),
])
def test_bad_cost_or_scheme_is_a_usage_error(args, message):
    # Said before any password is read: stdin is never touched.
    r = run([MSAPROXY_BIN, "hash-password", *args], "pw\n")
    assert r.returncode == 2 and r.stdout == "", r
    assert message in r.stderr, r.stderr


def test_hash_with_a_cost_logs_in(proxy, recording_backend, tmp_path):
    """A hash written with --cost is one the proxy verifies."""
    users = tmp_path / "passwd"
    users.write_text(f"carol:{hash_of('carol-pw', '--scheme', 'bcrypt', '--cost', '4')}\n"
                     f"dave:{hash_of('dave-pw', '--scheme', 'sha512-crypt', '--rounds', '2000')}\n")
    users.chmod(0o600)
    p = proxy([recording_backend.port], **{"auth.passwd_file": str(users)})
    for user, pw in (("carol", "carol-pw"), ("dave", "dave-pw")):
        s = SmtpLines(p, tls=True)
        assert s.cmd(b"EHLO client.example.test").startswith(b"250")
        plain = base64.b64encode(f"\0{user}\0{pw}".encode())
        assert s.cmd(b"AUTH PLAIN " + plain).startswith(b"235"), user
        assert s.cmd(b"AUTH PLAIN " + base64.b64encode(b"\0x\0y")).startswith(b"503")
        s.close()


class Tty:
    """msaproxy hash-password with a pty as its stdin; prompts come on
    stderr, the hash on stdout (pipes)."""

    def __init__(self):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [MSAPROXY_BIN, "hash-password", "--scheme", "bcrypt", "--cost", "4"],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(slave)
        self.err = b""

    def wait_prompt(self, prompt, timeout=10):
        deadline = time.monotonic() + timeout
        while prompt not in self.err:
            left = deadline - time.monotonic()
            assert left > 0, f"no {prompt!r} prompt; stderr so far {self.err!r}"
            ready, _, _ = select.select([self.proc.stderr], [], [], left)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                assert chunk, f"stderr closed before {prompt!r}: {self.err!r}"
                self.err += chunk
        # The prompt comes after echo was turned off: nothing typed shows.
        assert not termios.tcgetattr(self.master)[3] & termios.ECHO
        self.err = self.err.split(prompt, 1)[1]

    def type(self, text):
        os.write(self.master, text.encode())

    def finish(self):
        out, err = self.proc.communicate(timeout=30)
        echoed = b""
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            echoed += chunk
        os.close(self.master)
        return self.proc.returncode, out.decode(), (self.err + err).decode(), echoed


def test_interactive_asks_twice_and_hashes():
    t = Tty()
    t.wait_prompt(b"Password: ")
    t.type("s3cret-pw\n")
    t.wait_prompt(b"Retype password: ")
    t.type("s3cret-pw\n")
    code, out, err, echoed = t.finish()
    assert code == 0, err
    assert out.startswith("$2b$04$") and out.count("\n") == 1, out
    assert b"s3cret" not in echoed  # typed without echo


def test_interactive_mismatch_is_refused():
    t = Tty()
    t.wait_prompt(b"Password: ")
    t.type("s3cret-pw\n")
    t.wait_prompt(b"Retype password: ")
    t.type("s3cret-pX\n")
    code, out, err, _ = t.finish()
    assert code == 1 and out == "", out
    assert "the passwords do not match" in err, err


def test_piped_password_is_read_once():
    # Not a terminal (a script, a pipe): one line, no prompt, no retype.
    r = run([MSAPROXY_BIN, "hash-password", "--scheme", "bcrypt", "--cost", "4"],
            "pw\n")
    assert r.returncode == 0 and r.stderr == "", r
    assert r.stdout.startswith("$2b$04$")


def test_weak_password_refused_with_the_reason():
    """libpwquality, the system's policy: a typed password is checked; a
    piped one when asked (--check-strength); --allow-weak skips it."""
    t = Tty()
    t.wait_prompt(b"Password: ")
    t.type("pw\n")
    t.wait_prompt(b"Retype password: ")
    t.type("pw\n")
    code, out, err, _ = t.finish()
    assert code == 1 and out == "", out
    assert "a weak password: The password is shorter than 8 characters" in err, err
    args = [MSAPROXY_BIN, "hash-password", "--scheme", "bcrypt", "--cost", "4"]
    r = run([*args, "--check-strength"], "password\n")
    assert r.returncode == 1 and r.stdout == "", r
    assert "dictionary" in r.stderr, r.stderr
    r = run([*args, "--check-strength"], "Tr0ub4dor&3-horse\n")
    assert r.returncode == 0 and r.stdout.startswith("$2b$04$"), r
    r = run([*args, "--check-strength", "--allow-weak"], "pw\n")
    assert r.returncode == 0 and r.stdout.startswith("$2b$04$"), r
