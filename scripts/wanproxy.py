#!/usr/bin/env python3
"""A user-space TCP proxy that delays and rate-limits like a slow link (python3 stdlib).

Usage:
  wanproxy.py --listen 127.0.0.1:0 --to HOST:PORT [--delay-ms D] [--rate-mbit R] \\
              [--port-file F] [--stats F2] [--fault KIND --fault-after N --fault-conns K]

Listens, writes its bound port to F once listening, and forwards each accepted connection
to HOST:PORT. Each direction has a one-way delay D and a bandwidth R Mbit/s shared by all
connections: a piece (at most 16 KiB) read at time t finishes serialization at
s = max(t, link_free) + len/rate (link_free = s) and is written out at s + D by the
direction's writer thread. Half-close (EOF) and close propagate. F2 gets JSON stats
({"to_target", "to_client": bytes delivered, "connections": accepted, "open"}) at least
every 100 ms and on SIGTERM (tmp file + rename). Used by `scripts/bench.sh wan`.

Faults (tests/faults.rs), on the replies (target -> client) of the first K connections
(K = 0: all), once N reply bytes of the connection went through:
  stall      forward nothing more, keep the connection open
  reset      close the client connection with a TCP reset
  truncate   close the client connection cleanly (FIN) mid-reply
  drip:MS    from then on, one byte every MS milliseconds
  flip       flip the lowest bit of reply byte N
  length     lower by one the next length field (RESP `$n`, HTTP `Content-Length: n`)
  refuse     reset every connection at once, before any byte
"""

import argparse
import json
import os
import queue
import re
import struct
import signal
import socket
import sys
import threading
import time

PIECE = 16 * 1024
STATS = {"to_target": 0, "to_client": 0, "connections": 0, "open": 0}
LOCK = threading.Lock()


class Link:
    """One direction of the link, shared by every connection."""

    def __init__(self, delay, rate_bps):
        self.delay = delay
        self.rate = rate_bps / 8.0  # bytes per second
        self.free = 0.0
        self.lock = threading.Lock()

    def schedule(self, n, t):
        with self.lock:
            s = max(t, self.free) + n / self.rate
            self.free = s
        return s + self.delay


class Fault:
    """A fault of one connection's replies (see the module's doc)."""

    def __init__(self, kind, after):
        self.kind, _, arg = kind.partition(":")
        self.arg = float(arg) if arg else 0.0
        self.after = after
        self.seen = 0
        self.done = False

    def apply(self, data):
        """The pieces to forward for `data`: bytes, or "stall" / "reset" / "close"."""
        if self.done and self.kind != "drip":
            return [data]
        start, self.seen = self.seen, self.seen + len(data)
        if self.seen <= self.after and not (self.kind == "drip" and self.done):
            return [data]
        cut = max(0, self.after - start)
        head, tail = data[:cut], data[cut:]
        self.done = True
        k = self.kind
        if k in ("stall", "reset", "close", "truncate"):
            return [head, "close" if k == "truncate" else k]
        if k == "drip":
            return [head] + [("drip", tail[i : i + 1]) for i in range(len(tail))]
        if k == "flip":
            return [head + bytes([tail[0] ^ 1]) + tail[1:]]
        if k == "length":
            m = re.search(rb"(\$|Content-Length: )(\d+)", tail)
            if not m:
                self.done = False
                return [data]
            n = max(0, int(m.group(2)) - 1)
            return [head + tail[: m.start(2)] + str(n).encode() + tail[m.end(2) :]]
        return [data]


def reset(sock):
    """Abort `sock` with a TCP reset (SHUT_RD first wakes a thread blocked reading it)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def pump(src, dst, link, key, done, fault=None):
    """Reader (this thread) and writer (a second thread) of one direction."""
    q = queue.Queue(maxsize=1024)  # at most 16 MiB queued per direction per connection

    def writer():
        try:
            while True:
                at, data = q.get()
                wait = at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if data == "stall":
                    while True:
                        time.sleep(3600)
                if data == "reset":
                    reset(dst)
                    return
                if data == "close":
                    for s in (src, dst):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    return
                dst.sendall(data)
                with LOCK:
                    STATS[key] += len(data)
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            done()

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    while True:
        try:
            data = src.recv(PIECE)
        except OSError:
            data = b""
        now = time.monotonic()
        if not data:
            q.put((max(now, link.free) + link.delay, None))
            return
        pieces = fault.apply(data) if fault else [data]
        for p in pieces:
            if isinstance(p, str):
                q.put((max(now, link.free) + link.delay, p))
            elif isinstance(p, tuple):  # drip: one byte, arg ms after the last
                now = max(now, link.free) + fault.arg / 1000
                link.free = now
                q.put((now + link.delay, p[1]))
            elif p:
                q.put((link.schedule(len(p), now), p))


def handle(client, target, up, down, fault=None):
    if fault is not None and fault.kind == "refuse":
        reset(client)
        return
    try:
        server = socket.create_connection(target)
    except OSError as e:
        print(f"wanproxy: connect {target}: {e}", file=sys.stderr)
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    left = [2]
    lock = threading.Lock()

    def done():
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            client.close()
            server.close()
            with LOCK:
                STATS["open"] -= 1

    with LOCK:
        STATS["connections"] += 1
        STATS["open"] += 1
    threading.Thread(target=pump, args=(client, server, up, "to_target", done), daemon=True).start()
    threading.Thread(
        target=pump, args=(server, client, down, "to_client", done, fault), daemon=True
    ).start()


def write_stats(path):
    with LOCK:
        data = json.dumps(STATS)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--to", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--rate-mbit", type=float, default=10000.0)
    ap.add_argument("--port-file")
    ap.add_argument("--stats")
    ap.add_argument("--fault")
    ap.add_argument("--fault-after", type=int, default=0)
    ap.add_argument("--fault-conns", type=int, default=0)
    a = ap.parse_args()
    lhost, lport = a.listen.rsplit(":", 1)
    thost, tport = a.to.rsplit(":", 1)
    target = (thost, int(tport))
    up = Link(a.delay_ms / 1000, a.rate_mbit * 1e6)
    down = Link(a.delay_ms / 1000, a.rate_mbit * 1e6)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((lhost, int(lport)))
    ls.listen(128)

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if a.stats:
        write_stats(a.stats)

        def stats_loop():
            while True:
                time.sleep(0.05)
                write_stats(a.stats)

        threading.Thread(target=stats_loop, daemon=True).start()
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{ls.getsockname()[1]}\n")
        os.replace(tmp, a.port_file)
    try:
        n = 0
        while True:
            c, _ = ls.accept()
            n += 1
            faulty = a.fault and (a.fault_conns == 0 or n <= a.fault_conns)
            handle(c, target, up, down, Fault(a.fault, a.fault_after) if faulty else None)
    finally:
        if a.stats:
            write_stats(a.stats)


if __name__ == "__main__":
    main()
