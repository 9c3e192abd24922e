#!/usr/bin/python3
"""bench/outside_client.py - SMTP submission load from Python's smtplib + ssl.

usage: bench/outside_client.py --port P [--host 127.0.0.1] [--tls starttls|implicit]
                               --users FILE [-c C] [-d S] [-n N] [--size 2KB]
                               [--procs P] [--cafile CERT] [--timeout S]

A second load generator that shares no code with bench/loadgen (issue 19:
"a figure that only your own load generator reproduces is not a figure").
It is built from what a mail user's software sends mail with: CPython's
smtplib over its ssl module (OpenSSL), one blocking smtplib.SMTP object per
session, the way an application calls it:

    SMTP(host, port) (connect, 220) - ehlo() - starttls(context) - ehlo()
    - auth("PLAIN") - sendmail(from, [to], message) - quit()

or, with --tls implicit, SMTP_SSL(host, port, context) (465 style) in place
of the first three steps.  sendmail() sends MAIL, RCPT, DATA, then the whole
message in one SSLSocket.sendall(): OpenSSL cuts it into 16 KiB records
written back to back, the socket kept full, as any smtplib user's big
message goes out.  The message (exactly --size bytes, 76-byte lines, every
40th line starting with '.', so the dot-stuffing that smtplib does runs)
is built once and sent by every session.

C sessions are in flight at once: --procs processes (so the GIL does not
make the client the bottleneck), each running its share of C threads, one
session at a time per thread.  Sessions start until -d seconds have passed
(or -n have started); those in flight then finish.  Every socket operation
has --timeout; every failure is counted by step and cause, and the first
error text of each kind is kept.  The certificate is verified against
--cafile (the bench's self-signed certificate, or a test CA) and the
target's address, as a client that checks its server would; without
--cafile it is not verified (stated in the output).

Prints one JSON object on stdout with loadgen's keys where they mean the
same (sessions_ok, sessions_failed, failures, failure_detail, messages,
bytes, handshakes, wall_s, sessions_per_s, mb_per_s, client_cpu_s,
latency_ms, params); see bench/README.md.  Only loopback targets are
accepted.  Exit status: 0 if every session succeeded, 1 if any failed or
none ran, 2 for a usage error.
"""

import argparse
import concurrent.futures
import ctypes
import email.utils
import ipaddress
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import smtplib
import socket
import ssl
import sys
import threading
import time

SENDER = "outside@example.test"
RECIPIENT = "rcpt0@example.test"
EHLO_NAME = "client.example.test"  # not socket.getfqdn(): no DNS per session
MAX_SESSIONS_PER_THREAD = 10_000_000  # the count bound when no -n is given
MAX_DURATION_S = 3600
WORDS = ("minutes", "of", "the", "board", "meeting", "attached", "as", "agreed;",
         "please", "check", "figures", "in", "section", "three", "before", "Friday",
         "and", "reply", "with", "corrections.", "Thanks,", "invoice", "shipping",
         "delayed", "until", "next", "month", "(see", "thread", "below).", "kind",
         "regards", "project", "plan", "draft", "revised", "budget", "summary")

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def parse_size(text):
    """Bytes, or K/KB/KiB, M/MB/MiB (powers of 1024, as loadgen reads them)."""
    m = re.fullmatch(r"(\d+)\s*([kKmM]?)(i?[bB])?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"want bytes or 2KB/1MB, not {text!r}")
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    return int(m.group(1)) * scale


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="outside_client.py",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", choices=("starttls", "implicit"), default="starttls")
    ap.add_argument("--users", required=True,
                    help="user:password lines (bench/run's loadgen-users)")
    ap.add_argument("-c", "--concurrency", type=int, default=10)
    ap.add_argument("-d", "--duration", type=float, default=0.0,
                    help="seconds to start sessions for (needs -d or -n)")
    ap.add_argument("-n", "--sessions", type=int, default=0,
                    help="sessions in all (0: until -d)")
    ap.add_argument("--size", type=parse_size, default=parse_size("2KB"))
    ap.add_argument("--procs", type=int, default=0,
                    help="processes (0: min(C, one per CPU))")
    ap.add_argument("--cafile", help="verify the server's certificate against this")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds for each socket operation")
    args = ap.parse_args(argv)
    if args.duration <= 0 and args.sessions <= 0:
        ap.error("give -d SECONDS or -n SESSIONS")
    if not 0 <= args.duration <= MAX_DURATION_S:
        ap.error(f"-d: 0..{MAX_DURATION_S} seconds")
    if not 1 <= args.concurrency <= 2000:
        ap.error("-c: 1..2000")
    if not 0 < args.timeout <= 600:
        ap.error("--timeout: 0..600 seconds")
    if args.procs < 0 or args.procs > args.concurrency:
        ap.error("--procs: 0..C")
    if args.procs == 0:
        args.procs = min(args.concurrency, len(os.sched_getaffinity(0)))
    if not loopback(args.host):
        ap.error(f"--host {args.host}: only loopback targets (127.0.0.0/8, ::1)")
    try:
        args.user_list = read_users(args.users)
    except (OSError, ValueError) as exc:
        ap.error(f"--users: {exc}")
    return args


def loopback(host):
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def read_users(path):
    users = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            user, sep, password = line.partition(":")
            if not sep or not user:
                raise ValueError(f"{path}:{n}: want user:password")
            users.append((user, password))
    if not users:
        raise ValueError(f"{path}: no users")
    return users


def build_message(size):
    """Headers and text lines, exactly size bytes (at least the headers and
    one empty line), CRLF throughout; lines of 76 bytes, the last one 2..78;
    every 40th line starts with '.' (smtplib stuffs it to '..')."""
    header = ("From: Outside Client <outside@example.test>\r\n"
              f"To: <{RECIPIENT}>\r\n"
              "Subject: msaproxy outside client test message\r\n"
              f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
              f"Message-ID: {email.utils.make_msgid('outside', 'example.test')}\r\n"
              "MIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=us-ascii\r\n"
              "\r\n").encode("ascii")
    rng = random.Random(19)
    parts, rest, lines = [header], max(size - len(header), 2), 0
    while rest > 0:
        length = 76 if rest >= 79 else rest
        lines += 1
        text = "." if lines % 40 == 0 else ""
        while len(text) < length - 2:
            text += (" " if text and text != "." else "") + rng.choice(WORDS)
        parts.append(text[:length - 2].encode("ascii") + b"\r\n")
        rest -= length
    return b"".join(parts)


# ---------------------------------------------------------------------------
# One session
# ---------------------------------------------------------------------------


class Failed(Exception):
    """A session step that went wrong: phase, cause, what was said."""

    def __init__(self, phase, cause, detail, text):
        super().__init__(text)
        self.phase, self.cause, self.detail, self.text = phase, cause, detail, text


def classify(phase, exc):
    """(cause, detail) of an exception in phase.  A wrong reply is charged
    to the step it answered (cause = the phase, detail = the code), the rest
    to what happened to the connection."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return phase, "/".join(map(str, codes))
    if isinstance(exc, smtplib.SMTPResponseException):
        return phase, str(exc.smtp_code)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "protocol", "not offered"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib turns a socket error into this; the socket error says why.
        cause = exc.__context__ or exc.__cause__
        if cause is not None and not isinstance(cause, smtplib.SMTPException):
            return classify(phase, cause)
        return "closed", "closed"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout", "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls", "certificate"
    if isinstance(exc, ssl.SSLError):
        return "tls", exc.reason or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connect", "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "io", type(exc).__name__
    if isinstance(exc, OSError):
        return "io", type(exc).__name__
    return "unexpected", type(exc).__name__


def session(cfg, ctx, user, password, message, lat):
    """One submission session; returns (tls version and cipher) or raises
    Failed.  lat: the session's latencies in seconds, filled in here."""
    t0 = time.monotonic()
    phase, smtp = "connect", None
    try:
        if cfg["tls"] == "implicit":
            smtp = smtplib.SMTP_SSL(cfg["host"], cfg["port"], local_hostname=EHLO_NAME,
                                    timeout=cfg["timeout"], context=ctx)
            lat["handshake"] = time.monotonic() - t0  # TCP, handshake, greeting
        else:
            smtp = smtplib.SMTP(cfg["host"], cfg["port"], local_hostname=EHLO_NAME,
                                timeout=cfg["timeout"])
            phase = "ehlo"
            check(phase, smtp.ehlo(), 250)
            phase = "starttls"
            t1 = time.monotonic()
            smtp.starttls(context=ctx)
            lat["handshake"] = time.monotonic() - t1  # STARTTLS, 220, handshake
        phase = "ehlo"
        check(phase, smtp.ehlo(), 250)
        phase = "auth"
        smtp.user, smtp.password = user, password
        smtp.auth("PLAIN", smtp.auth_plain)
        # sendmail(): MAIL, RCPT, DATA, the message, its reply.  A refusal
        # names its step (below); a timeout or a close is "sendmail".
        phase = "sendmail"
        t2 = time.monotonic()
        smtp.sendmail(SENDER, [RECIPIENT], message)  # one recipient: refused raises
        lat["sendmail"] = time.monotonic() - t2
        tls = f"{smtp.sock.version()} {smtp.sock.cipher()[0]}"
        phase = "quit"
        check(phase, smtp.quit(), 221)
        smtp = None
        lat["session"] = time.monotonic() - t0
        return tls
    except Failed:
        raise
    except Exception as exc:  # every failure is counted, by kind
        if isinstance(exc, smtplib.SMTPSenderRefused):
            phase = "mail"
        elif isinstance(exc, smtplib.SMTPRecipientsRefused):
            phase = "rcpt"
        elif isinstance(exc, smtplib.SMTPDataError):
            phase = "data"
        cause, detail = classify(phase, exc)
        raise Failed(phase, cause, detail, f"{type(exc).__name__}: {exc}") from exc
    finally:
        if smtp is not None:
            smtp.close()


def check(phase, reply, want):
    code, text = reply
    if code != want:
        raise Failed(phase, phase, str(code), f"{code} {text!r}")


# ---------------------------------------------------------------------------
# A worker process: its threads, its share of the sessions
# ---------------------------------------------------------------------------

STOP = None  # a multiprocessing Event: SIGINT/SIGTERM to the parent


def worker_init(stop):
    global STOP
    STOP = stop
    # The parent's handlers came with the fork: here SIGINT is the parent's
    # to take (it sets stop), and SIGTERM ends the process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:  # end with the parent, even if it is killed
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def new_stats():
    return {"ok": 0, "failed": 0, "failures": {}, "failure_detail": {},
            "examples": {}, "messages": 0, "bytes": 0, "handshakes": 0, "tls": {},
            "latency": {"session": [], "handshake": [], "sendmail": []}}


def count(d, key, n=1):
    d[key] = d.get(key, 0) + n


def merge(into, st):
    for k in ("ok", "failed", "messages", "bytes", "handshakes"):
        into[k] += st[k]
    for k in ("failures", "failure_detail", "tls"):
        for key, n in st[k].items():
            count(into[k], key, n)
    for key, text in st["examples"].items():
        into["examples"].setdefault(key, text)
    for k, v in st["latency"].items():
        into["latency"][k] += v


def context(cafile):
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def thread_loop(cfg, ctx, message, index, sessions, st):
    users = cfg["users"]
    for k in range(sessions):
        if time.monotonic() >= cfg["deadline"] or STOP.is_set():
            break
        user, password = users[(index + k * cfg["threads_total"]) % len(users)]
        lat = {}
        try:
            tls = session(cfg, ctx, user, password, message, lat)
        except Failed as f:
            st["failed"] += 1
            count(st["failures"], f.cause)
            # "auth 535", "data timeout", "starttls tls: certificate"
            key = f"{f.phase} {f.detail}" if f.cause == f.phase else f"{f.phase} {f.cause}"
            key += f": {f.detail}" if f.cause not in (f.phase, f.detail) else ""
            count(st["failure_detail"], key)
            st["examples"].setdefault(key, f.text[:300])
            if "handshake" in lat:
                st["handshakes"] += 1
            continue
        st["ok"] += 1
        st["messages"] += 1
        st["bytes"] += len(message)
        st["handshakes"] += 1
        count(st["tls"], tls)
        for key, v in lat.items():
            st["latency"][key].append(v)


def worker(cfg):
    """One process: cfg["threads"] threads, each with its share of
    cfg["sessions"]; returns the merged counts and the process's CPU."""
    delay = cfg["start_at"] - time.monotonic()
    ctx = context(cfg["cafile"])
    message = build_message(cfg["size"])
    if delay > 0:
        time.sleep(delay)
    stats, threads = [], []
    for i in range(cfg["threads"]):
        st = new_stats()
        share = cfg["sessions"] // cfg["threads"] + (i < cfg["sessions"] % cfg["threads"])
        t = threading.Thread(target=thread_loop, daemon=True,
                             args=(cfg, ctx, message, cfg["first_thread"] + i, share, st))
        t.start()
        stats.append(st)
        threads.append(t)
    # A session is a dozen socket operations of at most --timeout each.
    limit = cfg["deadline"] + 16 * cfg["timeout"]
    lost = 0
    for t in threads:
        t.join(max(0.0, limit - time.monotonic()))
        lost += t.is_alive()
    end = time.monotonic()
    total = new_stats()
    for st in stats:
        merge(total, st)
    if lost:  # cannot happen with every operation under a timeout; counted if it does
        count(total["failures"], "lost")
        count(total["failure_detail"], "thread lost", lost)
        total["failed"] += lost
    ru = resource.getrusage(resource.RUSAGE_SELF)
    total["cpu_s"] = ru.ru_utime + ru.ru_stime
    total["end"] = end
    return total


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def percentiles(values):
    if not values:
        return {"n": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0,
                "mean": 0.0}
    v = sorted(values)

    def at(q):
        return round(1e3 * v[min(len(v) - 1, int(q * len(v)))], 3)

    return {"n": len(v), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99),
            "p999": at(0.999), "max": round(1e3 * v[-1], 3),
            "mean": round(1e3 * sum(v) / len(v), 3)}


def run(args):
    procs, conc = args.procs, args.concurrency
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    start_at = time.monotonic() + 0.1 + 0.02 * procs  # every process forked and ready
    deadline = start_at + (args.duration or MAX_DURATION_S)  # -n alone: bounded too
    sessions = args.sessions or MAX_SESSIONS_PER_THREAD * conc
    cfgs, first = [], 0
    for p in range(procs):
        threads = conc // procs + (p < conc % procs)
        cfgs.append({"host": args.host, "port": args.port, "tls": args.tls,
                     "users": args.user_list, "size": args.size, "cafile": args.cafile,
                     "timeout": args.timeout, "start_at": start_at, "deadline": deadline,
                     "threads": threads, "first_thread": first, "threads_total": conc,
                     "sessions": sessions // procs + (p < sessions % procs)})
        first += threads
    total, lost = new_stats(), 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    ends = []
    wait = (args.duration or MAX_DURATION_S) + 20 * args.timeout + 30
    with concurrent.futures.ProcessPoolExecutor(procs, mp_context=ctx,
                                                initializer=worker_init,
                                                initargs=(stop,)) as pool:
        futures = [pool.submit(worker, cfg) for cfg in cfgs]
        for f in futures:
            try:
                res = f.result(timeout=max(1.0, start_at + wait - time.monotonic()))
            except (concurrent.futures.TimeoutError,
                    concurrent.futures.process.BrokenProcessPool) as exc:
                lost += 1
                print(f"outside_client: a worker process was lost: {exc!r}", file=sys.stderr)
                continue
            merge(total, res)
            total["cpu_s"] = total.get("cpu_s", 0.0) + res["cpu_s"]
            ends.append(res["end"])
    if lost:
        count(total["failures"], "lost")
        count(total["failure_detail"], "process lost", lost)
        total["failed"] += lost  # at least one session each; the rest unknown
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    parent_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    wall = max(ends) - start_at if ends else time.monotonic() - start_at
    out = {
        "client": "outside (Python smtplib + ssl)",
        "sessions_ok": total["ok"], "sessions_failed": total["failed"],
        "failures": total["failures"], "failure_detail": total["failure_detail"],
        "failure_examples": total["examples"],
        "messages": total["messages"], "bytes": total["bytes"],
        "handshakes": total["handshakes"], "resumed": 0,
        "wall_s": round(wall, 3),
        "sessions_per_s": round(total["ok"] / wall, 1) if wall > 0 else 0.0,
        "messages_per_s": round(total["messages"] / wall, 1) if wall > 0 else 0.0,
        "mb_per_s": round(total["bytes"] / 1048576 / wall, 2) if wall > 0 else 0.0,
        "client_cpu_s": round(total.get("cpu_s", 0.0) + parent_cpu, 3),
        "tls": total["tls"],
        "latency_ms": {k: percentiles(v) for k, v in total["latency"].items()},
        "params": {"host": args.host, "port": args.port, "tls": args.tls,
                   "users": len(args.user_list), "size": args.size,
                   "wire_bytes": len(smtp_wire(build_message(args.size))),
                   "concurrency": conc, "procs": procs, "sessions": args.sessions,
                   "duration_s": args.duration, "timeout_s": args.timeout,
                   "verify": bool(args.cafile), "cafile": args.cafile,
                   "python": sys.version.split()[0], "openssl": ssl.OPENSSL_VERSION},
    }
    if stop.is_set():
        out["interrupted"] = True
    return out


def smtp_wire(message):
    """The message as smtplib puts it on the wire (its dot-stuffing, the
    terminator): for the params only."""
    return re.sub(rb"(?m)^\.", b"..", message) + b".\r\n"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = run(args)
    print(json.dumps(out), flush=True)
    for key, text in out["failure_examples"].items():
        print(f"outside_client: {key}: {text}", file=sys.stderr)
    return 0 if out["sessions_failed"] == 0 and out["sessions_ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
