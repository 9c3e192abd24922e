"""The passwd file's schemes from Dovecot migrations, end to end
(proxy/auth/passwd_db.c): MD5-CRYPT, SSHA, SSHA512, Argon2i and Argon2id
users log in through the proxy with their passwords and not without;
the fast ones (MD5-CRYPT, SSHA) are warned about at load.  The hashes are
made here with the tools an operator has: `openssl passwd -1`, Python's
hashlib, and the argon2 CLI (Debian's argon2 package)."""

import base64
import hashlib
import os
import smtplib
import ssl
import subprocess

import pytest

USERS = {"md5": "md5-pass-1", "ssha": "ssha-pass-2", "ssha512": "ssha512-pass-3",
         "a2id": "argon-pass-4", "a2i": "argon-pass-5"}


def ssha(digest, password):
    salt = os.urandom(8)
    return base64.b64encode(digest(password.encode() + salt).digest() + salt).decode()


def argon2(password, kind):
    out = subprocess.run(["argon2", base64.b16encode(os.urandom(8)).decode(),
                          kind, "-t", "2", "-m", "12", "-p", "1", "-e"],
                         input=password.encode(), capture_output=True, check=True,
                         timeout=30)
    return out.stdout.decode().strip()


@pytest.fixture
def passwd(tmp_path):
    md5 = subprocess.run(["openssl", "passwd", "-1", USERS["md5"]], capture_output=True,
                         text=True, check=True, timeout=30).stdout.strip()
    lines = [
        f"md5:{{MD5-CRYPT}}{md5}",
        f"ssha:{{SSHA}}{ssha(hashlib.sha1, USERS['ssha'])}",
        f"ssha512:{{SSHA512}}{ssha(hashlib.sha512, USERS['ssha512'])}",
        f"a2id:{{ARGON2ID}}{argon2(USERS['a2id'], '-id')}",
        f"a2i:{argon2(USERS['a2i'], '-i')}",
    ]
    path = tmp_path / "passwd"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def login(p, user, password):
    ctx = ssl.create_default_context(cafile=str(p.ca))
    with smtplib.SMTP_SSL("127.0.0.1", p.implicit_port, context=ctx, timeout=15) as s:
        s.ehlo()
        s.user, s.password = user, password
        try:
            return s.auth("PLAIN", s.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def test_migrated_schemes_log_in(proxy, recording_backend, passwd):
    p = proxy([recording_backend.port], **{"auth.passwd_file": str(passwd)})
    for user, password in USERS.items():
        assert login(p, user, password) == 235, user
        assert login(p, user, password + "x") == 535, user
    assert login(p, "nobody", "md5-pass-1") == 535
    p.wait_for_log(r"msg=passwd-weak-hashes path=\S+ users=3 ")
