#!/usr/bin/python3
"""bench/lockstat.py - lock operations per handshake or session, on locks
that more than one thread takes, and what they bound on many cores (issue
19, "many cores").  Reads the dumps of bench/lockprobe.c.

usage: bench/lockstat.py ctx [--threads N] [--handshakes A,B]
       bench/lockstat.py contention [--threads N] [--ops N]
       bench/lockstat.py model --per-core R --shared-ops X[,Y...]
       bench/lockstat.py summary A.tsv B.tsv --units a,b [--hot REGEX]

ctx: build/bench/ctxbench under the probe, one OpenSSL library context
shared by every thread, then one per thread (msaproxy's way), each run
twice with A and B handshakes per thread; the difference of the two runs
is the cost of B - A handshakes with start-up and warm-up taken out, so
the counts are exact.  contention: build/bench/lockbench (the cost of one
operation on a lock whose line bounces).  model: sessions per second
against cores.  summary: two dumps of any command.

`bench/run locks` runs all of it plus msaproxy itself under the headline
load.  Nothing here asserts anything: it counts and reports.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
PROBE = TOP / "build/bench/lockprobe.so"
CTXBENCH = TOP / "build/bench/ctxbench"
LOCKBENCH = TOP / "build/bench/lockbench"

KINDS = ["mutex_lock", "mutex_trylock", "mutex_trylock_busy", "rdlock", "wrlock",
         "tryrdlock", "trywrlock", "rw_try_busy", "cond_relock"]
# Frames that say nothing about who owns a lock.
PLUMBING = re.compile(r"^(CRYPTO_THREAD_(read|write)_lock|CRYPTO_THREAD_unlock|"
                      r"CRYPTO_THREAD_lock_new|CRYPTO_THREAD_run_once|"
                      r"pthread_|__pthread|backtrace)")

# A typical cache-line transfer between two cores of a big (multi-socket,
# 64-core) server, in ns: an assumption, see docs/PERFORMANCE.md "Many
# cores" (same socket a few tens of ns, across sockets 100-300 ns).
BIG_MACHINE_TRANSFER_NS = 100.0


def probe_env(out):
    """The environment that loads the probe and names its dump."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(PROBE)
    env["LOCKPROBE_OUT"] = str(out)
    return env


class Dump:
    """One probe dump: threads, lock instances, frames."""

    def __init__(self, path):
        self.threads = {}   # idx -> (tid, name)
        self.locks = {}     # (addr, gen) -> {"ops": {idx: n}, "kinds": [..], "frames": [..]}
        self.frames = {}    # addr -> (object, offset, symbol)
        self.exe = None
        for line in Path(path).read_text().splitlines():
            f = line.split("\t")
            if f[0].startswith("# lockprobe"):
                self.exe = f[-1]
            elif f[0] == "T":
                self.threads[int(f[1])] = (int(f[2]), f[3])
            elif f[0] == "L":
                idx, key = int(f[1]), (f[2], f[3])
                counts = [int(x) for x in f[4:4 + len(KINDS)]]
                rest = f[4 + len(KINDS):]
                cut = rest.index("|") if "|" in rest else len(rest)
                lk = self.locks.setdefault(key, {"ops": {}, "kinds": [0] * len(KINDS),
                                                 "first": {}, "made": []})
                lk["first"][idx] = rest[:cut]
                if rest[cut + 1:]:
                    lk["made"] = rest[cut + 1:]
                lk["ops"][idx] = lk["ops"].get(idx, 0) + sum(counts)
                lk["kinds"] = [a + b for a, b in zip(lk["kinds"], counts)]
            elif f[0] == "F":
                self.frames[f[1]] = (f[2], int(f[3], 16), None if f[4] == "-" else f[4])
        self._resolve_unnamed()

    def _resolve_unnamed(self):
        """Frames in an executable without dynamic symbols (msaproxy,
        ctxbench): addr2line, when the file has a symbol table."""
        by_obj = defaultdict(list)
        for addr, (obj, off, sym) in self.frames.items():
            if sym is None and not obj.endswith(".so") and ".so." not in obj \
                    and os.path.exists(obj):
                by_obj[obj].append(addr)
        for obj, addrs in by_obj.items():
            try:
                out = subprocess.run(["addr2line", "-f", "-e", obj,
                                      *[hex(self.frames[a][1]) for a in addrs]],
                                     capture_output=True, text=True, timeout=60).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            names = out.splitlines()[0::2]
            for a, name in zip(addrs, names):
                if name and name != "??":
                    o, off, _ = self.frames[a]
                    self.frames[a] = (o, off, name)

    def site(self, frames):
        """(owner, label) of a lock from its first call stack: the
        library, and the first named frames that are not lock plumbing."""
        owner, names, anchor = None, [], None
        for fa in frames:
            obj, off, sym = self.frames.get(fa, ("?", 0, None))
            base = os.path.basename(obj)
            if "lockprobe" in base or base.startswith("libc.so"):
                continue
            if anchor is None and not (sym and PLUMBING.match(sym)):
                anchor = f"{base}+{off:#x}"
            if owner is None:
                owner = ("jemalloc" if "jemalloc" in base else
                         "OpenSSL" if base.startswith(("libcrypto", "libssl")) else
                         "msaproxy" if base == "msaproxy" else base)
            if "jemalloc" in base and owner == "jemalloc" and sym is None:
                continue
            if sym and not PLUMBING.match(sym):
                names.append(sym if owner != "OpenSSL" or "lib" not in base
                             else sym)
            if len(names) == 3:
                break
        if owner == "jemalloc" and not names:
            names = ["jemalloc internal (stripped library: an arena, bin or extent mutex)"]
        self.anchor = anchor or "?"
        return owner or "?", " < ".join(names) or "?"


def tally(dump, hot):
    """Per lock site, over the threads whose name matches hot: all their
    operations, and those on locks two or more hot threads took (shared),
    and the operations of the busiest single shared lock of each site."""
    hot_idx = {i for i, (_, name) in dump.threads.items() if re.search(hot, name)}
    sites = defaultdict(lambda: {"ops": 0, "shared_ops": 0, "shared_locks": 0,
                                 "busiest": 0, "rd": 0, "wr": 0})
    for lk in dump.locks.values():
        ops = {i: n for i, n in lk["ops"].items() if i in hot_idx}
        if not ops:
            continue
        # Named by where it was made when the probe saw that (the same in
        # every run), else by where a measured thread first took it.
        owner, first = dump.site(lk["first"][min(ops)])
        label = "first taken: " + first
        if lk["made"]:
            owner, made = dump.site(lk["made"])
            # the call site itself tells apart the locks one function makes
            label = f"made at {dump.anchor}: {made}"
        s = sites[(owner, label)]
        s.setdefault("example", first)
        n = sum(ops.values())
        s["ops"] += n
        if len(ops) > 1:
            s.setdefault("who", set()).update(
                re.sub(r"-\d+$", "", dump.threads[i][1]) for i in ops)
            s["shared_ops"] += n
            s["shared_locks"] += 1
            s["busiest"] = max(s["busiest"], n)
            s["rd"] += lk["kinds"][KINDS.index("rdlock")] + lk["kinds"][KINDS.index("tryrdlock")]
            s["wr"] += lk["kinds"][KINDS.index("wrlock")] + lk["kinds"][KINDS.index("trywrlock")]
    return sites, len(hot_idx)


def per_unit(dump_a, dump_b, units_a, units_b, hot):
    """Counts per unit (handshake, session): run B minus run A over
    units_b - units_a.  Returns {(owner, label): {...}} and totals."""
    ta, _ = tally(dump_a, hot)
    tb, nhot = tally(dump_b, hot)
    du = units_b - units_a
    out = {}
    for key in set(ta) | set(tb):
        a, b = ta.get(key, {}), tb.get(key, {})
        row = {k: (b.get(k, 0) - a.get(k, 0)) / du
               for k in ("ops", "shared_ops", "busiest", "rd", "wr")}
        row["shared_locks"] = b.get("shared_locks", 0)
        row["example"] = b.get("example", a.get("example", "?"))
        row["who"] = sorted(b.get("who", set()) | a.get("who", set()))
        out[key] = row
    totals = {k: sum(r[k] for r in out.values()) for k in ("ops", "shared_ops")}
    totals["hot_threads"] = nhot
    return out, totals


def by_owner(rows):
    own = defaultdict(lambda: {"ops": 0.0, "shared_ops": 0.0})
    for (owner, _), r in rows.items():
        own[owner]["ops"] += r["ops"]
        own[owner]["shared_ops"] += r["shared_ops"]
    return dict(own)


def print_rows(title, rows, totals, unit, top=12):
    print(f"{title}: {totals['ops']:.1f} lock operations per {unit} by "
          f"{totals['hot_threads']} threads, {totals['shared_ops']:.1f} of them on "
          f"locks two or more of those threads took")
    for owner, r in sorted(by_owner(rows).items(), key=lambda kv: -kv[1]["shared_ops"]):
        print(f"  {owner:9} {r['ops']:8.1f} ops, {r['shared_ops']:8.1f} on shared locks")
    shared = sorted(((k, r) for k, r in rows.items() if r["shared_ops"] > 0.005),
                    key=lambda kv: -kv[1]["shared_ops"])
    if shared:
        print(f"  {'shared ops':>10} {'busiest':>8} {'rd/wr':>11}  owner: where the lock "
              f"was made (its pthread_*_init) | where a thread first took it")
    for (owner, label), r in shared[:top]:
        taken = "" if label.startswith("first") else f" | taken: {r['example'][:60]}"
        if len(r["who"]) > 1 or (r["who"] and r["who"][0] not in ("-", "msa-worker")):
            taken += f" | by {'+'.join(r['who'])}"
        print(f"  {r['shared_ops']:10.2f} {r['busiest']:8.2f} {r['rd']:5.1f}/{r['wr']:<5.1f}  "
              f"{owner}: {label[:100]}{taken}")
    sys.stdout.flush()


def run_probed(argv, out, timeout=300):
    res = subprocess.run(argv, env=probe_env(out), capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {res.stderr[-500:]}")
    return res.stdout


def make_cert(d):
    cert, key = Path(d) / "ctx.crt", Path(d) / "ctx.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=ctxbench",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def ctx(threads=4, counts=(20, 60), cert=None, key=None, quiet=False):
    """ctxbench under the probe, both modes: {mode: (rows, totals)}."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="lockstat-") as d:
        if cert is None:
            cert, key = make_cert(d)
        for mode in ("shared", "per-thread"):
            dumps, units = [], []
            for n in counts:
                path = Path(d) / f"{mode}-{n}.tsv"
                res = json.loads(run_probed(
                    [str(CTXBENCH), "--cert", str(cert), "--key", str(key),
                     "--threads", str(threads), "--mode", mode, "--handshakes", str(n)], path))
                dumps.append(Dump(path))
                units.append(res["handshakes"])
            # ctxbench's threads have no name; the main thread is "main"
            rows, totals = per_unit(dumps[0], dumps[1], units[0], units[1], r"^(?!main$)")
            out[mode] = (rows, totals)
            if not quiet:
                print_rows(f"ctxbench {mode} library context, {threads} threads", rows,
                           totals, "handshake")
    return out


def contention(threads=8, ops=300000):
    """lockbench's rows, as dicts."""
    res = subprocess.run([str(LOCKBENCH), "--threads", str(threads), "--ops", str(ops)],
                         capture_output=True, text=True, timeout=300, check=True)
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def print_contention(rows):
    print("one lock operation (lock + unlock), ns: serial = wall / all operations "
          "(what it costs the lock), thread = as one thread sees it")
    for r in rows:
        if r["op"] == "pingpong":
            print(f"  cache-line transfer between CPU 0 and CPU 1 (ping-pong): "
                  f"{r['transfer_ns']} ns one way, best of 10 rounds (median "
                  f"{r['median_ns']} ns: other work on the CPUs gets in its way)")
            continue
        where = ("1 thread" if r["threads"] == 1 else
                 "2 threads pinned to CPUs 0 and 1" if r["pinned"] else
                 f"{r['threads']} threads on 2 CPUs")
        print(f"  {r['op']:7} {where:34} serial {r['serial_ns']:7.1f}   "
              f"thread {r['thread_ns']:7.1f}")
    sys.stdout.flush()


def this_machine_cost(rows):
    """The serialized cost of one operation measured here: wall / all
    operations with two threads pinned apart on one lock, the dearest of
    mutex, rdlock and wrlock (a lower bound for many cores: two cores
    queue less than 64)."""
    return max(r["serial_ns"] for r in rows
               if r["op"] in ("mutex", "rdlock", "wrlock") and r["threads"] == 2)


def model(per_core, modes, transfers, cores=(1, 2, 4, 8, 16, 32, 64)):
    """Sessions per second against cores.  modes: {name: busiest shared
    lock's operations per session}.  When every core wants one lock, its
    lock word's cache line moves to the next core at every operation, and
    the operations are serialized on that line: one operation costs the
    whole machine about one line transfer (more when waiters sleep in
    futex).  cap = 1 / (ops per session x cost).  costs: {label: ns}."""
    caps = {}
    for m, ops in modes.items():
        for tl, ns in transfers.items():
            caps[(m, tl)] = float("inf") if ops <= 0 else 1e9 / (ops * ns)
    print(f"model: sessions/s = min(cores x {per_core:g} per core, cap); "
          "cap = 1 / (busiest shared lock's ops per session x serialized cost of one op)")
    for (m, tl), cap in caps.items():
        ops = modes[m]
        print(f"  {m}: {ops:.2f} ops/session on its busiest shared lock, transfer {tl} "
              f"({transfers[tl]:g} ns): cap "
              + ("none" if cap == float("inf") else f"{cap:,.0f} sessions/s"
                 + f" = {cap / per_core:,.1f} cores"))
    print("  cores  " + "  ".join(f"{chr(65 + i)}: {m}, {tl}" for i, (m, tl) in enumerate(caps)))
    print("  " + " " * 5 + "".join(f"{chr(65 + i):>14}      " for i in range(len(caps))))
    table = []
    for c in cores:
        vals = [min(c * per_core, cap) for cap in caps.values()]
        table.append((c, vals))
        print(f"  {c:5}" + "".join(
            f"{v:>14,.0f}{' (cap)' if v < c * per_core else '      '}" for v in vals))
    sys.stdout.flush()
    return caps, table


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("ctx")
    c.add_argument("--threads", type=int, default=4)
    c.add_argument("--handshakes", default="20,60")
    c.add_argument("--json", action="store_true", help="also print the counts as JSON")
    k = sub.add_parser("contention")
    k.add_argument("--threads", type=int, default=8)
    k.add_argument("--ops", type=int, default=300000)
    m = sub.add_parser("model")
    m.add_argument("--per-core", type=float, default=800.0)
    m.add_argument("--shared-ops", required=True,
                   help="mode=ops,... busiest shared lock's ops per session")
    m.add_argument("--transfer-ns", type=float, default=None,
                   help="this machine's line transfer (default: measured)")
    s = sub.add_parser("summary")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--units", required=True, help="a,b: handshakes or sessions in each")
    s.add_argument("--hot", default=r"^msa-worker")
    args = ap.parse_args()
    if args.cmd == "ctx":
        a, b = (int(x) for x in args.handshakes.split(","))
        res = ctx(args.threads, (a, b))
        if args.json:
            print(json.dumps({m: {"totals": t, "by_owner": by_owner(r)}
                              for m, (r, t) in res.items()}))
    elif args.cmd == "contention":
        print_contention(contention(args.threads, args.ops))
    elif args.cmd == "model":
        modes = {}
        for part in args.shared_ops.split(","):
            name, val = part.split("=")
            modes[name] = float(val)
        ns = args.transfer_ns
        if ns is None:
            ns = this_machine_cost(contention(2, 200000))
        model(args.per_core, modes, {"big machine": BIG_MACHINE_TRANSFER_NS,
                                     "this machine": ns})
    else:
        ua, ub = (float(x) for x in args.units.split(","))
        rows, totals = per_unit(Dump(args.a), Dump(args.b), ua, ub, args.hot)
        print_rows(f"{args.a} -> {args.b}", rows, totals, "unit")


if __name__ == "__main__":
    main()
