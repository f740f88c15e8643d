#!/usr/bin/env python3
"""The zvfs benchmark (issue 9); run it through scripts/bench.sh (root, release build).

Usage: scripts/bench.sh [SUITE...]   (scripts/bench.sh --help lists the suites)

Generates its corpora under BENCH_DIR (default /var/tmp), measures each figure against
its target and against the native equivalent measured in the same run, prints the table
and the machine, and removes everything it made. Environment knobs:
  ZVFS=path          binary (default target/release/zvfs)
  BENCH_DIR=dir      where corpora, stores, caches and mountpoints go
  BENCH_SIZE=MiB     size of the generated rootfs-like tree (default 1024)
  BENCH_SRC=/path    use this directory as the tree instead of generating one
  BENCH_QUICK=1      smaller run: 256 MiB tree, 256 MiB file, 10,000-entry dir figures
  BENCH_KEEP=1       keep the work directory
  BENCH_BIGDIR_DATA=dir  keep the big-directory corpora and flists there (made when
                     missing) instead of in the work directory
  BENCH_ROUNDS=N     rounds of the `compare` suite (default 3) and of `import` (default 2)
  ZVFS_BASELINE=path the other binary of the `compare` suite
`scripts/bench.sh bigdir` runs only the big-directory part: `ls -l` of a 200,000-entry
directory, `ls -f` and `find -ls` of a 1,000,000-entry one, each on a fresh mount against
the same command on the native directory (warm), with the daemon's peak RSS.
`scripts/bench.sh import` builds a container image with umoci (BENCH_SIZE MiB of
uncompressed gzip layers, default 1024, BENCH_QUICK=1: 200): a base layer copied from this
machine's /usr (libraries, python, share; 60 %), then two `umoci repack` layers of
random and text files that also delete and replace big base files and a base directory
(whiteouts), and B = A + one small layer; pushes both with skopeo to Debian's
`docker-registry` on loopback, and times, in BENCH_ROUNDS interleaved rounds (best of):
`zvfs import` of A into a fresh dir store and cache, the daemonless three-step path
(`skopeo copy` to an OCI layout + `umoci unpack` + `zvfs pack`, each step and the total),
`zvfs pack` of the extracted tree alone, and `zvfs import` of B into A's store and cache
(layers reused, registry blob bytes from the registry's log); peak RSS from wait4, and in
a full run also for a 200 MiB image (memory flat in image size). Targets: import faster
than the three-step path and at least as fast as pack of the extracted tree.
`scripts/bench.sh wan` (issue 19) packs three images (python: python3.11, its libraries and
/usr/lib/python3.11 padded with real files to ~735 MiB, BENCH_QUICK=1: ~200; busybox: a
static busybox and a script in ~200 MiB; random: 1 GiB of random files, quick 512 MiB,
one of 2 MiB) into redis-server (the 0-db stand-in) and a sharded dir store served by
`python3 -m http.server`, each store behind scripts/wanproxy.py per profile
(BENCH_WAN_PROFILES=ms/Mbit,..., default 10/100,25/20,75/10), and times each workload on a
fresh mount: cold (bytes from the proxy's stats), then warm (page cache dropped), against
the floor bytes/bandwidth + 2 x delay and the full download of the stored objects.
Trace mode (`zvfs mount --record-trace` + `zvfs prefetch add`) runs when the binary has it.
Every timing here is wall-clock of a whole operation; cold figures drop the page cache
(`echo 3 > /proc/sys/vm/drop_caches`) first. Bytes fetched are counted by the store
itself: the dir store is served by a small counting HTTP server on loopback.
"""

import http.server
import json
import os
import random
import resource
import shutil
import signal
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ZVFS = os.path.abspath(os.environ.get("ZVFS", "target/release/zvfs"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
SIZE_MIB = int(os.environ.get("BENCH_SIZE", "256" if QUICK else "1024"))
FILE_MIB = 256 if QUICK else 1024
BIGDIR = 10_000 if QUICK else 50_000
# The big-directory part: `ls -l` of LSL_ENTRIES, `ls -f` / `find -ls` of HUGE_ENTRIES.
LSL_ENTRIES = 20_000 if QUICK else 200_000
HUGE_ENTRIES = 100_000 if QUICK else 1_000_000
META_ENTRIES = 20_000 if QUICK else 100_000
MiB = 1 << 20
# Runs of each figure the host's noise moves most (best of N, the native side alike).
PACK_RUNS = 2
WARM_ROUNDS = 5


def stop_process(p):
    """Terminate a child process, killing it if it does not exit within 10 s."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args, **kw):
    kw.setdefault("check", True)
    return subprocess.run(args, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def read_file(path, start=0, length=None):
    """Read sequentially with 1 MiB reads; returns bytes read."""
    buf = bytearray(MiB)
    view = memoryview(buf)
    done = 0
    with open(path, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        while length is None or done < length:
            want = MiB if length is None else min(MiB, length - done)
            n = f.readinto(view[:want])
            if not n:
                break
            done += n
    return done


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def family(pid):
    """`pid` and its child processes (a mount daemon is its supervisor and its worker)."""
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return pids


def proc_cpu(pid):
    """CPU seconds (user + system) a process and its children (the worker of a mount's
    supervisor) used so far."""
    total = 0
    for p in family(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def steal_ticks():
    """(steal, total) CPU ticks of the whole machine so far (/proc/stat): time a virtual
    machine's CPUs were runnable but the host ran something else."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return ticks[7], sum(ticks)


def stolen_percent(since):
    steal, total = steal_ticks()
    return 100 * (steal - since[0]) / max(total - since[1], 1)


def rate(nbytes, secs):
    return nbytes / 1e6 / max(secs, 1e-9)


# ---------------------------------------------------------------- corpora


def write_random(path, size, rnd):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MiB)
            f.write(rnd.randbytes(n))
            left -= n


def make_tree(root, total_mib, rnd):
    """A rootfs-like tree: tens of thousands of small files (text-like and binary) in
    nested directories, symlinks, plus a few large binaries and one 2 MiB file.
    About 25% of the bytes in small files, the rest in large ones."""
    os.makedirs(root)
    total = total_mib * MiB
    small_budget = total // 4
    nsmall = max(2000, min(40_000, small_budget // 6000))
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(500)]
    text = b" ".join(rnd.choice(words) for _ in range(400_000))  # about 2.4 MB of text
    dirs = []
    for a in range(40):
        for b in range(25):
            d = os.path.join(root, "usr" if a < 20 else "lib", f"pkg{a:02d}", f"d{b:02d}")
            dirs.append(d)
            os.makedirs(d)
    used = 0
    for i in range(nsmall):
        d = dirs[i % len(dirs)]
        size = min(int(rnd.expovariate(1 / (small_budget / nsmall))), 256 * 1024)
        p = os.path.join(d, f"f{i:05d}" + (".txt" if i % 3 == 0 else ".so"))
        if i % 3 == 0:
            at = rnd.randrange(0, len(text) - size)
            data = text[at:at + size]
        else:
            data = rnd.randbytes(size)
        with open(p, "wb") as f:
            f.write(data)
        used += size
        if i % 50 == 0:
            os.symlink(os.path.basename(p), p + ".link")
    big = os.path.join(root, "opt", "big")
    os.makedirs(big)
    two = os.path.join(root, "opt", "app.bin")
    write_random(two, 2 * MiB, rnd)
    used += 2 * MiB
    left = max(total - used, 8 * MiB)
    n = 0
    while left > 0:
        size = min(left, rnd.randint(16, 160) * MiB)
        write_random(os.path.join(big, f"blob{n:02d}.bin"), size, rnd)
        left -= size
        n += 1
    return two


def make_meta_tree(root, entries, bigdir):
    """A metadata-only tree: one directory of `bigdir` empty files plus directories of
    1000 empty files, `entries` entries in all."""
    os.makedirs(os.path.join(root, "big"))
    for i in range(bigdir):
        open(os.path.join(root, "big", f"entry-{i:06d}"), "wb").close()
    left = entries - bigdir
    d = 0
    while left > 0:
        p = os.path.join(root, f"d{d:03d}")
        os.mkdir(p)
        for i in range(min(999, left - 1)):
            open(os.path.join(p, f"f{i:04d}"), "wb").close()
        left -= min(1000, left)
        d += 1


# ---------------------------------------------------------------- mounts


class Mount:
    def __init__(self, fl, cache, mnt, log_path, extra=()):
        self.mnt = mnt
        os.makedirs(mnt, exist_ok=True)
        t = time.perf_counter()
        run([ZVFS, "mount", "-d", "-m", fl, "-c", cache, "-l", log_path, *extra, mnt])
        self.ready = time.perf_counter() - t
        self.pid = None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if parts[4] == os.path.realpath(mnt):
                    sep = parts.index("-")
                    self.pid = int(parts[sep + 2])
        if self.pid is None:
            raise RuntimeError(f"{mnt} is not mounted after zvfs mount -d")

    def hwm_kib(self):
        """Peak RSS of the daemon: its supervisor's plus its worker's."""
        total = 0
        for p in family(self.pid):
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def close(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    if any(l.startswith("State:") and "Z" in l for l in f):
                        break
            except FileNotFoundError:
                break
            time.sleep(0.05)
        subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        self.pid = None


# ---------------------------------------------------------------- counting store


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    counts = {"bytes": 0, "objects": 0}
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def copyfile(self, source, outputfile):
        n = 0
        while True:
            buf = source.read(256 * 1024)
            if not buf:
                break
            outputfile.write(buf)
            n += len(buf)
        with self.lock:
            self.counts["bytes"] += n
            self.counts["objects"] += 1


class CountingServer:
    def __init__(self, root):
        handler = lambda *a, **k: CountingHandler(*a, directory=root, **k)
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def reset(self):
        with CountingHandler.lock:
            CountingHandler.counts.update(bytes=0, objects=0)

    def bytes(self):
        return CountingHandler.counts["bytes"]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---------------------------------------------------------------- machine


def machine():
    model, cores = "?", os.cpu_count()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    disk = subprocess.run(
        ["sh", "-c", f"df -T {WORK} | tail -1 | awk '{{print $1, $2}}'; lsblk -dno NAME,ROTA,SIZE,MODEL 2>/dev/null | grep -v '^zram' | head -3"],
        capture_output=True, text=True).stdout.split("\n")
    load = open("/proc/loadavg").read().split()[:3]
    kernel = os.uname().release
    return (f"machine: {model}, {cores} cores, {mem} MiB RAM, kernel {kernel}\n"
            f"disk: {disk[0]} ({'; '.join(x.strip() for x in disk[1:] if x.strip())})\n"
            f"load average at start: {' '.join(load)}")


# ---------------------------------------------------------------- figures


ROWS = []
NOTES = []
CORES = os.cpu_count() or 1


def row(name, value, unit, target, ok, native=None, ratio=None):
    ROWS.append((name, value, unit, target, ok, native, ratio))
    log(f"{name}: {value} {unit} (target {target}) {'' if ok is None else 'ok' if ok else 'MISSED'}")


def fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}" if v < 100 else f"{v:.0f}"
    return str(v)


def print_table(header):
    print(header)
    print()
    if COMPARE:
        print_compare()
    print_wan()
    print_wan_fat()
    print_restart()
    if ROWS:
        print("| figure | zvfs | native | zvfs/native | target | met |")
        print("|---|---|---|---|---|---|")
    for name, value, unit, target, ok, native, ratio in ROWS:
        nat = "—" if native is None else f"{fmt(native)} {unit}"
        rat = "—" if ratio is None else f"{ratio:.2f}"
        print(f"| {name} | {fmt(value)} {unit} | {nat} | {rat} | {target} | {'—' if ok is None else 'yes' if ok else 'NO'} |")
    print()
    for n in NOTES:
        print(f"- {n}")
    sys.stdout.flush()


def make_flat_dir(root, entries):
    """`root/big`: a directory of `entries` empty files (kept when already complete)."""
    big = os.path.join(root, "big")
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return big
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(big)
    for i in range(entries):
        open(os.path.join(big, f"entry-{i:07d}"), "wb").close()
    open(done, "wb").close()
    return big


def bigdir(w):
    """Listings of big directories on fresh mounts against native, and the daemon's peak
    RSS while listing (it must not grow with the directory)."""
    data = os.environ.get("BENCH_BIGDIR_DATA") or w("bigdir")
    os.makedirs(data, exist_ok=True)
    d = lambda *p: os.path.join(data, *p)

    def corpus(name, entries):
        log(f"big-directory corpus: {entries} empty files ({d(name)})")
        big = make_flat_dir(d(name), entries)
        fl = d(f"{name}.fl")
        if not os.path.exists(fl):
            t = time.perf_counter()
            run([ZVFS, "pack", "-m", fl + ".tmp", "-s", f"dir://{d(name + '-store')}", d(name)],
                stdout=subprocess.DEVNULL)
            os.rename(fl + ".tmp", fl)
            NOTES.append(f"pack of {entries} empty files: {time.perf_counter() - t:.1f} s")
        return big, fl

    def fresh(fl, cmd):
        """`cmd` on a new mount of `fl` (the flist file in the page cache): seconds, peak RSS."""
        read_file(fl)
        m = Mount(fl, w("bigdir-cache"), w("bigdir-mnt"), w("bigdir.log"))
        try:
            secs = timed(lambda: run(cmd(os.path.join(m.mnt, "big")), stdout=subprocess.DEVNULL))
            return secs, m.hwm_kib() / 1024
        finally:
            m.close()

    def native(big, cmd):
        run(cmd(big), stdout=subprocess.DEVNULL)  # warm: inodes and dentries cached
        return min(timed(lambda: run(cmd(big), stdout=subprocess.DEVNULL)) for _ in range(2))

    ls_l = lambda p: ["ls", "-l", p]
    ls_f = lambda p: ["ls", "-f", p]
    find_ls = lambda p: ["find", p, "-ls"]
    big, fl = corpus(f"d{LSL_ENTRIES}", LSL_ENTRIES)
    nat = native(big, ls_l)
    secs, hwm = fresh(fl, ls_l)
    row(f"first `ls -l` of a {LSL_ENTRIES}-entry directory (fresh mount)", secs, "s",
        "<= 2 x native (warm)", secs <= 2 * nat, nat, secs / nat)
    NOTES.append(f"`ls -l` of {LSL_ENTRIES} entries: daemon peak RSS {hwm:.1f} MiB")
    big, fl = corpus(f"d{HUGE_ENTRIES}", HUGE_ENTRIES)
    hwms = []
    for name, cmd in ((f"`ls -f`", ls_f), (f"`find -ls`", find_ls)):
        nat = native(big, cmd)
        secs, hwm = fresh(fl, cmd)
        hwms.append(hwm)
        row(f"first {name} of a {HUGE_ENTRIES}-entry directory (fresh mount)", secs, "s",
            "informative", True, nat, secs / nat)
    hwm = max(hwms)
    row(f"daemon peak RSS, `ls -f` / `find -ls` of {HUGE_ENTRIES} entries", hwm, "MiB",
        "<= 64 MiB", hwm <= 64)
    NOTES.append("big-directory peak RSS (`ls -f`, `find -ls`): " + ", ".join(f"{h:.1f}" for h in hwms) + " MiB")


def checksum_row(path, mib):
    """The partial checksum of `path` (`mib` MiB, read into the page cache first), timed
    by `zvfs identity --time 2000`: a figure row."""
    read_file(path)
    out = subprocess.run([ZVFS, "identity", "--time", "2000", path], capture_output=True, text=True,
                         check=True).stdout
    median = float(out.split("median ")[1].split(" us")[0])
    row(f"partial checksum of a {mib} MiB cached file (median of 2000)", median, "us", "<= 100 us",
        median <= 100)


def identity(w, rnd):
    """The `identity` suite: the partial checksum of a 1 GiB file in the page cache."""
    log("generating a 1024 MiB random file")
    path = w("identity.bin")
    write_random(path, 1024 * MiB, rnd)
    read_file(path)
    out = subprocess.run([ZVFS, "identity", "--partial", path], capture_output=True, text=True,
                         check=True).stdout
    NOTES.append(f"`zvfs identity --partial` of the 1 GiB file: {out.strip()}")
    checksum_row(path, 1024)
    os.unlink(path)


# ---------------------------------------------------------------- import suite

# Image size of the `import` suite (uncompressed layer bytes, MiB).
IMPORT_MIB = int(os.environ["BENCH_SIZE"]) if os.environ.get("BENCH_SIZE") else (200 if QUICK else 1024)
# The small image whose import's peak RSS a full run also measures (flat memory).
IMPORT_SMALL_MIB = 200
# Real trees the base layer copies from (each source's share of the base layer's bytes).
IMPORT_SOURCES = [
    ("/usr/lib/x86_64-linux-gnu", 0.40),
    ("/usr/lib/python3", 0.05),
    ("/usr/lib/python3.11", 0.10),
    ("/usr/bin", 0.15),
    ("/usr/share/locale", 0.08),
    ("/usr/share/doc", 0.08),
    ("/usr/share/man", 0.06),
    ("/usr/share/perl", 0.04),
    ("/usr/share/i18n", 0.04),
]


def measured(args):
    """Runs `args` to completion: (wall seconds, its peak RSS in MiB, stdout, CPU seconds:
    user + system, its children's included). Fails with
    the command and its stderr when it exits non-zero. The RSS is GNU time's (`%M`, the
    child's wait4 ru_maxrss): a child forked by this Python process directly would count
    the parent's RSS it had before exec."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss.name, *args], stdout=out, stderr=err)
        secs = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{err.read().decode(errors='replace')}")
        peak, user, system = rss.read().split()[-3:]
        return secs, int(peak) / 1024, out.read().decode(errors="replace"), float(user) + float(system)


def copy_budget(src, dst, budget):
    """Copies files, directories and symlinks of `src` (sorted walk) into `dst` until
    `budget` bytes of regular files are copied; returns the bytes copied."""
    used = 0
    for root, dirs, files in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(root, src)
        out = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(out, exist_ok=True)
        for name in sorted(files):
            p = os.path.join(root, name)
            q = os.path.join(out, name)
            try:
                if os.path.islink(p):
                    os.symlink(os.readlink(p), q)
                    continue
                st = os.stat(p)
                if not os.path.isfile(p) or used + st.st_size > budget + 4 * MiB:
                    continue
                shutil.copyfile(p, q)
                os.chmod(q, st.st_mode & 0o7777)
                used += st.st_size
            except OSError:
                continue  # unreadable or vanished: the budget is filled by the next file
            if used >= budget:
                return used
    return used


def add_mixed(root, name, budget, rnd, text):
    """Adds `budget` bytes under root/NAME: 60 % random (incompressible) files of 1-24 MiB,
    40 % text files of 2-200 KiB in directories of 100."""
    top = os.path.join(root, "opt", name)
    os.makedirs(os.path.join(top, "bin"))
    left = int(budget * 0.6)
    i = 0
    while left > 0:
        size = min(left, rnd.randint(1, 24) * MiB)
        write_random(os.path.join(top, "bin", f"blob{i:03d}.bin"), size, rnd)
        left -= size
        i += 1
    left = int(budget * 0.4)
    i = 0
    while left > 0:
        d = os.path.join(top, "doc", f"d{i // 100:03d}")
        os.makedirs(d, exist_ok=True)
        size = min(left, rnd.randint(2, 200) * 1024)
        at = rnd.randrange(0, len(text) - size)
        with open(os.path.join(d, f"t{i:05d}.txt"), "wb") as f:
            f.write(text[at:at + size])
        left -= size
        i += 1


def build_image(rnd, total_mib, layout, tag):
    """An OCI layout `layout` whose tag `tag` is an image of about `total_mib` MiB
    (uncompressed layers), built with umoci in one bundle: a base layer copied from real
    trees (IMPORT_SOURCES, 60 %), then two `umoci repack` layers of mixed files (20 %
    each) that also delete and replace big base files (whiteouts) and a whole base
    directory, and replace files of the layer below. gzip layers (umoci's default).
    Returns the bundle (kept for the image B layer)."""
    total = total_mib * MiB
    bundle = layout + ".bundle"
    rootfs = os.path.join(bundle, "rootfs")
    run(["umoci", "init", "--layout", layout], stdout=subprocess.DEVNULL)
    run(["umoci", "new", "--image", f"{layout}:empty"], stdout=subprocess.DEVNULL)
    run(["umoci", "unpack", "--image", f"{layout}:empty", bundle], stdout=subprocess.DEVNULL)
    base = int(total * 0.6)
    got = 0
    for src, share in IMPORT_SOURCES:
        if os.path.isdir(src):
            got += copy_budget(src, os.path.join(rootfs, src.lstrip("/")), int(base * share))
    if got < base:  # a thin /usr: fill the base with more of the largest source
        got += copy_budget("/usr/lib", os.path.join(rootfs, "usr", "lib2"), base - got)
    log(f"  base layer: {got / MiB:.0f} MiB copied from {', '.join(s for s, _ in IMPORT_SOURCES)}")
    repack = lambda t: run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:{t}", bundle],
                           stdout=subprocess.DEVNULL)
    repack("l1")
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(500)]
    text = b" ".join(rnd.choice(words) for _ in range(400_000))
    big = []
    for d, _, files in os.walk(rootfs):
        for n in files:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                big.append((os.path.getsize(p), p))
    big.sort(reverse=True)
    # layer 2: 3 big base files deleted, 3 replaced, 20 % of mixed files added
    for _, p in big[:3]:
        os.unlink(p)
    for size, p in big[3:6]:
        write_random(p, size, rnd)
    add_mixed(rootfs, "layer2", int(total * 0.2) - sum(s for s, _ in big[3:6]), rnd, text)
    repack("l2")
    # layer 3: a base directory deleted, big layer-2 files replaced, 20 % added
    gone = os.path.join(rootfs, "usr", "share", "perl")
    if os.path.isdir(gone):
        shutil.rmtree(gone)
    l2 = os.path.join(rootfs, "opt", "layer2", "bin")
    replaced = 0
    for n in sorted(os.listdir(l2))[:4]:
        size = os.path.getsize(os.path.join(l2, n))
        write_random(os.path.join(l2, n), size, rnd)
        replaced += size
    add_mixed(rootfs, "layer3", max(int(total * 0.2) - replaced, 4 * MiB), rnd, text)
    repack(tag)
    return bundle


def layer_sizes(layout, tag):
    """(layers, compressed bytes, uncompressed bytes) of LAYOUT:TAG (gzip layers)."""
    import json
    import zlib
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    want = [m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
    blob = lambda d: os.path.join(layout, "blobs", *d.split(":", 1))
    with open(blob(want["digest"])) as f:
        manifest = json.load(f)
    packed = unpacked = 0
    for layer in manifest["layers"]:
        packed += layer["size"]
        z = zlib.decompressobj(wbits=31)
        with open(blob(layer["digest"]), "rb") as f:
            while True:
                buf = f.read(4 * MiB)
                if not buf:
                    break
                unpacked += len(z.decompress(buf))
        unpacked += len(z.flush())
    return len(manifest["layers"]), packed, unpacked


class ImageRegistry:
    """Debian's `docker-registry serve` on a free loopback port (plain HTTP), storage and
    its JSON log in `root`; `blob_bytes()` sums the blob GET bytes it logged since
    `mark()`."""

    def __init__(self, root):
        import socket
        import urllib.request
        os.makedirs(root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cfg = os.path.join(root, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n")
        self.data = os.path.join(root, "data")
        self.log = os.path.join(root, "registry.log")
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.logf, stderr=self.logf)
        self.offset = 0
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"docker-registry did not start (see {self.log})")
                time.sleep(0.1)

    def image(self, tag):
        return f"docker://127.0.0.1:{self.port}/bench:{tag}"

    def mark(self):
        self.logf.flush()
        self.offset = os.path.getsize(self.log)

    def blob_bytes(self):
        """(bytes, requests) of blob GETs logged since mark()."""
        import json
        time.sleep(0.2)  # the line of the last response is written after it completes
        n = reqs = 0
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if (e.get("msg") == "response completed" and e.get("http.request.method") == "GET"
                        and "/blobs/" in e.get("http.request.uri", "")):
                    n += int(e.get("http.response.written", 0))
                    reqs += 1
        return n, reqs

    def warm(self):
        for d, _, files in os.walk(self.data):
            for n in files:
                read_file(os.path.join(d, n))

    def close(self):
        stop_process(self.proc)
        self.logf.close()


def summary_field(line, pattern):
    """The integer before `pattern` in a zvfs summary line (e.g. ' chunks,')."""
    import re
    m = re.search(r"(\d+)" + re.escape(pattern), line)
    return int(m.group(1)) if m else None


def import_suite(w):
    """The `import` suite: `zvfs import` of a registry image against the daemonless
    three-step path (skopeo copy + umoci unpack + zvfs pack) and against `zvfs pack` of
    the extracted tree alone, in BENCH_ROUNDS interleaved rounds; layer reuse (image B =
    A + one layer into the same store and cache); peak RSS."""
    for tool in ("docker-registry", "umoci", "skopeo", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"bench: the import suite needs {tool} (apt-get install docker-registry umoci skopeo time)")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    rnd = random.Random(11)
    t0 = time.perf_counter()
    log(f"building image A of about {IMPORT_MIB} MiB with umoci (B = A + one small layer)")
    layout = w("layout")
    bundle = build_image(rnd, IMPORT_MIB, layout, "a")
    rootfs = os.path.join(bundle, "rootfs")
    extra = os.path.join(rootfs, "etc", "bench-b")
    os.makedirs(extra)
    for i in range(20):
        write_random(os.path.join(extra, f"f{i:02d}"), 64 * 1024, rnd)
    with open(os.path.join(extra, "motd"), "w") as f:
        f.write("image B: A plus this layer\n")
    b_bytes = 20 * 64 * 1024 + 27
    run(["umoci", "repack", "--image", f"{layout}:b", bundle], stdout=subprocess.DEVNULL)
    shutil.rmtree(bundle)
    nlayers, packed, unpacked = layer_sizes(layout, "a")
    small = None
    if IMPORT_MIB > IMPORT_SMALL_MIB * 2:
        log(f"building a {IMPORT_SMALL_MIB} MiB image for the peak RSS comparison")
        small_layout = w("layout-small")
        shutil.rmtree(build_image(rnd, IMPORT_SMALL_MIB, small_layout, "small"))
        small = layer_sizes(small_layout, "small")
    reg = ImageRegistry(w("registry"))
    try:
        push = lambda lay, tag: run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
                                     f"oci:{lay}:{tag}", reg.image(tag)], stdout=subprocess.DEVNULL)
        push(layout, "a")
        push(layout, "b")
        if small:
            push(small_layout, "small")
            shutil.rmtree(small_layout)
        shutil.rmtree(layout)
        NOTES.append(f"image A: {nlayers} gzip layers, {unpacked / MiB:.0f} MiB uncompressed, {packed / MiB:.0f} MiB "
                     f"compressed; B = A + one layer of {b_bytes / MiB:.2f} MiB (21 files); built and pushed in {time.perf_counter() - t0:.0f} s "
                     f"(base layer copied from this machine's /usr)")
        res = {k: [] for k in ("import", "reuse", "skopeo", "umoci", "pack", "three", "small")}
        cpus = {k: [None] * rounds for k in ("import", "reuse", "pack", "three")}
        for r in range(rounds):
            d = lambda *p: w(f"round{r}", *p)
            os.makedirs(d())

            def do_import():
                reg.warm()
                os.sync()
                reg.mark()
                secs, rss, out, cpus["import"][r] = measured([ZVFS, "import", reg.image("a"), "-m", d("a.fl"),
                                           "-s", f"dir://{d('store')}", "-c", d("cache")])
                got = reg.blob_bytes()
                res["import"].append((secs, rss, out.strip(), got))
                log(f"round {r}: import A {secs:.2f} s, {rss:.1f} MiB, registry {got[0] / MiB:.0f} MiB")
                os.sync()
                reg.mark()
                secs, rss, out, cpus["reuse"][r] = measured([ZVFS, "import", reg.image("b"), "-m", d("b.fl"),
                                           "-s", f"dir://{d('store')}", "-c", d("cache")])
                got = reg.blob_bytes()
                res["reuse"].append((secs, rss, out.strip(), got))
                log(f"round {r}: import B (reuse) {secs:.2f} s, registry {got[0] / MiB:.1f} MiB")

            def do_three():
                reg.warm()
                os.sync()
                reg.mark()
                s1, m1, _, c1 = measured(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                                      reg.image("a"), f"oci:{d('oci')}:a"])
                got = reg.blob_bytes()
                os.sync()
                s2, m2, _, c2 = measured(["umoci", "unpack", "--image", f"{d('oci')}:a", d("bundle")])
                os.sync()
                s3, m3, out, c3 = measured([ZVFS, "pack", "-m", d("x.fl"), "-s", f"dir://{d('store2')}",
                                        d("bundle", "rootfs")])
                res["skopeo"].append((s1, m1, got))
                res["umoci"].append((s2, m2))
                res["three"].append((s1 + s2 + s3, s3, m3, out.strip()))
                cpus["three"][r] = (c1, c2, c3)
                log(f"round {r}: skopeo {s1:.2f} s + umoci unpack {s2:.2f} s + pack {s3:.2f} s = {s1 + s2 + s3:.2f} s")
                # zvfs pack of the extracted tree alone: page cache warm, a fresh store
                read_file_tree(d("bundle", "rootfs"))
                os.sync()
                secs, rss, out, cpus["pack"][r] = measured([ZVFS, "pack", "-m", d("y.fl"), "-s", f"dir://{d('store3')}",
                                           d("bundle", "rootfs")])
                res["pack"].append((secs, rss, out.strip()))
                log(f"round {r}: pack alone {secs:.2f} s, {rss:.1f} MiB")

            for step in ((do_import, do_three) if r % 2 == 0 else (do_three, do_import)):
                step()
            if small:
                os.sync()
                secs, rss, out, _ = measured([ZVFS, "import", reg.image("small"), "-m", d("s.fl"),
                                           "-s", f"dir://{d('store4')}", "-c", d("cache4")])
                res["small"].append((secs, rss, out.strip()))
            shutil.rmtree(d())
    finally:
        reg.close()

    imp = min(res["import"])
    three = min(res["three"])
    pack = min(res["pack"])
    reuse = min(res["reuse"])
    per = lambda xs: ", ".join(f"{x[0]:.2f}" for x in xs)
    row(f"`zvfs import` of image A ({unpacked / MiB:.0f} MiB, {nlayers} layers) vs skopeo copy + umoci unpack "
        "+ zvfs pack", imp[0], "s", "< 1 x three-step", imp[0] < three[0], three[0], imp[0] / three[0])
    row("`zvfs import` of image A vs `zvfs pack` of the extracted tree (page-cache-warm)", imp[0], "s",
        "<= 1 x pack", imp[0] <= pack[0], pack[0], imp[0] / pack[0])
    row("`zvfs import` throughput (uncompressed layer bytes / s)", rate(unpacked, imp[0]), "MB/s", "—", None)
    layers_b = summary_field(reuse[2], " layers (") or 0
    reused_b = summary_field(reuse[2], " reused)")
    row(f"`zvfs import` of image B (A + 1 layer) into A's store and cache: layers reused", reused_b, "",
        f"{layers_b - 1} of {layers_b}", reused_b == layers_b - 1)
    row("`zvfs import` of image B after A (the layer index)", reuse[0], "s", "< import of A", reuse[0] < imp[0],
        imp[0], reuse[0] / imp[0])
    row("registry blob bytes read by the import of B / by the import of A", reuse[3][0] / MiB, "MiB", "—", None,
        imp[3][0] / MiB, reuse[3][0] / max(imp[3][0], 1))
    rss_a = max(x[1] for x in res["import"])
    row(f"peak RSS of `zvfs import`, image A (max of {rounds}; native: `zvfs pack` of the tree)", rss_a, "MiB", "—", None,
        max(x[2] for x in res["three"]), rss_a / max(x[2] for x in res["three"]))
    if small:
        rss_s = max(x[1] for x in res["small"])
        entries = lambda out: summary_field(out, " entries,")
        row(f"peak RSS of `zvfs import`: image A ({entries(imp[2])} entries) against a {small[2] / MiB:.0f} MiB "
            f"image ({entries(res['small'][0][2])} entries)", rss_a, "MiB", "—", None, rss_s, rss_a / rss_s)
        # Memory follows the entry count (the tree's metadata), not the bytes: the same
        # cost per entry above pack's fixed buffers for both images.
        base = max(x[2] for x in res["three"])
        per_a = (rss_a - base) / max(entries(imp[2]) or 1, 1) * 1024
        per_s = (rss_s - base) / max(entries(res['small'][0][2]) or 1, 1) * 1024
        row("peak RSS of `zvfs import` above `zvfs pack`'s, per entry: image A against the small image",
            per_a, "KiB", "<= 1.5 x (bytes do not matter)", per_a <= 1.5 * max(per_s, 0.05), per_s,
            per_a / max(per_s, 0.05))
    NOTES.append(f"import A (best of {rounds}: {per(res['import'])} s): {imp[2].splitlines()[0]}")
    NOTES.append("ratios per round, import / three-step: "
                 + ", ".join(f"{i[0] / t[0]:.2f}" for i, t in zip(res["import"], res["three"]))
                 + "; import / pack alone: "
                 + ", ".join(f"{i[0] / p[0]:.2f}" for i, p in zip(res["import"], res["pack"])))
    NOTES.append(f"import B (best of {rounds}: {per(res['reuse'])} s): " + " / ".join(reuse[2].splitlines()))
    NOTES.append(f"three-step, per round (skopeo copy + umoci unpack + zvfs pack = total): "
                 + ", ".join(f"{a[0]:.2f} + {b[0]:.2f} + {c[1]:.2f} = {c[0]:.2f} s"
                             for a, b, c in zip(res["skopeo"], res["umoci"], res["three"]))
                 + f"; peak RSS skopeo {max(x[1] for x in res['skopeo']):.0f} MiB, umoci "
                 f"{max(x[1] for x in res['umoci']):.0f} MiB, zvfs pack {max(x[2] for x in res['three']):.1f} MiB")
    NOTES.append(f"pack of the extracted tree alone (best of {rounds}: {per(res['pack'])} s): {pack[2]}")
    imp_chunks, pack_chunks = summary_field(imp[2], " unique chunks uploaded"), summary_field(pack[2], " unique chunks uploaded")
    NOTES.append(f"unique chunks uploaded: import {imp_chunks}, pack of the extracted tree {pack_chunks}"
                 + (" (the same)" if imp_chunks == pack_chunks else
                    " (import adds /.startup.toml)" if imp_chunks == pack_chunks + 1 else ""))
    NOTES.append(f"registry blob bytes read: import of A {imp[3][0] / MiB:.0f} MiB in {imp[3][1]} GETs "
                 f"(compressed image {packed / MiB:.0f} MiB: each layer read up to twice), skopeo copy "
                 f"{res['skopeo'][0][2][0] / MiB:.0f} MiB, import of B {reuse[3][0] / MiB:.1f} MiB in {reuse[3][1]} GETs")
    if small:
        NOTES.append(f"peak RSS of `zvfs import` per round: image A " + ", ".join(f"{x[1]:.1f}" for x in res["import"])
                     + f" MiB; the {small[2] / MiB:.0f} MiB image " + ", ".join(f"{x[1]:.1f}" for x in res["small"]) + " MiB")
    NOTES.append("CPU seconds (user + system) per round: import A " + ", ".join(f"{c:.2f}" for c in cpus["import"])
                 + "; three-step (skopeo + umoci + pack) " + ", ".join(f"{a:.2f} + {b:.2f} + {c:.2f}" for a, b, c in cpus["three"])
                 + "; pack alone " + ", ".join(f"{c:.2f}" for c in cpus["pack"])
                 + "; import B " + ", ".join(f"{c:.2f}" for c in cpus["reuse"]))
    NOTES.append(f"page cache: registry blobs read into it before each figure; trees and stores written to it "
                 "(nothing synced inside a timing, `sync` before each step); fresh store and cache for each "
                 f"figure but B's; {rounds} rounds, interleaved (the first figure alternates), best of the rounds")


# ---------------------------------------------------------------- wan suite

WAN_PROFILES = os.environ.get("BENCH_WAN_PROFILES", "10/100,25/20,75/10")
WAN_ROWS = []
HERE = os.path.dirname(os.path.abspath(__file__))


def copy_path(p, root):
    """Copies `p` (file or symlink, following the symlink chain) into root at its path."""
    while True:
        q = os.path.join(root, p.lstrip("/"))
        os.makedirs(os.path.dirname(q), exist_ok=True)
        if os.path.lexists(q):
            return
        if os.path.islink(p):
            t = os.readlink(p)
            os.symlink(t, q)
            p = os.path.normpath(os.path.join(os.path.dirname(p), t))
            continue
        shutil.copy2(p, q)
        return


def ldd_libs(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1 and parts[parts.index("=>") + 1].startswith("/"):
            libs.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


def host_usr_links(root):
    for d in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink("/" + d):
            os.makedirs(os.path.join(root, os.readlink("/" + d)), exist_ok=True)
            os.symlink(os.readlink("/" + d), os.path.join(root, d))


def tree_bytes(root):
    return int(subprocess.run(["du", "-sb", root], capture_output=True, text=True).stdout.split()[0])


def pad(root, total, sources):
    for src in sources:
        have = tree_bytes(root)
        if have >= total:
            break
        copy_budget(src, os.path.join(root, src.lstrip("/")), total - have)


def python_tree(root, mib):
    os.makedirs(root)
    host_usr_links(root)
    py = "/usr/bin/python3.11"
    copy_path(py, root)
    shutil.copy2(py, os.path.join(root, "usr/bin/python3"))
    libs = set(ldd_libs(py))
    dyn = "/usr/lib/python3.11/lib-dynload"
    for n in os.listdir(dyn):
        if n.endswith(".so"):
            libs.update(ldd_libs(os.path.join(dyn, n)))
    for lib in sorted(libs):
        copy_path(lib, root)
    shutil.copytree("/usr/lib/python3.11", os.path.join(root, "usr/lib/python3.11"), symlinks=True,
                    dirs_exist_ok=True)
    pad(root, mib * MiB, ["/usr/lib/x86_64-linux-gnu", "/usr/share"])


def busybox_tree(root, mib):
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy2("/bin/busybox", os.path.join(root, "bin/busybox"))
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc/motd"), "w") as f:
        f.write("".join(f"line {i} of the benchmark motd\n" for i in range(200)))
    with open(os.path.join(root, "script.sh"), "w") as f:
        f.write("B=/bin/busybox\n$B ls -l / /etc | $B wc -l\n$B cat /etc/motd | $B wc -c\n"
                "$B grep -c 'line 1' /etc/motd\n$B wc -l /etc/motd\n$B sed -n 's/motd/MOTD/p' /etc/motd | $B wc -l\n")
    pad(root, mib * MiB, ["/usr/share", "/usr/lib/x86_64-linux-gnu"])


def random_tree(root, mib, rnd):
    os.makedirs(os.path.join(root, "data"))
    write_random(os.path.join(root, "data/small.bin"), 2 * MiB, rnd)
    left, i = mib * MiB - 2 * MiB, 0
    while left > 0:
        size = min(left, rnd.randint(64, 256) * MiB)
        write_random(os.path.join(root, "data", f"big{i:02d}.bin"), size, rnd)
        left -= size
        i += 1


class Proc:
    """A background process; `wait_port` waits for a TCP port to accept."""

    def __init__(self, args, **kw):
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)

    def close(self):
        stop_process(self.p)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    import socket
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.p.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class WanProxy(Proc):
    def __init__(self, w, name, target, delay_ms, mbit):
        import json
        self.json = json
        pf, self.stats = w(f"{name}.port"), w(f"{name}.stats")
        for f in (pf, self.stats):
            if os.path.exists(f):
                os.unlink(f)
        super().__init__([sys.executable, os.path.join(HERE, "wanproxy.py"), "--listen", "127.0.0.1:0",
                          "--to", target, "--delay-ms", str(delay_ms), "--rate-mbit", str(mbit),
                          "--port-file", pf, "--stats", self.stats])
        deadline = time.time() + 10
        while not os.path.exists(pf):
            if time.time() > deadline or self.p.poll() is not None:
                raise RuntimeError("wanproxy.py did not start")
            time.sleep(0.02)
        self.port = int(open(pf).read())

    def down(self):
        time.sleep(0.2)  # stats are written every 50 ms
        with open(self.stats) as f:
            return self.json.load(f)["to_client"]


def zmount(fl, cache, mnt, log_path, extra=()):
    os.makedirs(mnt, exist_ok=True)
    run([ZVFS, "mount", "-d", "--new-daemon", "-m", fl, "-c", cache, "-l", log_path, *extra, mnt])


def zumount(mnt):
    subprocess.run([ZVFS, "umount", mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["umount", "-l", mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def workload(kind, root):
    if kind == "python":
        args = ["chroot", root, "/usr/bin/python3", "-c",
                "import json, sqlite3, email, http.client, xml.dom.minidom, decimal, asyncio"]
        return lambda: run(args, stdout=subprocess.DEVNULL)
    if kind == "busybox":
        return lambda: run(["chroot", root, "/bin/busybox", "sh", "/script.sh"], stdout=subprocess.DEVNULL)
    return lambda: read_file(os.path.join(root, "data/small.bin"))


def wait_prefetch(mnt, limit=120):
    """Wait until the mount's prefetch (if any) ended, as `zvfs mounts --stats` says."""
    end = time.time() + limit
    while time.time() < end:
        out = subprocess.run([ZVFS, "mounts", "--stats", "--json", mnt], capture_output=True, text=True)
        try:
            st = json.loads(out.stdout)[0]["stats"]
            p = st["prefetch"]
            if p["finished"] or p["planned"] == 0:
                return
        except (ValueError, KeyError, IndexError, TypeError):
            return
        time.sleep(0.1)


def wan_suite(w):
    """The `wan` suite: cold and warm workloads on mounts whose store is behind a slow
    link (scripts/wanproxy.py), against the floor (bytes needed / bandwidth + one round
    trip) and the full download of the flist."""
    for tool in ("redis-server", "chroot", "/bin/busybox", "ldd"):
        if not shutil.which(tool):
            sys.exit(f"bench: the wan suite needs {tool} (apt-get install redis-server busybox-static)")
    profiles = []
    for p in WAN_PROFILES.split(","):
        d, r = p.split("/")
        profiles.append((float(d), float(r)))
    mount_help = subprocess.run([ZVFS, "mount", "--help"], capture_output=True, text=True).stdout
    trace = "--record-trace" in mount_help
    if not trace:
        NOTES.append("trace mode skipped: this zvfs has no `zvfs mount --record-trace`")
    NOTES.append("redis-server on loopback stands in for 0-db (no 0-db binary can be installed here); "
                 "the HTTP store is `python3 -m http.server -p HTTP/1.1` over a sharded dir store")
    rnd = random.Random(19)
    sizes = {"python": 200 if QUICK else 735, "busybox": 200, "random": 512 if QUICK else 1024}
    procs = []
    try:
        rport = free_port()
        redis = Proc(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", w()])
        procs.append(redis)
        wait_port(rport, redis)
        images = {}
        for kind in ("python", "busybox", "random"):
            root = w(f"{kind}-tree")
            log(f"building the {kind} tree (~{sizes[kind]} MiB)")
            if kind == "python":
                python_tree(root, sizes[kind])
            elif kind == "busybox":
                busybox_tree(root, sizes[kind])
            else:
                random_tree(root, sizes[kind], rnd)
            if kind != "random":
                workload(kind, root)()  # works on the plain tree
            store = w(f"{kind}-store")
            fl = w(f"{kind}.fl")
            run([ZVFS, "pack", "-m", fl, "-s", f"redis://127.0.0.1:{rport}", "-s",
                 f"dir://{store}?layout=sharded", root], stdout=subprocess.DEVNULL)
            stored = tree_bytes(store)
            drop_caches()
            native = timed(workload(kind, root))
            images[kind] = (root, fl, stored, native)
            NOTES.append(f"{kind}: tree {tree_bytes(root) / MiB:.0f} MiB, stored objects {stored / MiB:.0f} MiB, "
                         f"native cold workload {native:.3f} s")
        hport = free_port()
        http = Proc([sys.executable, "-m", "http.server", "-p", "HTTP/1.1", "-b", "127.0.0.1", str(hport)],
                    cwd=w())
        procs.append(http)
        wait_port(hport, http)
        trace_fls = {}
        if trace:
            for kind, (root, fl, _, _) in images.items():
                t = w(f"{kind}.trace")
                mnt = w("mnt-trace")
                zmount(fl, w(f"trace-cache-{kind}"), mnt, w("mount.log"),
                       ["-s", f"redis://127.0.0.1:{rport}", "--record-trace", t])
                workload(kind, mnt)()
                zumount(mnt)
                tfl = w(f"{kind}-trace.fl")
                shutil.copyfile(fl, tfl)
                run([ZVFS, "prefetch", "add", "-m", tfl, t], stdout=subprocess.DEVNULL)
                trace_fls[kind] = tfl
        n = 0
        for delay, mbit in profiles:
            prof = f"{delay:g} ms / {mbit:g} Mbit"
            bw = mbit * 1e6 / 8
            proxies = {"redis": WanProxy(w, "p-redis", f"127.0.0.1:{rport}", delay, mbit),
                       "http": WanProxy(w, "p-http", f"127.0.0.1:{hport}", delay, mbit)}
            procs.extend(proxies.values())
            for kind, (root, fl, stored, native) in images.items():
                for sname, px in proxies.items():
                    url = (f"redis://127.0.0.1:{px.port}" if sname == "redis"
                           else f"http://127.0.0.1:{px.port}/{kind}-store")
                    modes = [("no trace", fl)] + ([("trace", trace_fls[kind])] if trace else [])
                    need = None
                    for mode, mfl in modes:
                        n += 1
                        mnt = w("mnt")
                        cache = w(f"cache{n}")
                        # Cold: from the mount (a prefetch starts there) to the workload's
                        # end; bytes: everything the link carried for this mount, the
                        # prefetch's included, once it ended.
                        drop_caches()
                        b0 = px.down()
                        t0 = time.perf_counter()
                        zmount(mfl, cache, mnt, w("mount.log"), ["-s", url])
                        try:
                            workload(kind, mnt)()
                            cold = time.perf_counter() - t0
                            wait_prefetch(mnt)
                            got = px.down() - b0
                            drop_caches()
                            warm = timed(workload(kind, mnt))
                        finally:
                            zumount(mnt)
                        shutil.rmtree(cache, ignore_errors=True)
                        # the floor: the bytes the workload needs (what it moved without a
                        # trace) over the bandwidth, plus one round trip
                        need = got if need is None else need
                        floor = need / bw + 2 * delay / 1000
                        full = stored / bw
                        WAN_ROWS.append((prof, kind, sname, mode, cold, got / MiB, floor, cold / floor, warm, full,
                                         native))
                        log(f"{prof} {kind} {sname} {mode}: cold {cold:.2f} s, {got / MiB:.1f} MiB, "
                            f"floor {floor:.2f} s ({cold / floor:.2f}x), warm {warm:.3f} s, full {full:.0f} s")
            for p in proxies.values():
                p.close()
        wan_fat(w, images["random"][1], rport)
    finally:
        for p in procs:
            p.close()


WAN_FAT = os.environ.get("BENCH_WAN_FAT", "40/400")
WAN_FAT_ROWS = []


def wan_fat(w, fl, rport):
    """A sequential read of 64 MiB of one file of the random image over a long fat link
    (BENCH_WAN_FAT, default 40 ms / 400 Mbit: a bandwidth-delay product of 8 chunks) from
    redis, with the fetches in flight sized from the measured link (the default) against
    `--max-inflight 4` (the fixed read-ahead pool before), interleaved, 2 rounds each."""
    delay, mbit = (float(x) for x in WAN_FAT.split("/"))
    px = WanProxy(w, "p-fat", f"127.0.0.1:{rport}", delay, mbit)
    try:
        length = 64 * MiB
        floor = length / (mbit * 1e6 / 8) + 2 * delay / 1000
        res = {"link-sized (default)": [], "--max-inflight 4": []}
        for r in range(2):
            order = list(res) if r % 2 == 0 else list(reversed(res))
            for mode in order:
                mnt, cache = w("mnt-fat"), w(f"cache-fat-{r}-{len(res[mode])}")
                extra = ["-s", f"redis://127.0.0.1:{px.port}"]
                if mode != "link-sized (default)":
                    extra += ["--max-inflight", "4"]
                drop_caches()
                zmount(fl, cache, mnt, w("mount.log"), extra)
                try:
                    t0 = time.perf_counter()
                    read_file(os.path.join(mnt, "data/big00.bin"), 0, length)
                    secs = time.perf_counter() - t0
                    out = subprocess.run([ZVFS, "mounts", "--stats", "--json", mnt], capture_output=True, text=True)
                    try:
                        link = json.loads(out.stdout)[0]["stats"]["link"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        link = {}
                finally:
                    zumount(mnt)
                shutil.rmtree(cache, ignore_errors=True)
                res[mode].append((secs, link.get("peak"), link.get("target")))
                log(f"long fat link {WAN_FAT}: {mode}: {secs:.2f} s, peak in flight {link.get('peak')}")
        for mode, v in res.items():
            best = min(v)
            WAN_FAT_ROWS.append((f"{delay:g} ms / {mbit:g} Mbit", mode, best[0], length / best[0] / 1e6 * 8,
                                 floor, best[0] / floor, best[1], best[2]))
    finally:
        px.close()


def print_wan_fat():
    if not WAN_FAT_ROWS:
        return
    print("| link | fetches in flight | 64 MiB sequential read s | Mbit/s | floor s | read/floor | "
          "most in flight | kept in flight at the end |")
    print("|---|---|---|---|---|---|---|---|")
    for prof, mode, secs, rate, floor, ratio, peak, target in WAN_FAT_ROWS:
        print(f"| {prof} | {mode} | {secs:.2f} | {rate:.0f} | {floor:.2f} | {ratio:.2f} | {peak} | {target} |")
    print()


def print_wan():
    if not WAN_ROWS:
        return
    print("| profile | workload | store | mode | cold s | bytes MiB | floor s | cold/floor | target | "
          "warm s | full download s | native cold s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for prof, kind, store, mode, cold, mib, floor, ratio, warm, full, native in WAN_ROWS:
        lim = 1.3 if mode == "trace" else 2.0
        print(f"| {prof} | {kind} | {store} | {mode} | {cold:.2f} | {mib:.1f} | {floor:.2f} | {ratio:.2f} | "
              f"<= {lim} {'yes' if ratio <= lim else 'NO'} | {warm:.3f} | {full:.0f} | {native:.3f} |")
    print()


RESTART_ROWS = []


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def restart_suite(w):
    """The `restart` suite: readers of a mount while its worker is SIGKILLed every 300 ms.
    Figures: the time from each kill to the first answer to a read asked after it, and the longest
    stall a reader saw, against the same readers' longest read without kills (measured
    just before, in the same run)."""
    rnd = random.Random(23)
    src = w("restart-src")
    os.makedirs(src)
    names = []
    for i in range(32):
        n = f"f{i}"
        write_random(os.path.join(src, n), 1 << 20, rnd)
        names.append(n)
    fl, store, cache, mnt = w("restart.fl"), w("restart-store"), w("restart-cache"), w("restart-mnt")
    run([ZVFS, "pack", "-m", fl, "-s", f"dir://{store}", src], stdout=subprocess.DEVNULL)
    zmount(fl, cache, mnt, w("restart.log"))
    try:
        sup = None
        for line in open("/proc/self/mountinfo"):
            f = line.split()
            if f[4] == mnt:
                sup = int(f[f.index("-") + 2])
        if sup is None or not children(sup):
            NOTES.append("restart suite skipped: this zvfs serves without a supervisor and a worker")
            return
        reads = []  # (start, end, ok)
        lock = threading.Lock()
        stop = threading.Event()

        def reader(seed):
            r = random.Random(seed)
            while not stop.is_set():
                path = os.path.join(mnt, r.choice(names))
                t0 = time.monotonic()
                ok = True
                try:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        os.pread(fd, 4096, r.randrange(0, (1 << 20) - 4096))
                    finally:
                        os.close(fd)
                except OSError:
                    ok = False
                with lock:
                    reads.append((t0, time.monotonic(), ok))

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(3)
        quiet_end = time.monotonic()
        kills = []
        for _ in range(20):
            kids = children(sup)
            if kids:
                t = time.monotonic()
                os.kill(kids[0], signal.SIGKILL)
                kills.append(t)
            time.sleep(0.3)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(30)
        with lock:
            rs = list(reads)
        quiet = [e - s for s, e, _ in rs if e <= quiet_end]
        during = [e - s for s, e, _ in rs if s >= quiet_end]
        failed = sum(1 for _, _, ok in rs if not ok)
        first = []
        for k in kills:
            # the first read answered among those asked after the kill
            after = [e for s0, e, ok in rs if s0 > k and ok]
            if after:
                first.append(min(after) - k)
        RESTART_ROWS.append((len(kills), len(rs), failed, statistics.median(first) * 1000,
                             max(first) * 1000, max(quiet) * 1000, max(during) * 1000))
    finally:
        zumount(mnt)


def print_restart():
    if not RESTART_ROWS:
        return
    print("| worker kills | reads | failed reads | kill -> first answer, median ms | max ms | "
          "longest read without kills ms | longest stall with kills ms |")
    print("|---|---|---|---|---|---|---|")
    for k, n, failed, med, mx, quiet, during in RESTART_ROWS:
        print(f"| {k} | {n} | {failed} | {med:.0f} | {mx:.0f} | {quiet:.0f} | {during:.0f} |")
    print()


def read_file_tree(root):
    """Reads every regular file under root (into the page cache)."""
    for d, _, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                read_file(p)


COMPARE = []


def compare(w, rnd, mounts):
    """The `compare` suite: the main figures of two binaries (ZVFS_BASELINE, then ZVFS),
    measured in turns within each round (the first to go alternates), so both see the
    same host; each figure is the median of the rounds."""
    global ZVFS
    base = os.environ.get("ZVFS_BASELINE")
    if not base:
        sys.exit("bench: compare needs ZVFS_BASELINE=/path/to/the/other/zvfs")
    bins = [("baseline", os.path.abspath(base)), ("zvfs", ZVFS)]
    for _, b in bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b} is not an executable")
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    size = FILE_MIB * MiB
    log(f"generating a {FILE_MIB} MiB random file")
    os.makedirs(w("file"))
    bigfile = w("file", "random.bin")
    write_random(bigfile, size, rnd)
    log(f"generating a metadata tree of {META_ENTRIES} entries ({BIGDIR} in one directory)")
    make_meta_tree(w("meta"), META_ENTRIES, BIGDIR)
    figs = {label: {} for label, _ in bins}
    names = []

    def add(label, name, unit, value):
        if (name, unit) not in names:
            names.append((name, unit))
        figs[label].setdefault(name, []).append(value)
        log(f"{label}: {name}: {fmt(value)} {unit}")

    for r in range(rounds):
        for label, binary in (bins if r % 2 == 0 else bins[::-1]):
            ZVFS = binary
            d = lambda *p: w(f"{label}-{r}", *p)
            os.makedirs(d())
            read_file(bigfile)
            secs = timed(lambda: run([ZVFS, "pack", "-m", d("file.fl"), "-s", f"dir://{d('store')}", w("file")],
                                     stdout=subprocess.DEVNULL))
            add(label, "pack, incompressible data (page-cache-warm source)", "MB/s", rate(size, secs))
            m = Mount(d("file.fl"), d("cache"), d("mnt"), d("mount.log"), ["--cache-size", f"{FILE_MIB * 2}M"])
            mounts.append(m)
            f = os.path.join(m.mnt, "random.bin")
            drop_caches()
            add(label, "cold read, one reader", "MB/s", rate(size, timed(lambda: read_file(f))))
            drop_caches()
            add(label, "chunk-cache-warm read (page cache dropped)", "MB/s", rate(size, timed(lambda: read_file(f))))
            read_file(f)
            add(label, "page-cache-warm reread (best of 3)", "MB/s",
                max(rate(size, timed(lambda: read_file(f))) for _ in range(3)))
            m.close()
            shutil.rmtree(d("cache"))
            m = Mount(d("file.fl"), d("cache"), d("mnt"), d("mount.log"))
            mounts.append(m)
            drop_caches()
            part = size // 8
            threads = [threading.Thread(target=read_file, args=(f, i * part, part)) for i in range(8)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            add(label, "daemon peak RSS, 8 concurrent cold readers", "MiB", m.hwm_kib() / 1024)
            m.close()
            run([ZVFS, "pack", "-m", d("meta.fl"), "-s", f"dir://{d('meta-store')}", w("meta")],
                stdout=subprocess.DEVNULL)
            readies = []
            for _ in range(5):
                m = Mount(d("meta.fl"), d("meta-cache"), d("mnt"), d("mount.log"))
                mounts.append(m)
                readies.append(m.ready)
                m.close()
            add(label, f"mount-ready latency, {META_ENTRIES}-entry flist (median of 5)", "ms",
                statistics.median(readies) * 1000)
            shutil.rmtree(d())
    ZVFS = bins[1][1]
    for name, unit in names:
        old, new = (statistics.median(figs[label][name]) for label, _ in bins)
        COMPARE.append((name, unit, old, new, figs["baseline"][name], figs["zvfs"][name]))
    NOTES.append(f"baseline: {bins[0][1]}; zvfs: {bins[1][1]}; {rounds} rounds, each figure the median "
                 "of the rounds (per round values: baseline / zvfs)")


def print_compare():
    print("| figure | baseline | zvfs | zvfs/baseline | rounds (baseline / zvfs) |")
    print("|---|---|---|---|---|")
    for name, unit, old, new, olds, news in COMPARE:
        per = ", ".join(f"{fmt(a)} / {fmt(b)}" for a, b in zip(olds, news))
        print(f"| {name} | {fmt(old)} {unit} | {fmt(new)} {unit} | {new / max(old, 1e-9):.2f} | {per} |")
    print()


def main():
    global WORK
    if os.geteuid() != 0:
        sys.exit("bench: run as root (drop_caches, FUSE mounts)")
    base = os.environ.get("BENCH_DIR", "/var/tmp")
    WORK = tempfile.mkdtemp(prefix="zvfs-bench.", dir=base)
    mounts = []
    server = None
    started = time.time()
    steal0 = steal_ticks()
    try:
        header = machine()
        rnd = random.Random(9)
        w = lambda *p: os.path.join(WORK, *p)
        footer = lambda: (f"run took {time.time() - started:.0f} s; load average at end: "
                          f"{' '.join(open('/proc/loadavg').read().split()[:3])}; CPU time stolen by the "
                          f"host during the run: {stolen_percent(steal0):.0f} %")
        if PARTS and PARTS != ["all"]:
            for part in PARTS:
                if part == "bigdir":
                    bigdir(w)
                elif part == "identity":
                    identity(w, rnd)
                elif part == "compare":
                    compare(w, rnd, mounts)
                elif part == "import":
                    import_suite(w)
                elif part == "wan":
                    wan_suite(w)
                elif part == "restart":
                    restart_suite(w)
                elif part == "all":
                    sys.exit("bench: `all` runs alone (it includes bigdir and identity)")
            print()
            print_table(header + "\n" + footer())
            return

        # --- corpora
        tree = os.environ.get("BENCH_SRC")
        two_mib = None
        if not tree:
            log(f"generating a rootfs-like tree of about {SIZE_MIB} MiB")
            tree = w("tree")
            two_mib = make_tree(tree, SIZE_MIB, rnd)
        log(f"generating a {FILE_MIB} MiB random file")
        os.makedirs(w("file"))
        bigfile = w("file", "random.bin")
        write_random(bigfile, FILE_MIB * MiB, rnd)
        log(f"generating a metadata tree of {META_ENTRIES} entries ({BIGDIR} in one directory)")
        make_meta_tree(w("meta"), META_ENTRIES, BIGDIR)

        # --- pack (incompressible): the big file, source in the page cache; best of
        # PACK_RUNS into a fresh store each time, as the native copy it is compared with
        def pack_once(i):
            store = w(f"store{i}")
            read_file(bigfile)
            cpu0 = child_cpu()
            secs = timed(lambda: run([ZVFS, "pack", "-m", w("file.fl"), "-s", f"dir://{store}", w("file")],
                                     stdout=subprocess.DEVNULL))
            return secs, child_cpu() - cpu0, store

        def copy_once():
            read_file(bigfile)
            secs = timed(lambda: (shutil.copyfile(bigfile, w("copy.bin")), os.sync()))
            os.unlink(w("copy.bin"))
            return secs

        packs, copies = [], []
        for i in range(PACK_RUNS):
            packs.append(pack_once(i))
            copies.append(copy_once())
        secs, pack_cpu, _ = min(packs)
        for _, _, other in packs[:-1]:
            shutil.rmtree(other)  # file.fl names the last run's store
        pack_rate = rate(FILE_MIB * MiB, secs)
        NOTES.append(f"pack used {pack_cpu:.2f} CPU-s for {FILE_MIB} MiB ({pack_cpu / FILE_MIB * 1024:.2f} CPU-s/GiB): "
                     f"{rate(FILE_MIB * MiB, pack_cpu / CORES):.0f} MB/s if it had all {CORES} cores to itself; "
                     f"best of {PACK_RUNS} runs: " + ", ".join(f"{rate(FILE_MIB * MiB, p[0]):.0f}" for p in packs) + " MB/s")
        native_copy = rate(FILE_MIB * MiB, min(copies))
        row("pack, incompressible data (1 file, page-cache-warm source, synced)", pack_rate, "MB/s",
            ">= 250 MB/s", pack_rate >= 250, native_copy, pack_rate / native_copy)

        # pack of the tree (informative)
        tree_bytes = int(subprocess.run(["du", "-sb", tree], capture_output=True, text=True).stdout.split()[0])
        tree_store = w("tree-store")
        out = subprocess.run([ZVFS, "pack", "-m", w("tree.fl"), "-s", f"dir://{tree_store}", tree],
                             capture_output=True, text=True, check=True).stdout
        NOTES.append("pack of the tree: " + out.strip().split(": ", 1)[-1])

        # --- reads of the big file through a mount (native figures measured just before)
        def native_cold_read():
            drop_caches()
            return rate(FILE_MIB * MiB, timed(lambda: read_file(bigfile)))

        cache = w("cache")
        m = Mount(w("file.fl"), cache, w("mnt"), w("mount.log"), ["--cache-size", f"{FILE_MIB * 2}M"])
        mounts.append(m)
        f = os.path.join(m.mnt, "random.bin")
        native_cold = native_cold_read()
        drop_caches()
        cpu0 = proc_cpu(m.pid)
        cold = rate(FILE_MIB * MiB, timed(lambda: read_file(f)))
        cold_cpu = proc_cpu(m.pid) - cpu0
        row("cold read, one reader (empty chunk cache, page cache dropped)", cold, "MB/s", ">= 300 MB/s",
            cold >= 300, native_cold, cold / native_cold)
        NOTES.append(f"cold read: the daemon used {cold_cpu:.2f} CPU-s for {FILE_MIB} MiB "
                     f"({cold_cpu / FILE_MIB * 1024:.2f} CPU-s/GiB): {rate(FILE_MIB * MiB, cold_cpu / CORES):.0f} MB/s "
                     f"if it had all {CORES} cores to itself")
        native_cold = max(native_cold, native_cold_read())

        def cache_warm_read():
            drop_caches()
            return rate(FILE_MIB * MiB, timed(lambda: read_file(f)))

        # Native and zvfs reads interleaved in pairs, so both of a pair see the same host;
        # the figure is the pair with the median ratio (robust to the host's drift).
        cpu0 = proc_cpu(m.pid)
        rounds = [(native_cold_read(), cache_warm_read()) for _ in range(WARM_ROUNDS)]
        cwarm_cpu = (proc_cpu(m.pid) - cpu0) / WARM_ROUNDS / (FILE_MIB / 1024)
        warm_native, cwarm = sorted(rounds, key=lambda r: r[1] / r[0])[WARM_ROUNDS // 2]
        native_cold = max([native_cold] + [r[0] for r in rounds])
        NOTES.append(f"chunk-cache-warm read: the daemon used {cwarm_cpu:.2f} CPU-s per GiB read; pairs "
                     "(native / zvfs, MB/s): "
                     + ", ".join(f"{a:.0f} / {b:.0f} ({b / a:.2f})" for a, b in rounds))
        row(f"chunk-cache-warm read (page cache dropped; median of {WARM_ROUNDS} pairs)", cwarm, "MB/s",
            ">= 0.8 x native cold read", cwarm >= 0.8 * warm_native, warm_native, cwarm / warm_native)
        read_file(bigfile)
        native_warm = max(rate(FILE_MIB * MiB, timed(lambda: read_file(bigfile))) for _ in range(3))
        pwarm = max(rate(FILE_MIB * MiB, timed(lambda: read_file(f))) for _ in range(3))
        row("page-cache-warm reread", pwarm, "MB/s", ">= 0.5 x native warm read",
            pwarm >= 0.5 * native_warm, native_warm, pwarm / native_warm)
        m.close()
        # a new daemon on the same cache (cache files checked once by the new process)
        m = Mount(w("file.fl"), cache, w("mnt"), w("mount.log"), ["--cache-size", f"{FILE_MIB * 2}M"])
        mounts.append(m)
        drop_caches()
        restart = rate(FILE_MIB * MiB, timed(lambda: read_file(f)))
        NOTES.append(f"chunk-cache-warm read by a new daemon (each cache file checked once): {restart:.0f} MB/s")
        m.close()

        # --- 8 concurrent cold readers: peak RSS
        shutil.rmtree(cache)
        m = Mount(w("file.fl"), cache, w("mnt"), w("mount.log"))
        mounts.append(m)
        drop_caches()
        part = FILE_MIB * MiB // 8
        threads = [threading.Thread(target=read_file, args=(f, i * part, part)) for i in range(8)]
        secs = timed(lambda: ([t.start() for t in threads], [t.join() for t in threads]))
        hwm = m.hwm_kib() / 1024
        row("daemon peak RSS with 8 concurrent cold readers", hwm, "MiB", "<= 24 MiB", hwm <= 24)
        NOTES.append(f"8 concurrent cold readers: {rate(FILE_MIB * MiB, secs):.0f} MB/s aggregate")
        m.close()

        # --- stat walk of the whole tree, warm
        def find(root):
            return subprocess.run(["find", root, "-printf", "%s %m %U\n"], capture_output=True, check=True).stdout.count(b"\n")

        m = Mount(w("tree.fl"), w("tree-cache"), w("mnt"), w("mount.log"))
        mounts.append(m)
        n = find(tree)
        native_walk = max(n / timed(lambda: find(tree)) for _ in range(3))
        find(m.mnt)
        walk = max(n / timed(lambda: find(m.mnt)) for _ in range(3))
        row(f"stat walk of the whole tree, warm ({n} entries)", walk, "entries/s", ">= 0.5 x native",
            walk >= 0.5 * native_walk, native_walk, walk / native_walk)
        m.close()

        # --- metadata flist: mount-ready latency and first listing of the big directory
        meta_store = w("meta-store")
        t = time.perf_counter()
        run([ZVFS, "pack", "-m", w("meta.fl"), "-s", f"dir://{meta_store}", w("meta")], stdout=subprocess.DEVNULL)
        NOTES.append(f"pack of {META_ENTRIES} empty entries: {time.perf_counter() - t:.1f} s")
        readies = []
        for i in range(5):
            m = Mount(w("meta.fl"), w("meta-cache"), w("mnt"), w("mount.log"))
            readies.append(m.ready)
            m.close()
        ready_ms = statistics.median(readies) * 1000
        row(f"mount-ready latency, {META_ENTRIES}-entry flist (median of 5, `mount -d` until ready)",
            ready_ms, "ms", "<= 100 ms", ready_ms <= 100)

        def ls(d):
            subprocess.run(["ls", d], stdout=subprocess.DEVNULL, check=True)

        def ls_l(d):
            subprocess.run(["ls", "-l", d], stdout=subprocess.DEVNULL, check=True)

        drop_caches()
        native_ls = timed(lambda: ls(w("meta", "big")))
        drop_caches()
        m = Mount(w("meta.fl"), w("meta-cache"), w("mnt"), w("mount.log"))
        mounts.append(m)
        first = timed(lambda: ls(os.path.join(m.mnt, "big")))
        row(f"first listing (`ls`) of the {BIGDIR}-entry directory", first, "s", "<= 0.2 s", first <= 0.2,
            native_ls, first / max(native_ls, 1e-9))
        m.close()
        drop_caches()
        native_lsl = timed(lambda: ls_l(w("meta", "big")))
        m = Mount(w("meta.fl"), w("meta-cache"), w("mnt"), w("mount.log"))
        mounts.append(m)
        first_l = timed(lambda: ls_l(os.path.join(m.mnt, "big")))
        NOTES.append(f"first `ls -l` of the {BIGDIR}-entry directory: {first_l:.3f} s (native {native_lsl:.3f} s)")
        m.close()

        # --- bytes fetched / bytes read for one 2 MiB file of the tree, via a counting store
        if two_mib:
            server = CountingServer(tree_store)
            m = Mount(w("tree.fl"), w("count-cache"), w("mnt"), w("mount.log"), ["-s", server.url])
            mounts.append(m)
            rel = os.path.relpath(two_mib, tree)
            server.reset()
            got = read_file(os.path.join(m.mnt, rel))
            ratio = server.bytes() / got
            row("store bytes fetched / bytes read, one 2 MiB file of the tree", ratio, "", "<= 1.3", ratio <= 1.3)
            m.close()
            server.close()
            server = None

        # --- listings of big directories (also `scripts/bench.sh bigdir` on its own)
        bigdir(w)

        # --- partial checksum of the 1 GiB file (page cache)
        checksum_row(bigfile, FILE_MIB)

        footer = (f"tree: {tree_bytes / MiB:.0f} MiB, {n} entries; file: {FILE_MIB} MiB; "
                  f"run took {time.time() - started:.0f} s; load average at end: "
                  f"{' '.join(open('/proc/loadavg').read().split()[:3])}; CPU time stolen by the "
                  f"host during the run: {stolen_percent(steal0):.0f} %")
        print()
        print_table(header + "\n" + footer)
    finally:
        for m in mounts:
            m.close()
        if server:
            server.close()
        if os.environ.get("BENCH_KEEP") == "1":
            log(f"kept {WORK}")
        else:
            shutil.rmtree(WORK, ignore_errors=True)


SUITES = {
    "all": "everything below but compare and import (the default): pack, cold / chunk-cache-warm / "
           "page-cache-warm reads, stat walk, mount-ready, first listings, daemon peak RSS, "
           "store bytes per byte read, big directories, partial checksum",
    "quick": "`all` on a smaller corpus (as BENCH_QUICK=1: a few minutes)",
    "bigdir": "only the big-directory listings (ls -l of 200,000 entries, ls -f / find -ls "
              "of 1,000,000, daemon peak RSS; BENCH_BIGDIR_DATA=dir keeps the corpora)",
    "identity": "only the partial checksum of a 1 GiB file in the page cache "
                "(`zvfs identity --partial` and `--time 2000`; target well under 100 us)",
    "import": "`zvfs import` of a ~1 GiB registry image (BENCH_QUICK=1: ~200 MiB) against "
              "skopeo copy + umoci unpack + zvfs pack and against zvfs pack of the extracted "
              "tree; layer reuse (A + 1 layer); peak RSS (BENCH_ROUNDS=N rounds, default 2)",
    "wan": "cold / warm workloads (python imports, busybox script, one 2 MiB file) on mounts whose "
           "redis (0-db stand-in) or HTTP store is behind scripts/wanproxy.py (BENCH_WAN_PROFILES="
           "ms/Mbit,..., default 10/100,25/20,75/10), against bytes/bandwidth + 1 RTT and the full download",
    "restart": "4 readers of a mount (each read after evicting its pages) while the worker is "
               "SIGKILLed 20 times, 300 ms apart: kill -> first answered read, longest stall, "
               "failed reads, against the longest read without kills",
    "compare": "the main figures (pack, cold, chunk-cache-warm, reread, daemon peak RSS, "
               "mount-ready) of ZVFS_BASELINE=old-binary and ZVFS, interleaved round by "
               "round in the same run, side by side with the ratio (BENCH_ROUNDS=N rounds)",
}


def usage():
    lines = ["usage: scripts/bench.sh [SUITE...]   (run as root; ZVFS=binary skips the release build)",
             "", "suites:"]
    lines += [f"  {name:<9} {text}" for name, text in SUITES.items()]
    lines += ["", "The mount read figures and peak RSS that scripts/mount-figures.sh measured are "
              "part of `all`."]
    return "\n".join(lines)


WORK = "/var/tmp"
PARTS = sys.argv[1:]
if __name__ == "__main__":
    if any(a in ("-h", "--help", "help") for a in PARTS):
        print(usage())
        sys.exit(0)
    unknown = [a for a in PARTS if a not in SUITES]
    if unknown:
        sys.exit(f"bench: unknown suite {' '.join(unknown)!r}\n\n{usage()}")
    if "quick" in PARTS:
        PARTS = [p for p in PARTS if p != "quick"] or ["all"]
        if os.environ.get("BENCH_QUICK") != "1":
            # The sizes are read at import: run again with them set.
            os.environ["BENCH_QUICK"] = "1"
            os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *PARTS])
    if PARTS == ["all"] or not PARTS:
        PARTS = []
    main()
