#!/usr/bin/env python3
"""Build the fuzz corpora of scripts/fuzz.sh: fuzz/corpus/<target>/ gets the committed
seeds of fuzz/seeds/<target>/ plus inputs made from the rfs and zflist fixtures
(shared/fixtures, found as the tests find it: in the nearest ancestor that has it), in the
input layouts the targets document (a mode byte first). Missing fixtures are skipped with
a note: the committed seeds alone are a valid corpus.

Usage: fuzz-seeds.py REPO CORPUS_DIR
"""
import gzip
import hashlib
import io
import os
import shutil
import sqlite3
import sys
import tarfile
import tempfile

repo, corpus = sys.argv[1], sys.argv[2]
TARGETS = ["fl_v2", "legacy_flist", "codec_v2", "codec_legacy", "resp", "http_response",
           "compat_argv", "oci"]


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def find_fixtures():
    d = os.path.abspath(repo)
    while True:
        p = os.path.join(d, "shared", "fixtures")
        if os.path.isdir(p):
            return p
        if d == "/":
            return None
        d = os.path.dirname(d)


for t in TARGETS:
    os.makedirs(os.path.join(corpus, t), exist_ok=True)
    seeds = os.path.join(repo, "fuzz", "seeds", t)
    if os.path.isdir(seeds):
        for n in os.listdir(seeds):
            shutil.copyfile(os.path.join(seeds, n), os.path.join(corpus, t, n))

fx = find_fixtures()
if fx is None:
    print("fuzz-seeds: no shared/fixtures found: committed seeds only", file=sys.stderr)
    sys.exit(0)
v2 = os.path.join(fx, "rfs-v2")
legacy = os.path.join(fx, "legacy-flist")

# fl_v2: the rfs-made flists as they are.
for n in ("sample.fl", "sharded.fl"):
    p = os.path.join(v2, n)
    if os.path.exists(p):
        put("fl_v2", "fixture-" + n, open(p, "rb").read())

# codec_v2: real objects under their id and key (mode 0, 1), small ones only.
p = os.path.join(v2, "sample.fl")
if os.path.exists(p):
    conn = sqlite3.connect("file:%s?immutable=1" % p, uri=True)
    done = 0
    for bid, key in conn.execute("SELECT id, key FROM block"):
        h = bytes(bid).hex()
        for obj in (os.path.join(v2, "store", h[:2], h), os.path.join(v2, "store", h)):
            if os.path.exists(obj) and os.path.getsize(obj) <= 64 * 1024:
                data = open(obj, "rb").read()
                put("codec_v2", "fixture-%s-m0" % h[:12], b"\x00" + bytes(bid) + bytes(key) + data)
                put("codec_v2", "fixture-%s-m1" % h[:12], b"\x01" + bytes(bid) + bytes(key) + data)
                done += 1
                break
        if done >= 8:
            break
    conn.close()

# codec_legacy: the zflist chunks (named by their hash), key unknown here (mode 0, 1).
chunks = os.path.join(legacy, "chunks")
if os.path.isdir(chunks):
    for n in sorted(os.listdir(chunks))[:8]:
        data = open(os.path.join(chunks, n), "rb").read()
        if len(data) > 64 * 1024:
            continue
        try:
            hid = bytes.fromhex(n)[:16]
        except ValueError:
            hid = hashlib.blake2b(data, digest_size=16).digest()
        hid = hid.ljust(16, b"\0")
        put("codec_legacy", "fixture-%s-m0" % n[:12], b"\x00" + hid + bytes(16) + data)
        put("codec_legacy", "fixture-%s-m1" % n[:12], b"\x01" + hid + bytes(16) + data)

# legacy_flist: the container (mode 0), its database (mode 1), its rows as records (mode 2).
p = os.path.join(legacy, "sample.flist")
if os.path.exists(p):
    raw = open(p, "rb").read()
    put("legacy_flist", "fixture-sample-m0", b"\x00" + raw)
    db = None
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw)), mode="r:", ignore_zeros=True) as tf:
        for m in tf:
            if m.name.endswith("flistdb.sqlite3"):
                db = tf.extractfile(m).read()
    if db is not None:
        put("legacy_flist", "fixture-sample-m1", b"\x01" + db)
        with tempfile.NamedTemporaryFile(suffix=".sqlite3") as tmp:
            tmp.write(db)
            tmp.flush()
            conn = sqlite3.connect(tmp.name)
            rec = bytearray(b"\x02")
            for table, tag in (("entries", 0), ("metadata", 1)):
                for k, v in conn.execute("SELECT key, value FROM %s" % table):
                    k = k.encode() if isinstance(k, str) else bytes(k)
                    v = v.encode() if isinstance(v, str) else bytes(v)
                    if len(k) > 255 or len(v) > 65535:
                        continue
                    rec += bytes([tag, len(k)]) + k + len(v).to_bytes(2, "little") + v
            conn.close()
            put("legacy_flist", "fixture-sample-m2", bytes(rec))

# oci: a small slice of the fixture tree tar as a layer (mode 6).
p = os.path.join(v2, "tree.tar")
if os.path.exists(p):
    out = io.BytesIO()
    with tarfile.open(p) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        n = 0
        for m in src:
            if m.isfile() and m.size > 4096:
                continue
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
            n += 1
            if n >= 40:
                break
    put("oci", "fixture-tree-m6", b"\x06" + out.getvalue())

print("fuzz-seeds: corpora in %s" % corpus, file=sys.stderr)
