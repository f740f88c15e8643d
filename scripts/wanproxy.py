#!/usr/bin/env python3
"""A user-space TCP proxy that delays and rate-limits like a slow link (python3 stdlib).

Usage:
  wanproxy.py --listen 127.0.0.1:0 --to HOST:PORT --delay-ms D --rate-mbit R \\
              [--port-file F] [--stats F2]

Listens, writes its bound port to F once listening, and forwards each accepted connection
to HOST:PORT. Each direction has a one-way delay D and a bandwidth R Mbit/s shared by all
connections: a piece (at most 16 KiB) read at time t finishes serialization at
s = max(t, link_free) + len/rate (link_free = s) and is written out at s + D by the
direction's writer thread. Half-close (EOF) and close propagate. F2 gets JSON stats
({"to_target", "to_client": bytes delivered, "connections": accepted, "open"}) at least
every 100 ms and on SIGTERM (tmp file + rename). Used by `scripts/bench.sh wan`.
"""

import argparse
import json
import os
import queue
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


def pump(src, dst, link, key, done):
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
        q.put((link.schedule(len(data), now), data))


def handle(client, target, up, down):
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
    threading.Thread(target=pump, args=(server, client, down, "to_client", done), daemon=True).start()


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
    ap.add_argument("--rate-mbit", type=float, required=True)
    ap.add_argument("--port-file")
    ap.add_argument("--stats")
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
        while True:
            c, _ = ls.accept()
            handle(c, target, up, down)
    finally:
        if a.stats:
            write_stats(a.stats)


if __name__ == "__main__":
    main()
