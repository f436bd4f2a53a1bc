"""The on-disk format checked from outside the engine (format-spec/storage.md, format-spec/cli.md).

Stores are written with the `labeldb` command line; their bytes are read with py-lmdb and decoded
from the spec alone (the small reader below knows nothing of the engine), the way an independent
reader would. Each test is named after the numbered rule it checks and cites it.
"""
from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

lmdb = pytest.importorskip("lmdb")
xxhash = pytest.importorskip("xxhash")

from conftest import cli, cli_json_lines  # noqa: E402

MAGIC = b"LabelDB\x00"
ZERO_HEAD = "0" * 32
VERSION_1_TABLES = ("meta", "samples", "embeddings", "free_slots")


# --- an independent reader, from storage.md -----------------------------------------------------------


def xx64(data: bytes, seed: int = 0) -> int:
    """storage.md §2: xxh3-64(bytes, seed) = XXH3_64bits_withSeed."""
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def xx128_canonical(data: bytes) -> bytes:
    """storage.md R-1: xxh3-128 in canonical form, the high 64 bits big-endian, then the low 64 bits
    big-endian, computed from the 128-bit number (not taken from a library's own digest format)."""
    h = xxhash.xxh3_128_intdigest(data)
    return (h >> 64).to_bytes(8, "big") + (h & (2**64 - 1)).to_bytes(8, "big")


def u16(b: bytes, o: int) -> int:
    return struct.unpack_from("<H", b, o)[0]


def u32(b: bytes, o: int) -> int:
    return struct.unpack_from("<I", b, o)[0]


def u64(b: bytes, o: int) -> int:
    return struct.unpack_from("<Q", b, o)[0]


def f16(b: bytes, o: int) -> float:
    return float(np.frombuffer(b, "<f2", 1, o)[0])


def table_names(path) -> list[str]:
    assert (Path(path) / "data.mdb").is_file(), "storage.md §3: the LMDB data file is data.mdb"
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=64, subdir=True)
    try:
        with env.begin() as tx:
            return [bytes(k).decode() for k, _ in tx.cursor()]
    finally:
        env.close()


def table(path, name: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of one named LMDB database, in key order; [] when the table is missing."""
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=64, subdir=True)
    try:
        try:
            db = env.open_db(name.encode(), create=False)
        except lmdb.NotFoundError:
            return []
        with env.begin(db=db) as tx:
            return [(bytes(k), bytes(v)) for k, v in tx.cursor()]
    finally:
        env.close()


def meta(path) -> dict[str, bytes]:
    return {k.decode(): v for k, v in table(path, "meta")}


def schema(path) -> dict:
    """storage.md §5.1."""
    v = meta(path)["schema"]
    assert u64(v, 0) == xx64(v[8:], 0), "schema checksum (R-6: verified before any other field)"
    assert v[8:16] == MAGIC
    out = {"write_version": u16(v, 16), "read_version": u16(v, 18), "dim": u32(v, 20), "element": v[24],
           "reserved": v[25:28], "rows_per_block": u32(v, 28), "class_count": u32(v, 32)}
    names, o = [], 36
    for _ in range(out["class_count"]):
        n = u32(v, o)
        names.append(v[o + 4:o + 4 + n].decode())
        o += 4 + n
    assert o == len(v)
    out["classes"] = names
    return out


def counter(path, name: str) -> int | None:
    """storage.md §5.2: a counter record, or None when absent."""
    v = meta(path).get(name)
    if v is None:
        return None
    assert len(v) == 16 and u64(v, 0) == xx64(v[8:16], 0), f"{name}: checksum of bytes 8…15, seed 0"
    return u64(v, 8)


def samples(path) -> dict[int, dict]:
    """storage.md §6."""
    out = {}
    for k, v in table(path, "samples"):
        sid = int.from_bytes(k, "big")
        assert u64(v, 0) == xx64(v[8:], sid), f"sample {sid}: checksum seeded with the id (R-6)"
        version = v[8]
        assert version in (1, 2)
        h = 40 if version == 1 else 48
        m, p = u32(v, 32), u32(v, 36)
        assert len(v) == h + m + p, "R-8"
        out[sid] = {"version": version, "label": u32(v, 12), "slot": u64(v, 16), "provenance": u64(v, 24),
                    "sequence": u64(v, 40) if version == 2 else 0, "metadata": v[h:h + m], "payload": v[h + m:]}
    return out


def block_layout(sch: dict) -> tuple[int, int]:
    """storage.md §7: (X, w)."""
    b = sch["rows_per_block"]
    x = 32 + 16 * b + 8 * math.ceil(b / 64)
    x = (x + 63) // 64 * 64
    return x, {1: 4, 2: 2}[sch["element"]]


def blocks(path) -> dict[int, dict]:
    """storage.md §7, with the header checks of R-10."""
    sch = schema(path)
    b, d = sch["rows_per_block"], sch["dim"]
    x, w = block_layout(sch)
    out = {}
    for k, v in table(path, "embeddings"):
        num = int.from_bytes(k, "big")
        assert u64(v, 0) == xx64(v[8:x], num), f"block {num}: header checksum of bytes 8…X−1 seeded with k"
        n = u32(v, 12)
        assert (v[8], v[9], u32(v, 16), u32(v, 20)) == (1, sch["element"], b, d)
        assert len(v) == x + n * d * w, "R-10"
        ids = np.frombuffer(v, "<u8", b, 32)
        sums = np.frombuffer(v, "<u8", b, 32 + 8 * b)
        words = np.frombuffer(v, "<u8", math.ceil(b / 64), 32 + 16 * b)
        live = [(int(words[i // 64]) >> (i % 64)) & 1 == 1 for i in range(b)]
        out[num] = {"n": n, "ids": ids, "sums": sums, "live": live, "rows": v[x:], "raw": v, "x": x, "w": w, "d": d}
    return out


def label_sets(path) -> dict[str, dict]:
    """storage.md §10.1."""
    out = {}
    for k, v in table(path, "label_sets"):
        assert u64(v, 0) == xx64(v[8:], xx64(k, 0))
        out[k.decode()] = json.loads(v[8:])
    return out


def label_versions(path) -> dict[tuple[int, int], dict]:
    """storage.md §10.2."""
    out = {}
    for k, v in table(path, "label_versions"):
        assert u64(v, 0) == xx64(v[8:], xx64(k, 0))
        out[(int.from_bytes(k[:4], "big"), int.from_bytes(k[4:8], "big"))] = json.loads(v[8:])
    return out


def label_block_rows(path) -> list[tuple[int, int, int, dict]]:
    """storage.md §10.3: every packed label row as (set id, sample id, version, fields), with the
    checks R-16 names: the header checksum of bytes 8…543, the rows checksum of bytes 544…end,
    the bitmap's count, the layout's length, each row's checksum (seeded with the block seed XOR
    its sample id)."""
    owners = {r["slot"]: sid for sid, r in samples(path).items()}
    out = []
    for k, v in table(path, "label_blocks"):
        assert len(k) == 16
        set_id, block, ver = u32be(k, 0), int.from_bytes(k[4:12], "big"), u32be(k, 12)
        seed = xx64(k, 0)
        assert u64(v, 0) == xx64(v[8:544], seed), "block header checksum over bytes 8…543, seeded with xxh3-64 of the key"
        assert u64(v, 24) == xx64(v[544:], seed), "rows checksum over bytes 544…end"
        assert v[8] == 1
        n, w = u32(v, 12), u32(v, 16)
        slots = [i for i in range(4096) if v[32 + i // 8] >> (i % 8) & 1]
        assert len(slots) == n >= 1, "R-16: n is the bitmap's count"
        if w:
            start = 544
            bounds = [(start + i * w, start + (i + 1) * w) for i in range(n)]
            assert len(v) == start + n * w, "R-16: fixed layout length"
        else:
            offsets = [u32(v, 544 + 4 * i) for i in range(n + 1)]
            start = 544 + 4 * (n + 1)
            assert offsets[0] == 0 and all(b - a >= 5 for a, b in zip(offsets, offsets[1:]))
            bounds = [(start + offsets[i], start + offsets[i + 1]) for i in range(n)]
            assert len(v) == start + offsets[n], "R-16: variable layout length"
        for offset, (a, b) in zip(slots, bounds):
            sid = owners[block * 4096 + offset]
            row = v[a:b]
            assert u32(row, len(row) - 4) == xx64(row[:-4], seed ^ sid) & 0xFFFFFFFF, "row checksum"
            flags, o = row[0], 1
            hard = multi = soft = None
            if flags & 8:
                assert flags & ~(1 | 4 | 8 | 16) == 0, "§10.7: a per-view row never sets bit 1"
                out.append((set_id, sid, ver, {"version": ver, "flags": flags, "views": row[1:-4]}))
                continue
            if flags & 1:
                hard, o = u32(row, o), o + 4
            if flags & 2:
                m = u32(row, o)
                multi, o = [u32(row, o + 4 + 4 * i) for i in range(m)], o + 4 + 4 * m
            if flags & 4:
                soft = row[o:-4]
            else:
                assert o == len(row) - 4
            out.append((set_id, sid, ver, {"version": ver, "flags": flags, "hard": hard, "multi": multi, "soft": soft}))
    return out


def view_section(flags: int, b: bytes, codec: str | None) -> list[dict]:
    """storage.md §10.7: the views of a per-view row's section (the bytes between the flags and
    the row checksum), with the checks R-55 names."""
    n = u32(b, 0)
    assert n >= 1
    numbers = [u32(b, 4 + 4 * i) for i in range(n)]
    assert all(x < y for x, y in zip(numbers, numbers[1:])), "R-55: view numbers strictly ascending"
    o = 4 + 4 * n
    views = []
    for i in range(n):
        x0, y0, x1, y1, flip, epoch, seed, reserved = struct.unpack_from("<4fBHIB", b, o + 24 * i)
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and flip in (0, 1) and reserved == 0, "R-55"
        views.append({"view": numbers[i], "crop": [x0, y0, x1, y1], "flip": bool(flip), "epoch": epoch, "seed": seed})
    o += 24 * n
    if flags & 1:
        for i in range(n):
            views[i]["hard"] = u32(b, o + 4 * i)
        o += 4 * n
    if flags & 4:
        for i in range(n):
            if codec.startswith("adaptive"):
                size = 4 + 4 * u16(b, o)
            elif codec.startswith("topk") and codec.endswith("f16"):
                size = 2 + 4 * int(codec.split(":")[1])
            elif codec.startswith("topk"):
                size = 6 + 3 * int(codec.split(":")[1])
            else:
                raise AssertionError(f"a dense codec needs C: {codec}")
            views[i]["soft"] = b[o:o + size]
            o += size
    if flags & 16:
        lengths = [u32(b, o + 4 * i) for i in range(n)]
        o += 4 * n
        for i in range(n):
            if lengths[i]:
                views[i]["extra"] = json.loads(b[o:o + lengths[i]])
            o += lengths[i]
    assert o == len(b), "§10.7: the section ends exactly at the row checksum"
    return views


def label_rows(path, set_id: int, version: int | None = None) -> dict[int, dict]:
    """storage.md §10.3: per sample, its newest row with version ≤ `version` (latest without)."""
    out = {}
    for st, sid, ver, row in label_block_rows(path):
        if st != set_id or (version is not None and ver > version):
            continue
        if sid not in out or out[sid]["version"] < ver:
            out[sid] = row
    return out


def postings(path) -> dict[tuple[int, int, int], set[int]]:
    """storage.md §10.5: (set id, class, version) → the slots its chunks list (R-19's checks)."""
    out: dict[tuple[int, int, int], set[int]] = {}
    for k, v in table(path, "label_postings"):
        assert len(k) == 20
        set_id, c, ver, chunk = u32be(k, 0), u32be(k, 4), u32be(k, 8), int.from_bytes(k[12:20], "big")
        assert u64(v, 0) == xx64(v[8:], xx64(k, 0)), "postings checksum, seeded with xxh3-64 of the key"
        assert len(v) >= 10 and len(v) % 2 == 0, "R-19: 8 + 2n bytes, n ≥ 1"
        offsets = [u16(v, o) for o in range(8, len(v), 2)]
        assert offsets == sorted(set(offsets)), "R-19: strictly ascending"
        out.setdefault((set_id, c, ver), set()).update(chunk * 65536 + o for o in offsets)
    return out


def u32be(b: bytes, o: int) -> int:
    return int.from_bytes(b[o:o + 4], "big")


def provenance(path) -> list[tuple[int, bytes]]:
    """storage.md §12: (record number, value) in key order."""
    return [(int.from_bytes(k, "big"), v) for k, v in table(path, "provenance")]


def decode_soft(codec: str, b: bytes, c: int) -> np.ndarray:
    """storage.md R-43, in numpy float64, each output rounded to float32 once."""
    def uniform():
        return np.full(c, np.float32(1) / np.float32(c), np.float32)

    def ok(x: float) -> bool:
        return math.isfinite(x) and x > 0

    if codec in ("dense:f32", "dense:f16"):
        dtype, width = ("<f4", 4) if codec == "dense:f32" else ("<f2", 2)
        assert len(b) == width * c, "R-43 step 1"
        stored = np.frombuffer(b, dtype, c)
        v = stored.astype(np.float64)
        if codec == "dense:f32" and np.all(np.isfinite(v)) and np.all(v >= 0) and abs(v.sum() - 1) < 1e-5:
            return stored.astype(np.float32)  # as stored, bit for bit
        v = np.where(np.isfinite(v) & (v > 0), v, 0.0)
        total = float(v.sum())
        if not ok(total):
            return uniform()
        return (v / total).astype(np.float32)
    kind, _, rest = codec.partition(":")
    if kind == "adaptive":
        k = u16(b, 0)
        assert 1 <= k <= c and len(b) == 4 + 4 * k, "R-43 step 1"
        b, kind = b[2:], "topk16"
    elif codec.endswith(":f16"):
        k = int(rest.split(":")[0])
        assert len(b) == 2 + 4 * k
        kind = "topk16"
    else:
        k = int(rest.split(":")[0])
        assert codec.endswith(":u8") and len(b) == 6 + 3 * k
        kind = "topku8"
    kept: dict[int, float] = {}
    if kind == "topk16":
        r = f16(b, 0)
        for i in range(k):
            cls, p = u16(b, 2 + 4 * i), f16(b, 4 + 4 * i)
            assert cls < c
            kept[cls] = p  # a class listed twice keeps its last entry's value
    else:
        hi, lo, r = f16(b, 0), f16(b, 2), f16(b, 4)
        for i in range(k):
            cls, q = u16(b, 6 + 3 * i), b[8 + 3 * i]
            assert cls < c
            kept[cls] = math.exp(lo + (q / 255) * (hi - lo))
    r = r if ok(r) else 0.0
    kept = {cls: (p if ok(p) else 0.0) for cls, p in kept.items()}
    kprime = len(kept)
    total = float(np.sum(np.array(list(kept.values()), np.float64))) + (r if kprime < c else 0.0)
    if not ok(total):
        return uniform()
    out = np.empty(c, np.float32)
    spread = (r / (c - kprime)) / total if kprime < c else 0.0
    for cls in range(c):
        out[cls] = np.float32(kept[cls] / total) if cls in kept else np.float32(spread)
    return out


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place (both non-negative)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert (a >= 0).all() and (b >= 0).all()
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def check_stored_json(raw: bytes, where: str) -> object:
    """R-41: compact (no whitespace outside strings), keys sorted at every level, no null."""
    text = raw.decode("utf-8")
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        else:
            assert ch not in " \t\r\n", f"{where}: whitespace at {i} of {text!r}"

    def hook(pairs):
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys), f"{where}: keys not sorted: {keys}"
        assert len(set(keys)) == len(keys), f"{where}: duplicate keys {keys}"
        nulls = [k for k, v in pairs if v is None]
        assert not nulls, f"{where}: null stored for {nulls} (R-41: omitted, never null)"
        return dict(pairs)

    value = json.loads(text, object_pairs_hook=hook)

    def no_null_items(x):
        if isinstance(x, list):
            assert None not in x, f"{where}: null in an array"
            for y in x:
                no_null_items(y)
        elif isinstance(x, dict):
            for y in x.values():
                no_null_items(y)

    no_null_items(value)
    return value


# --- building stores with the CLI ------------------------------------------------------------------------


def write_classes(root: Path, c: int) -> Path:
    path = root / "classes.txt"
    path.write_text("\n".join(f"class{i}" for i in range(c)) + "\n")
    return path


def new_store(root: Path, name: str = "store", n: int = 24, d: int = 6, c: int = 5, dtype: str = "f32",
              first_id: int = 1, seed: int = 0, meta: list | None = None) -> dict:
    """init + import through the CLI; returns the paths and the arrays it was built from."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n, dtype=np.uint64)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    np.save(root / "ids.npy", ids)
    np.save(root / "emb.npy", emb)
    store = root / name
    classes = write_classes(root, c)
    cli("init", str(store), "--dim", str(d), "--classes", str(classes), "--dtype", dtype)
    args = ["import", str(store), "--embeddings", str(root / "emb.npy"), "--ids", str(root / "ids.npy"), "--quiet"]
    if meta is not None:
        (root / "meta.jsonl").write_text("\n".join(meta) + "\n")
        args += ["--meta", str(root / "meta.jsonl")]
    cli(*args)
    return {"root": root, "store": str(store), "ids": ids, "emb": emb, "d": d, "c": c}


def save(root: Path, name: str, array) -> str:
    path = root / name
    np.save(path, array)
    return str(path)


def soft_rows(rng, n: int, c: int) -> np.ndarray:
    """Probabilities with the awkward cases a codec must handle: one-hot, uniform, ties, tiny values."""
    p = rng.dirichlet(np.full(c, 0.3), size=n)
    p[0] = 0
    p[0, 0] = 1
    p[1] = 1 / c
    p[2] = 0
    p[2, [1, 3]] = 0.5
    p[3] = rng.dirichlet(np.full(c, 0.02))
    return p.astype(np.float32)


# --- tests -----------------------------------------------------------------------------------------------


def test_README_format_version_8_schema_record(tmp_path):
    """format-spec/README.md: "Format version covered: 8 … (schema record write version 8, read
    version 8; storage.md §5.1)". A fresh store's `schema` record (§5.1) says so in bytes 16…19,
    and holds the four version-1 tables (R-3) and no `label_index` (§4: absent from format 6)."""
    classes = write_classes(tmp_path, 3)
    store = tmp_path / "store"
    printed = cli_json_lines("init", str(store), "--dim", "7", "--classes", str(classes), "--dtype", "f16")[0]
    assert printed["format_version"] == 8
    assert set(VERSION_1_TABLES) <= set(table_names(store))
    assert "label_index" not in table_names(store) and "label_postings" in table_names(store)
    sch = schema(store)
    assert (sch["write_version"], sch["read_version"]) == (8, 8)
    assert sch["dim"] == 7 and sch["element"] == 2 and sch["reserved"] == b"\0\0\0"
    assert sch["classes"] == ["class0", "class1", "class2"]
    # "the largest power of two in 16…4096 for which a full block holds at most 512 KiB of rows"
    assert sch["rows_per_block"] == 4096
    assert cli_json_lines("info", str(store))[0]["format_version"] == 8


def test_R1_provenance_hashes_are_canonical_big_endian(tmp_path):
    """storage.md R-1 and §12: a 128-bit xxh3 hash is stored as XXH128_canonicalFromHash, the high
    64 bits big-endian then the low 64 bits big-endian: the record's own hash (bytes 0…15), the
    previous record's (16…31), and, as 32 lowercase hex digits of those bytes, an input file's
    `hash` (R-48) and the log head printed by `audit --verify-log`."""
    s = new_store(tmp_path)
    soft = soft_rows(np.random.default_rng(1), len(s["ids"]), s["c"])
    cli("labels", "import", s["store"], "teacher", "--soft", save(tmp_path, "soft.npy", soft),
        "--ids", str(tmp_path / "ids.npy"), "--codec", "dense:f16")
    log = provenance(s["store"])
    assert [n for n, _ in log] == [1, 2]
    previous = bytes(16)
    for n, v in log:
        h = xxhash.xxh3_128_intdigest(v[16:])
        assert v[:16] == h.to_bytes(16, "big") == xx128_canonical(v[16:]), f"record {n}: own hash"
        little = (h & (2**64 - 1)).to_bytes(8, "little") + (h >> 64).to_bytes(8, "little")
        assert v[:16] != little
        assert v[16:32] == previous, f"record {n}: previous hash"
        previous = v[:16]
    files = {}
    for _, v in log:
        record = json.loads(v[32:])
        for entity in record["used"]:
            if entity["kind"] == "file":
                files[Path(entity["name"]).name] = entity["hash"]
    for name in ("emb.npy", "ids.npy", "soft.npy"):
        data = (tmp_path / name).read_bytes()
        assert files[name] == xx128_canonical(data).hex(), name
        assert files[name] == format(xxhash.xxh3_128_intdigest(data), "032x")
    # every u64 key is big-endian (LMDB's byte order is then numeric order)
    assert [k for k, _ in table(s["store"], "samples")] == [int(i).to_bytes(8, "big") for i in s["ids"]]
    assert [k for k, _ in table(s["store"], "provenance")] == [(1).to_bytes(8, "big"), (2).to_bytes(8, "big")]
    verified = cli_json_lines("audit", s["store"], "--verify-log")[0]
    assert verified["head"] == log[-1][1][:16].hex()
    steps = cli_json_lines("audit", s["store"], str(int(s["ids"][0])))[0]["sample_lineage"]
    printed = {Path(e["name"]).name: e["xxh3_128"] for e in steps[0]["used"] if e["kind"] == "file"}
    assert printed["emb.npy"] == xx128_canonical((tmp_path / "emb.npy").read_bytes()).hex()


def test_R48_C9_content_hash_stored_as_hash_printed_as_xxh3_128(tmp_path):
    """storage.md R-48: an entity's content hash is stored under `hash` (32 lowercase hex digits of
    the canonical bytes); the CLI prints the same value as `xxh3_128` (`audit`, `provenance export`),
    and `xxh3_128` never occurs in the log. cli.md C-9: the key `hash` never appears in CLI output."""
    s = new_store(tmp_path)
    cli("labels", "import", s["store"], "gold", "--hard", save(tmp_path, "hard.npy", np.arange(24) % 5),
        "--ids", str(tmp_path / "ids.npy"))
    stored = {}
    for _, v in provenance(s["store"]):
        assert b"xxh3_128" not in v
        for entity in json.loads(v[32:])["used"]:
            if entity["kind"] == "file":
                assert len(entity["hash"]) == 32 and entity["hash"] == entity["hash"].lower()
                stored[Path(entity["name"]).name] = entity["hash"]
    assert stored["hard.npy"] == xx128_canonical((tmp_path / "hard.npy").read_bytes()).hex()

    audit = cli("audit", s["store"], "1", "--format", "json").stdout
    assert '"hash"' not in audit
    step_files = {}
    report = json.loads(audit)
    for step in report["sample_lineage"] + report["labels"]["gold"]["lineage"]:
        for entity in step["used"]:
            if entity["kind"] == "file":
                step_files[Path(entity["name"]).name] = entity["xxh3_128"]
    assert step_files == stored

    out = tmp_path / "prov.json"
    cli("provenance", "export", s["store"], "--out", str(out))
    text = out.read_text()
    assert '"hash"' not in text
    exported = {Path(e["name"]).name: e["xxh3_128"] for e in json.loads(text)["entity"].values() if e.get("kind") == "file"}
    assert exported == stored


@pytest.mark.parametrize("dtype,d", [("f32", 6), ("f16", 5)])
def test_R11_row_checksum_covers_d_times_w(tmp_path, dtype, d):
    """storage.md R-11: row i's checksum covers exactly that row's d·w bytes, at offsets
    X + i·d·w … X + (i+1)·d·w − 1 (not n·w, not the header), seeded with the row's sample id; a
    row belongs to a sample only when its live bit is 1, its id field equals the id and the checksum
    matches. Checked against blocks recomputed from the bytes (§7, R-10) for f32 (w = 4) and f16
    (w = 2, odd d)."""
    s = new_store(tmp_path, d=d, dtype=dtype, first_id=100, n=20)
    sch = schema(s["store"])
    (num, blk), = blocks(s["store"]).items()
    assert num == 0 and blk["n"] == 20
    w = blk["w"]
    assert w == (4 if dtype == "f32" else 2)
    recs = samples(s["store"])
    for sid, rec in recs.items():
        slot = rec["slot"]
        assert slot // sch["rows_per_block"] == num
        i = slot % sch["rows_per_block"]
        assert blk["live"][i] and int(blk["ids"][i]) == sid
        row = blk["rows"][i * d * w:(i + 1) * d * w]
        assert int(blk["sums"][i]) == xx64(row, sid), f"row {i}: xxh3-64 of its d·w bytes seeded with the id"
        # the other readings R-11 rules out
        assert int(blk["sums"][i]) != xx64(blk["rows"][i * blk["n"] * w:(i + 1) * blk["n"] * w], sid)
        assert int(blk["sums"][i]) != xx64(row, 0)
        assert int(blk["sums"][i]) != xx64(blk["raw"][:blk["x"]] + row, sid)
        value = np.frombuffer(row, "<f4" if dtype == "f32" else "<f2")
        expected = s["emb"][int(np.flatnonzero(s["ids"] == sid)[0])]
        np.testing.assert_array_equal(value, expected.astype(value.dtype))


def test_R19_R51_class_postings_list_each_rows_slot_and_answer_top1_filters(tmp_path):
    """storage.md §10.5: one posting per label row with a top-1 class, in the chunk of (set, class,
    version), naming the sample's slot (R-19); deleting a sample removes its postings; answering
    `top1 = c` at V from the postings as R-51 says (the slot's sample from its embedding block)
    gives what `labeldb query` prints."""
    s = new_store(tmp_path, n=30, c=4)
    store, ids = s["store"], s["ids"]
    rng = np.random.default_rng(5)
    hard1 = rng.integers(0, 4, size=30).astype(np.int32)
    cli("labels", "import", store, "h", "--hard", save(tmp_path, "h1.npy", hard1), "--ids", save(tmp_path, "i1.npy", ids))
    relabel = ids[::3]
    hard2 = rng.integers(0, 4, size=len(relabel)).astype(np.int32)
    cli("labels", "import", store, "h", "--hard", save(tmp_path, "h2.npy", hard2), "--ids", save(tmp_path, "i2.npy", relabel))
    before = samples(store)
    deleted = {int(ids[0]), int(ids[4])}
    cli("delete", store, "--ids", save(tmp_path, "del.npy", np.array(sorted(deleted), np.uint64)))
    set_id = label_sets(store)["h"]["id"]
    slot_of = {sid: r["slot"] for sid, r in samples(store).items()}
    expected: dict[tuple[int, int, int], set[int]] = {}
    for st, sid, ver, row in label_block_rows(store):
        assert st == set_id
        expected.setdefault((set_id, row["hard"], ver), set()).add(slot_of[sid])
    found = postings(store)
    assert found == expected
    freed = {before[d]["slot"] for d in deleted}
    assert not any(freed & listed for listed in found.values())
    blk = blocks(store)
    b = schema(store)["rows_per_block"]

    def owner(slot: int) -> int:
        block = blk[slot // b]
        assert block["live"][slot % b], "R-51: a posting's slot holds a sample"
        return int(block["ids"][slot % b])

    for version in (1, 2):
        rows = label_rows(store, set_id, version)
        for c in range(4):
            answer = sorted(owner(slot) for (st, cc, v), listed in found.items() if st == set_id and cc == c and v <= version
                            for slot in listed if rows[owner(slot)]["version"] == v)
            printed = cli("query", store, f"label(h@{version}).top1 = 'class{c}'").stdout.split()
            assert [int(x) for x in printed] == answer, (version, c)


def test_R12_deleted_row_is_zeroed(tmp_path):
    """storage.md R-12 (with §8, R-14): a free row (live bit 0) has id 0, checksum 0 and all-zero
    bytes; its slot is a `free_slots` key with an empty value, below `slots`."""
    s = new_store(tmp_path, n=10)
    before = samples(s["store"])[4]["slot"]
    cli("delete", s["store"], "--ids", save(tmp_path, "del.npy", np.array([4], np.uint64)))
    blk = blocks(s["store"])[0]
    d, w = blk["d"], blk["w"]
    assert not blk["live"][before] and int(blk["ids"][before]) == 0 and int(blk["sums"][before]) == 0
    assert blk["rows"][before * d * w:(before + 1) * d * w] == bytes(d * w)
    assert table(s["store"], "free_slots") == [(before.to_bytes(8, "big"), b"")]
    assert before < counter(s["store"], "slots")


def test_section6_metadata_is_compact_sorted_json(tmp_path):
    """storage.md §6: a sample's metadata is a JSON object, UTF-8, compact, keys sorted."""
    s = new_store(tmp_path, n=2, meta=['{"z": 1, "a": {"y": [1, 2], "b": "x y"}}', '{"b": null, "a": "é"}'])
    recs = samples(s["store"])
    assert recs[1]["metadata"] == b'{"a":{"b":"x y","y":[1,2]},"z":1}'
    assert json.loads(recs[2]["metadata"]) == {"a": "é", "b": None}
    assert recs[2]["metadata"].startswith(b'{"a":')


def test_R41_stored_json_is_compact_sorted_and_omits_absent_keys(tmp_path):
    """storage.md R-41: JSON inside values (§10.1, §10.2, §11.2, §11.3, §12) is compact with sorted
    keys; a key whose value is absent is omitted, never null. Checked on every such record, and on
    the keys each section says may be omitted: `codec` (§10.1), `fidelity`/`source` (§10.2),
    `head`/`max_kl`/`head_hash` (§11.3), and entity `version`/`hash`/`rows`/`first_id`/`last_id` (§12)."""
    s = new_store(tmp_path)
    ids = str(tmp_path / "ids.npy")
    soft = soft_rows(np.random.default_rng(2), 24, s["c"])
    cli("labels", "import", s["store"], "gold", "--hard", save(tmp_path, "hard.npy", np.arange(24) % 5), "--ids", ids)
    cli("labels", "import", s["store"], "teacher", "--soft", save(tmp_path, "soft.npy", soft), "--ids", ids,
        "--codec", "topk:2:f16")
    cli("labels", "import", s["store"], "secret", "--soft", str(tmp_path / "soft.npy"), "--ids", ids,
        "--secrecy", "lic", "--clearance", "all")
    cli("heads", "import", s["store"], "w0", save(tmp_path, "w0.npy", np.ones((6, 5), np.float32)))
    cli("projector", "fit", s["store"], "plain", "--from", "teacher", "--rank", "2", "--quiet")
    cli("projector", "fit", s["store"], "headed", "--from", "teacher", "--rank", "2", "--head", "w0",
        "--max-kl", "0.01", "--quiet")

    decoded = {}
    for tname in ("label_sets", "label_versions", "projectors", "projector_versions"):
        for k, v in table(s["store"], tname):
            decoded[(tname, k)] = check_stored_json(v[8:], f"{tname} {k!r}")
    log = [check_stored_json(v[32:], f"provenance {n}") for n, v in provenance(s["store"])]

    sets = {k.decode(): v for (t, k), v in decoded.items() if t == "label_sets"}
    assert "codec" not in sets["gold"] and sets["teacher"]["codec"] == "topk:2:f16"
    for name, rec in sets.items():
        assert {"id", "created_ms", "latest"} <= rec.keys(), name
    versions = {(int.from_bytes(k[:4], "big"), int.from_bytes(k[4:8], "big")): rec
                for (t, k), rec in decoded.items() if t == "label_versions"}
    gold = versions[(sets["gold"]["id"], 1)]
    teacher = versions[(sets["teacher"]["id"], 1)]
    secret = versions[(sets["secret"]["id"], 1)]
    for rec in (gold, teacher, secret):
        assert {"version", "agent", "time_ms", "kind", "rows", "labelled", "soft_bytes", "provenance"} <= rec.keys()
    assert "fidelity" not in gold and "source" not in gold
    assert "fidelity" in teacher and "source" not in teacher
    assert secret["source"] == {"integrity": [], "secrecy": ["lic"]}

    pversions = {}
    for (t, k), rec in decoded.items():
        if t == "projectors":
            assert rec.keys() == {"id", "latest"}
            pversions[k.decode()] = rec["id"]
    by_id = {int.from_bytes(k[:4], "big"): rec for (t, k), rec in decoded.items() if t == "projector_versions"}
    plain, headed = by_id[pversions["plain"]], by_id[pversions["headed"]]
    always = {"version", "source_set", "source_version", "options", "report", "samples", "require_top1",
              "corrections", "correction_bytes", "parameter_bytes", "sequence", "time_ms", "agent", "provenance",
              "taint"}
    assert always <= plain.keys() and always <= headed.keys()
    assert not {"head", "max_kl", "head_hash"} & plain.keys()
    assert headed["head"] == "w0" and headed["max_kl"] == 0.01 and len(headed["head_hash"]) == 16

    for rec in log:
        assert {"activity", "agent", "time_ms", "used", "generated", "parameters"} <= rec.keys()
        for entity in rec["used"] + rec["generated"]:
            assert {"kind", "name"} <= entity.keys()
            if entity["kind"] == "file":
                assert "hash" in entity and "version" not in entity
            if entity["kind"] == "label_set":
                assert "version" in entity and "hash" not in entity
            if entity["kind"] != "samples":
                assert "first_id" not in entity and "last_id" not in entity


def test_R42_sequence_moves_only_on_sample_puts_and_lowering_relabels(tmp_path):
    """storage.md R-42: a write transaction increments `sequence` by exactly 1 at its first put of
    samples (insert or replace; an empty batch counts) or at its first declassify/endorse relabel,
    and stores the new value as the embedding sequence of every sample record it puts or lowers.
    Nothing else moves it: not a delete, not a relabel that only adds secrecy or removes integrity
    (records keep their embedding sequence), not label imports, heads or fits."""
    root = tmp_path
    classes = write_classes(root, 3)
    store = str(root / "store")
    cli("init", store, "--dim", "4", "--classes", str(classes))
    assert counter(store, "sequence") in (None, 0)  # absent means 0

    def state():
        recs = samples(store)
        return counter(store, "sequence"), {sid: r["sequence"] for sid, r in recs.items()}

    rng = np.random.default_rng(3)
    cli("import", store, "--embeddings", save(root, "e1.npy", rng.normal(size=(8, 4)).astype(np.float32)),
        "--ids", save(root, "i1.npy", np.arange(1, 9, dtype=np.uint64)), "--quiet")
    seq, recs = state()
    assert seq == 1 and set(recs.values()) == {1}
    assert all(r["version"] == 2 for r in samples(store).values())

    soft = rng.dirichlet(np.ones(3), size=8).astype(np.float32)
    cli("labels", "import", store, "t", "--soft", save(root, "s.npy", soft), "--ids", str(root / "i1.npy"))
    cli("labels", "import", store, "g", "--hard", save(root, "h.npy", np.arange(8) % 3), "--ids", str(root / "i1.npy"))
    cli("heads", "import", store, "w0", save(root, "w0.npy", np.ones((4, 3), np.float32)))
    cli("projector", "fit", store, "p", "--from", "t", "--rank", "1", "--quiet")
    assert state() == (1, recs), "label imports, heads and fits do not move sequence"
    (pv,) = [json.loads(v[8:]) for _, v in table(store, "projector_versions")]
    assert pv["sequence"] == 1

    cli("import", store, "--embeddings", save(root, "e2.npy", rng.normal(size=(2, 4)).astype(np.float32)),
        "--ids", save(root, "i2.npy", np.array([9, 10], np.uint64)), "--quiet")
    seq, recs = state()
    assert seq == 2 and recs == {**{i: 1 for i in range(1, 9)}, 9: 2, 10: 2}

    cli("import", store, "--embeddings", save(root, "e3.npy", rng.normal(size=(2, 4)).astype(np.float32)),
        "--ids", save(root, "i3.npy", np.array([1, 2], np.uint64)), "--replace", "--quiet")
    seq, recs = state()
    assert seq == 3 and recs[1] == recs[2] == 3 and recs[3] == 1

    cli("delete", store, "--ids", save(root, "d.npy", np.array([3], np.uint64)))
    seq, after = state()
    assert seq == 3, "a delete does not move sequence"
    assert after == {k: v for k, v in recs.items() if k != 3}

    cli("relabel", store, "--ids", save(root, "r45.npy", np.array([4, 5], np.uint64)), "--add-secrecy", "pii")
    seq, after = state()
    assert seq == 3 and after[4] == after[5] == 1, "adding secrecy does not move sequence"
    assert samples(store)[4]["label"] != 0

    cli("relabel", store, "--ids", save(root, "r6.npy", np.array([6], np.uint64)), "--add-integrity", "ok",
        "--privilege", "ok")
    seq, after = state()
    assert seq == 4 and after[6] == 4 and after[7] == 1, "an endorse moves sequence and stamps its records"

    cli("relabel", store, "--ids", str(root / "r6.npy"), "--remove-integrity", "ok")
    seq, after = state()
    assert seq == 4 and after[6] == 4, "removing integrity does not move sequence"

    cli("relabel", store, "--ids", save(root, "r4.npy", np.array([4], np.uint64)), "--remove-secrecy", "pii",
        "--privilege", "pii", "--clearance", "all")
    seq, after = state()
    assert seq == 5 and after[4] == 5 and after[5] == 1, "a declassify moves sequence and stamps its records"

    import labeldb  # an empty batch counts: only the library can write one
    db = labeldb.open(store, write=True)
    try:
        with db.write() as tx:
            tx.put(np.zeros(0, np.uint64), np.zeros((0, 4), np.float32))
    finally:
        db.close()
    seq, again = state()
    assert seq == 6 and again == after


CODECS = ["dense:f32", "dense:f16", "topk:3:f16", "topk:3:u8", "adaptive:0.01"]


@pytest.fixture(scope="module")
def codec_store(tmp_path_factory):
    """One label set per codec, the same probabilities in each (C = 6), plus a dense:f32 row that
    sums to 1 + 5e-4 (R-43's normalising branch)."""
    root = tmp_path_factory.mktemp("codecs")
    s = new_store(root, n=30, d=4, c=6, first_id=1000)
    soft = soft_rows(np.random.default_rng(5), 30, 6)
    off = soft.copy()
    off[5] = off[5] / off[5].sum() * np.float32(1.0005)
    off[6] = np.array([0.5, 0.5, 0.0005, 0, 0, 0], np.float32)
    ids = str(root / "ids.npy")
    names = {}
    for i, codec in enumerate(CODECS):
        name = f"set{i}"
        src = save(root, f"soft{i}.npy", off if codec == "dense:f32" else soft)
        cli("labels", "import", s["store"], name, "--soft", src, "--ids", ids, "--codec", codec)
        names[codec] = name
    return {**s, "soft": soft, "names": names}


@pytest.mark.parametrize("codec", CODECS)
def test_R43_R44_soft_labels_decode_within_one_ulp(codec_store, codec, tmp_path):
    """storage.md R-43 (the decode arithmetic: f64 sums, one rounding to f32 per output) and R-44
    (a conforming reader is within one f32 ulp of R-43): the raw label rows of each codec, decoded
    here from the spec in numpy float64, against what the library (`get_many(..., soft="dense")`)
    and `labels export --out` return. dense:f32 rows that already sum to 1 within 1e-5 are returned
    as stored, bit for bit."""
    import labeldb

    s = codec_store
    name, c = s["names"][codec], s["c"]
    sets = label_sets(s["store"])
    assert sets[name]["codec"] == codec
    rows = label_rows(s["store"], sets[name]["id"])
    ids = np.array(sorted(rows), np.uint64)
    assert ids.tolist() == s["ids"].tolist()
    mine = np.stack([decode_soft(codec, rows[int(i)]["soft"], c) for i in ids])

    db = labeldb.open(s["store"])
    try:
        with db.read("all") as tx:
            lib = tx.get_many(ids, labels=name, soft="dense").labels[name].dense
    finally:
        db.close()
    out, ids_out = tmp_path / "p.npy", tmp_path / "i.npy"
    cli("labels", "export", s["store"], name, "--out", str(out), "--ids-out", str(ids_out))
    exported = np.load(out)
    assert np.load(ids_out).tolist() == ids.tolist()
    assert exported.dtype == np.float32 and exported.shape == (len(ids), c)

    for what, got in (("library", lib), ("labels export", exported)):
        dist = ulps(mine, got)
        worst = np.unravel_index(int(dist.argmax()), dist.shape)
        assert dist.max() <= 1, (f"{codec} {what}: row {int(ids[worst[0]])} class {worst[1]}: spec "
                                 f"{mine[worst]!r} vs {got[worst]!r} ({int(dist.max())} ulps)")
    if codec == "dense:f32":
        stored = np.stack([np.frombuffer(rows[int(i)]["soft"], "<f4") for i in ids])
        exact = np.abs(stored.astype(np.float64).sum(1) - 1) < 1e-5
        assert exact.sum() >= len(ids) - 2
        np.testing.assert_array_equal(lib[exact].view(np.uint32), stored[exact].view(np.uint32))


def test_R45_topk_u8_zero_probability_is_clamped(tmp_path):
    """storage.md R-45: in `topk:K:u8`, a kept probability below 2⁻¹²⁶, 0 included, is clamped to
    2⁻¹²⁶ before the logarithm: lo = f16(ln 2⁻¹²⁶) = −87.3125 (bits 0xD575), and the class decodes
    to about exp(−87.3125) ≈ 1.204e−38 before normalisation, not to 0 (R-43, within 1 ulp, R-44)."""
    import labeldb

    s = new_store(tmp_path, n=3, d=4, c=5)
    p = np.zeros((3, 5), np.float32)
    p[0, 0] = 1  # kept: class 0 (1) and class 1 (0, the tie to the smaller index)
    p[1, 2], p[1, 4] = 1, 1e-40  # a subnormal kept probability
    p[2] = [0.4, 0.3, 0.2, 0.1, 0.0]
    cli("labels", "import", s["store"], "u8", "--soft", save(tmp_path, "p.npy", p), "--ids", str(tmp_path / "ids.npy"),
        "--codec", "topk:2:u8")
    rows = label_rows(s["store"], label_sets(s["store"])["u8"]["id"])
    for sid in (1, 2):
        soft = rows[sid]["soft"]
        assert len(soft) == 6 + 3 * 2
        assert u16(soft, 2) == 0xD575, f"sample {sid}: lo bits {u16(soft, 2):#06x}"
        assert f16(soft, 2) == -87.3125
        assert u16(soft, 0) == 0  # hi = f16(logf(1)) = 0
    assert [u16(rows[1]["soft"], 6), u16(rows[1]["soft"], 9)] == [0, 1]
    assert [u16(rows[2]["soft"], 6), u16(rows[2]["soft"], 9)] == [2, 4]
    db = labeldb.open(s["store"])
    try:
        with db.read("all") as tx:
            lib = tx.get_many(np.array([1, 2, 3], np.uint64), labels="u8", soft="dense").labels["u8"].dense
    finally:
        db.close()
    mine = np.stack([decode_soft("topk:2:u8", rows[i]["soft"], 5) for i in (1, 2, 3)])
    assert ulps(mine, lib).max() <= 1
    assert lib[0, 1] > 0 and abs(float(lib[0, 1]) / math.exp(-87.3125) - 1) < 1e-6
    assert lib[1, 4] > 0 and abs(float(lib[1, 4]) / math.exp(-87.3125) - 1) < 1e-6


def test_R46_parameter_and_correction_bytes(tmp_path):
    """storage.md R-46 (cli.md `projector show`): `parameter_bytes` = 4·(2 + d·r + r·C + C), the f32
    values of the §11.4 value only (the stored value is 20 + `parameter_bytes` bytes, R-21);
    `correction_bytes` = the sum over the version's §11.5 records of key length (16) + value length
    (8-byte checksum + 1 codec byte + the encoded label), 0 without corrections."""
    d, c, r = 6, 5, 2
    s = new_store(tmp_path, n=24, d=d, c=c)
    soft = soft_rows(np.random.default_rng(4), 24, c)
    cli("labels", "import", s["store"], "t", "--soft", save(tmp_path, "soft.npy", soft),
        "--ids", str(tmp_path / "ids.npy"), "--codec", "dense:f16")
    cli("heads", "import", s["store"], "w0", save(tmp_path, "w0.npy", np.eye(d, c, dtype=np.float32)))
    cli("projector", "fit", s["store"], "bounded", "--from", "t", "--rank", str(r), "--max-kl", "0.001", "--quiet")
    cli("projector", "fit", s["store"], "headed", "--from", "t", "--rank", str(r), "--head", "w0", "--quiet")

    ids = {k.decode(): json.loads(v[8:])["id"] for k, v in table(s["store"], "projectors")}
    params = {int.from_bytes(k[:4], "big"): (k, v) for k, v in table(s["store"], "projector_parameters")}
    corrections: dict[int, list] = {}
    for k, v in table(s["store"], "projector_corrections"):
        assert len(k) == 16 and u64(v, 0) == xx64(v[8:], xx64(k, 0)), "§11.5 checksum (as §11.4)"
        assert v[8] in (1, 2, 3)
        corrections.setdefault(int.from_bytes(k[:4], "big"), []).append(len(k) + len(v))
    expected_params = 4 * (2 + d * r + r * c + c)
    for name in ("bounded", "headed"):
        shown = cli_json_lines("projector", "show", s["store"], name)[0]
        k, v = params[ids[name]]
        assert u64(v, 0) == xx64(v[8:], xx64(k, 0))
        assert (u32(v, 8), u32(v, 12), u32(v, 16)) == (d, c, r)
        assert shown["parameter_bytes"] == expected_params == len(v) - 20
        assert shown["correction_bytes"] == sum(corrections.get(ids[name], []))
        assert shown["corrections"] == len(corrections.get(ids[name], []))
        assert shown["total_bytes"] == shown["parameter_bytes"] + shown["correction_bytes"]
        (stored,) = [json.loads(val[8:]) for key, val in table(s["store"], "projector_versions")
                     if int.from_bytes(key[:4], "big") == ids[name]]
        assert stored["parameter_bytes"] == shown["parameter_bytes"]
        assert stored["correction_bytes"] == shown["correction_bytes"]
    assert cli_json_lines("projector", "show", s["store"], "bounded")[0]["corrections"] > 0
    assert cli_json_lines("projector", "show", s["store"], "headed")[0]["correction_bytes"] == 0


def test_R20_R39_head_record_and_head_hash(tmp_path):
    """storage.md §11.1 / R-20: a head is checksum (xxh3-64 of bytes 8…end, seed xxh3-64 of the key),
    d, C, taint label id (format 5), then d·C f32 row-major — 20 + 4·d·C bytes. R-39 with §2: a
    projector version's `head_hash` is xxh3-64 of the d·C values' little-endian bytes, printed as
    16 lowercase hex digits, most significant first."""
    d, c = 4, 3
    s = new_store(tmp_path, n=10, d=d, c=c)
    w0 = np.random.default_rng(11).normal(size=(d, c)).astype(np.float32)
    soft = np.random.default_rng(12).dirichlet(np.ones(c), size=10).astype(np.float32)
    cli("labels", "import", s["store"], "t", "--soft", save(tmp_path, "s.npy", soft), "--ids", str(tmp_path / "ids.npy"))
    cli("heads", "import", s["store"], "w0", save(tmp_path, "w0.npy", w0))
    cli("projector", "fit", s["store"], "p", "--from", "t", "--rank", "1", "--head", "w0", "--quiet")
    ((key, value),) = table(s["store"], "heads")
    assert key == b"w0" and len(value) == 20 + 4 * d * c
    assert u64(value, 0) == xx64(value[8:], xx64(key, 0))
    assert (u32(value, 8), u32(value, 12), u32(value, 16)) == (d, c, 0)
    values = value[20:]
    np.testing.assert_array_equal(np.frombuffer(values, "<f4").reshape(d, c), w0)
    ((_, pv),) = table(s["store"], "projector_versions")
    assert json.loads(pv[8:])["head_hash"] == format(xx64(values, 0), "016x")


def test_R47_provenance_activity_names(tmp_path):
    """storage.md R-47: the activities and what writes them — `import`, `label import`,
    `head import`, `projector fit`, `delete`, `relabel`/`declassify`/`endorse` (declassify when a
    relabel removes a secrecy tag, else endorse when it adds an integrity tag, else relabel), and
    `write` (agent `library`) for a library write nobody described. Keys are 1, 2, 3, … (§12)."""
    s = new_store(tmp_path, n=8, d=4, c=3)
    store, ids = s["store"], str(tmp_path / "ids.npy")
    soft = np.random.default_rng(6).dirichlet(np.ones(3), size=8).astype(np.float32)
    cli("labels", "import", store, "t", "--soft", save(tmp_path, "soft.npy", soft), "--ids", ids)
    cli("heads", "import", store, "w0", save(tmp_path, "w0.npy", np.ones((4, 3), np.float32)))
    cli("projector", "fit", store, "p", "--from", "t", "--rank", "1", "--quiet")
    cli("delete", store, "--ids", save(tmp_path, "d.npy", np.array([8], np.uint64)))
    one = save(tmp_path, "one.npy", np.array([1], np.uint64))
    cli("relabel", store, "--ids", one, "--add-secrecy", "pii", "--agent", "me")
    cli("relabel", store, "--ids", one, "--remove-secrecy", "pii", "--privilege", "pii", "--clearance", "all")
    cli("relabel", store, "--ids", one, "--add-integrity", "ok", "--privilege", "ok")
    cli("relabel", store, "--ids", one, "--remove-integrity", "ok")
    cli("relabel", store, "--ids", one, "--add-secrecy", "pii", "--add-integrity", "ok", "--privilege", "ok")
    cli("relabel", store, "--ids", one, "--remove-secrecy", "pii", "--remove-integrity", "ok", "--privilege", "pii",
        "--clearance", "all")
    import labeldb
    db = labeldb.open(store, write=True)
    try:
        with db.write() as tx:
            tx.put(np.array([50], np.uint64), np.ones((1, 4), np.float32))
    finally:
        db.close()

    log = provenance(store)
    assert [n for n, _ in log] == list(range(1, len(log) + 1))
    records = [json.loads(v[32:]) for _, v in log]
    assert [r["activity"] for r in records] == [
        "import", "label import", "head import", "projector fit", "delete",
        "relabel", "declassify", "endorse", "relabel", "endorse", "declassify", "write"]
    assert records[5]["agent"] == "me"
    assert records[-1]["agent"] == "library"


def _log_store(root: Path) -> dict:
    s = new_store(root, n=6, d=4, c=3)
    soft = np.random.default_rng(8).dirichlet(np.ones(3), size=6).astype(np.float32)
    cli("labels", "import", s["store"], "t", "--soft", save(root, "soft.npy", soft), "--ids", str(root / "ids.npy"))
    cli("labels", "import", s["store"], "g", "--hard", save(root, "h.npy", np.arange(6) % 3), "--ids", str(root / "ids.npy"))
    return s


def _damaged_copy(src: str, dest: Path, edit) -> str:
    shutil.copytree(src, dest)
    env = lmdb.open(str(dest), max_dbs=64, subdir=True)
    try:
        db = env.open_db(b"provenance", create=False)
        with env.begin(db=db, write=True) as tx:
            edit(tx)
    finally:
        env.close()
    return str(dest)


def _verify_log(store: str) -> tuple[int, dict, str]:
    done = cli("audit", store, "--verify-log", "--format", "json", check=False)
    text = cli("audit", store, "--verify-log", check=False)
    assert text.returncode == done.returncode
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    assert len(lines) == 1
    return done.returncode, lines[0], text.stdout


def test_R49_C10_verify_log_empty_intact_and_damaged(tmp_path):
    """storage.md R-49, cli.md C-10: `audit --verify-log` reports an empty log as ok, `records` 0,
    `head` 32 zeros, `first_bad` null, exit 0; an intact log of N records as `records` N, `head`
    record N's own hash; a log whose k-th entry is the first bad one as ok false, `first_bad.id` k,
    `records` k (the bad entry counted), `head` record k − 1's own hash (zeros for k = 1), exit 1.
    Damage is made on copies with py-lmdb: a flipped byte (hash mismatch), a record re-hashed after
    an edit (its successor's link breaks), a removed record (a gap)."""
    empty = tmp_path / "empty"
    cli("init", str(empty), "--dim", "3", "--classes", str(write_classes(tmp_path, 2)))
    assert provenance(empty) == []
    rc, report, text = _verify_log(str(empty))
    assert rc == 0 and report == {"ok": True, "records": 0, "head": ZERO_HEAD, "first_bad": None}
    assert text.strip() == f"ok: 0 records, head {ZERO_HEAD}"

    s = _log_store(tmp_path / "good")
    log = provenance(s["store"])
    assert len(log) == 3
    own = {n: v[:16].hex() for n, v in log}
    rc, report, text = _verify_log(s["store"])
    assert rc == 0 and report == {"ok": True, "records": 3, "head": own[3], "first_bad": None}
    assert text.strip() == f"ok: 3 records, head {own[3]}"

    def flip(number):
        def edit(tx):
            key = number.to_bytes(8, "big")
            v = bytearray(tx.get(key))
            v[40] ^= 0x01
            tx.put(key, bytes(v))
        return edit

    mismatch = "hash mismatch: the entry was changed after it was written"
    for k, head in ((2, own[1]), (1, ZERO_HEAD), (3, own[2])):
        store = _damaged_copy(s["store"], tmp_path / f"flip{k}", flip(k))
        rc, report, text = _verify_log(store)
        assert rc == 1
        assert report == {"ok": False, "records": k, "head": head, "first_bad": {"id": k, "reason": mismatch}}
        assert text.strip() == f"provenance record {k}: {mismatch}"

    def rehash(tx):
        key = (2).to_bytes(8, "big")
        v = tx.get(key)
        body = v[16:32] + v[32:].replace(b'"label import"', b'"label imporT"')
        tx.put(key, xx128_canonical(body) + body)

    store = _damaged_copy(s["store"], tmp_path / "rehash", rehash)
    new_two = provenance(store)[1][1][:16].hex()
    assert new_two != own[2]
    rc, report, _ = _verify_log(store)
    assert rc == 1 and report["ok"] is False and report["records"] == 3 and report["head"] == new_two
    assert report["first_bad"] == {"id": 3, "reason": "does not name the previous record's hash (a record before "
                                                      "it was changed, removed or reordered)"}

    store = _damaged_copy(s["store"], tmp_path / "gap", lambda tx: tx.delete((2).to_bytes(8, "big")))
    rc, report, _ = _verify_log(store)
    assert rc == 1 and report["records"] == 2 and report["head"] == own[1]
    assert report["first_bad"] == {"id": 2, "reason": "missing (the next record is 3)"}

    # the other checks of R-49, in its order: key length, key number, value length, JSON
    def put(key: bytes, value_of):
        return lambda tx: tx.put(key, value_of(tx))

    long_key = (2).to_bytes(8, "big") + b"\0"  # sorts between records 2 and 3
    store = _damaged_copy(s["store"], tmp_path / "longkey", put(long_key, lambda tx: tx.get((3).to_bytes(8, "big"))))
    rc, report, _ = _verify_log(store)
    assert rc == 1 and report["records"] == 3 and report["head"] == own[2]
    assert report["first_bad"] == {"id": 3, "reason": "a key of 9 bytes where record 3 should be (keys are 8 bytes)"}

    store = _damaged_copy(s["store"], tmp_path / "zero", put(bytes(8), lambda tx: tx.get((1).to_bytes(8, "big"))))
    rc, report, _ = _verify_log(store)  # key 0 sorts first, where record 1 should be
    assert rc == 1 and report["records"] == 1 and report["head"] == ZERO_HEAD
    assert report["first_bad"] == {"id": 1, "reason": "out of order"}

    two = (2).to_bytes(8, "big")
    store = _damaged_copy(s["store"], tmp_path / "short", put(two, lambda tx: tx.get(two)[:20]))
    rc, report, _ = _verify_log(store)
    assert rc == 1 and report["records"] == 2 and report["head"] == own[1]
    assert report["first_bad"] == {"id": 2, "reason": "entry of 20 bytes"}

    def bad_json(tx):
        v = tx.get((2).to_bytes(8, "big"))
        body = v[16:32] + b'{"activity":'
        return xx128_canonical(body) + body

    store = _damaged_copy(s["store"], tmp_path / "json", put((2).to_bytes(8, "big"), bad_json))
    rc, report, _ = _verify_log(store)
    assert rc == 1 and report["records"] == 2 and report["head"] == own[1]
    assert report["first_bad"] == {"id": 2, "reason": "malformed record JSON"}


def _nulls(value, path="") -> set[str]:
    """The keys printed as null anywhere in a JSON value."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if v is None:
                out.add(k)
            out |= _nulls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            out |= _nulls(v, path)
    return out


C8_NULLABLE = {"codec", "fidelity", "head", "max_kl", "ratio_to_stored", "provenance", "first_bad", "taint",
               "epochs", "steps", "stop_reason"}


def test_C8_null_versus_omitted_keys(tmp_path):
    """cli.md C-8: a key described as "or null" (`codec`, `fidelity`, `head`, `max_kl`,
    `ratio_to_stored`, `provenance` of `get`, `first_bad`, `taint` of `projector list`, `epochs`,
    `steps`, `stop_reason` of a projector version) is always
    printed, as null when it has no value; a key described as "if any", "only with …" or marked `?`
    is omitted when it has no value; no other key is ever null."""
    s = new_store(tmp_path, n=8, d=4, c=3)
    store, ids = s["store"], str(tmp_path / "ids.npy")
    outputs = []

    def run(*args):
        lines = cli_json_lines(*args)
        outputs.extend(lines)
        return lines

    hard = run("labels", "import", store, "gold", "--hard", save(tmp_path, "h.npy", np.arange(8) % 3), "--ids", ids)[0]
    assert hard["codec"] is None and hard["fidelity"] is None
    soft = np.random.default_rng(9).dirichlet(np.ones(3), size=8).astype(np.float32)
    soft_out = run("labels", "import", store, "t", "--soft", save(tmp_path, "s.npy", soft), "--ids", ids)[0]
    assert soft_out["codec"] == "dense:f16" and isinstance(soft_out["fidelity"], dict)
    run("labels", "import", store, "lic", "--soft", str(tmp_path / "s.npy"), "--ids", ids, "--secrecy", "lic",
        "--clearance", "all")
    listed = {x["name"]: x for x in run("labels", "list", store)}
    assert "codec" in listed["gold"] and listed["gold"]["codec"] is None
    shown = run("labels", "show", store, "gold")[0]
    assert shown["codec"] is None and shown["versions"][0]["fidelity"] is None

    run("projector", "fit", store, "p", "--from", "t", "--rank", "1", "--quiet")
    run("projector", "fit", store, "secret", "--from", "lic", "--rank", "1", "--quiet", "--clearance", "all")
    shown = run("projector", "show", store, "p")[0]
    assert shown["head"] is None and shown["max_kl"] is None and "ratio_to_stored" in shown
    plist = {x["name"]: x for x in run("projector", "list", store)}
    assert plist["p"]["head"] is None and plist["p"]["taint"] == {"integrity": [], "secrecy": []}
    assert plist["secret"]["usable"] is False and "taint" in plist["secret"] and plist["secret"]["taint"] is None

    got = run("get", store, "1")[0]
    assert got["provenance"]["record"] == 1 and "payload_base64" not in got
    assert "payload_base64" in run("get", store, "1", "--payload")[0]
    label = got["labels"]["t"]
    assert "hard" not in label and "multi" not in label, "label object: hard, multi only if any"
    assert got["labels"]["gold"]["hard"] == 0 and "multi" not in got["labels"]["gold"]

    report = run("audit", store, "--verify-log")[0]
    assert "first_bad" in report and report["first_bad"] is None
    audit = run("audit", store, "1")[0]
    for step in audit["sample_lineage"] + audit["labels"]["t"]["lineage"]:
        for entity in step["used"] + step["generated"]:
            if entity["kind"] == "file":
                assert "version" not in entity and "first_id" not in entity and "xxh3_128" in entity
            if entity["kind"] == "label_set":
                assert "xxh3_128" not in entity and "first_id" not in entity and "version" in entity

    # a sample that names a record number with no entry: `provenance` is printed as null
    orphan = _damaged_copy(store, tmp_path / "orphan", lambda tx: tx.delete((1).to_bytes(8, "big")))
    got = cli_json_lines("get", orphan, "1")[0]
    outputs.append(got)
    assert "provenance" in got and got["provenance"] is None

    for value in outputs:
        assert _nulls(value) <= C8_NULLABLE, value


def test_C8_import_prints_replaced_only_with_replace(tmp_path):
    """cli.md C-8 and the `import` key table: `replaced` — "rows that overwrote a stored sample (only
    with `--replace`)" — is a key described "only with …", so it is omitted without `--replace`."""
    s = new_store(tmp_path, n=3, d=4, c=2)
    emb = str(tmp_path / "emb.npy")
    with_replace = cli_json_lines("import", s["store"], "--embeddings", emb, "--ids", str(tmp_path / "ids.npy"),
                                  "--replace", "--quiet")[0]
    assert with_replace["replaced"] == 3
    fresh = save(tmp_path, "new.npy", np.array([7, 8, 9], np.uint64))
    without = cli_json_lines("import", s["store"], "--embeddings", emb, "--ids", fresh, "--quiet")[0]
    assert without["inserted"] == 3
    assert "replaced" not in without


def test_C11_labels_export_kind_precedence(tmp_path):
    """cli.md C-11: `labels export --out` takes the first present of the soft label (decoded, R-43),
    the hard label one-hot, the multi-label 1/M at each class (an empty one: zeros); `--hard-out`
    the first present of the hard label, the soft argmax (ties to the smaller class), −1. Each
    row's kinds are read from the raw label row's flags (§10.3, carried forward by R-17); `labels
    diff` follows `--hard-out`, `get`'s `top` follows `--out`."""
    c = 4
    s = new_store(tmp_path, n=7, d=4, c=c)
    store = s["store"]
    soft = np.array([[0.1, 0.6, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1], [0.05, 0.05, 0.1, 0.8]], np.float32)
    cli("labels", "import", store, "mix", "--soft", save(tmp_path, "s.npy", soft),
        "--ids", save(tmp_path, "si.npy", np.array([1, 2, 7], np.uint64)), "--codec", "dense:f32")
    cli("labels", "import", store, "mix", "--hard", save(tmp_path, "h.npy", np.array([3, 2, 1], np.int64)),
        "--ids", save(tmp_path, "hi.npy", np.array([2, 3, 6], np.uint64)))
    (tmp_path / "m.jsonl").write_text('[0, 2]\n[]\n["class1", "class3"]\n[2]\n')
    cli("labels", "import", store, "mix", "--multi", str(tmp_path / "m.jsonl"),
        "--ids", save(tmp_path, "mi.npy", np.array([4, 5, 6, 7], np.uint64)))

    rows = label_rows(store, label_sets(store)["mix"]["id"])
    kinds = {sid: "".join(k for k, bit in (("h", 1), ("m", 2), ("s", 4)) if row["flags"] & bit)
             for sid, row in rows.items()}
    assert kinds == {1: "s", 2: "hs", 3: "h", 4: "m", 5: "m", 6: "hm", 7: "ms"}

    expected_out, expected_hard = [], []
    for sid in sorted(rows):
        row = rows[sid]
        if row["soft"] is not None:
            dist = decode_soft("dense:f32", row["soft"], c)
        elif row["hard"] is not None:
            dist = np.eye(c, dtype=np.float32)[row["hard"]]
        else:
            dist = np.zeros(c, np.float32)
            for cls in row["multi"]:
                dist[cls] = np.float32(1) / np.float32(len(row["multi"]))
        expected_out.append(dist)
        if row["hard"] is not None:
            expected_hard.append(row["hard"])
        elif row["soft"] is not None:
            expected_hard.append(int(np.argmax(decode_soft("dense:f32", row["soft"], c))))
        else:
            expected_hard.append(-1)

    out, hard, idsout = tmp_path / "o.npy", tmp_path / "y.npy", tmp_path / "i.npy"
    cli("labels", "export", store, "mix", "--out", str(out), "--hard-out", str(hard), "--ids-out", str(idsout))
    assert np.load(idsout).tolist() == sorted(rows)
    got_out, got_hard = np.load(out), np.load(hard)
    assert got_out.dtype == np.float32 and got_hard.dtype == np.int32
    np.testing.assert_array_equal(got_out, np.stack(expected_out))
    assert got_hard.tolist() == expected_hard == [1, 3, 2, -1, -1, 1, 3]
    assert got_out[4].tolist() == [0, 0, 0, 0]  # the empty multi-label

    # `labels diff` uses --hard-out's precedence: sample 2 goes from its soft argmax (0) to its hard label 3
    diff = cli_json_lines("labels", "diff", store, "mix@1", "mix@3")[0]
    assert diff["changed"] == [{"id": 2, "from": 0, "to": 3}]
    # `get`'s top uses --out's: sample 2 shows its soft distribution, not the hard class
    top = cli_json_lines("get", store, "2")[0]["labels"]["mix"]["top"]
    assert top[0]["class"] == 0 and abs(top[0]["p"] - 0.7) < 1e-6


def test_R55_R56_per_view_rows(tmp_path):
    """storage.md §10.7: a per-view set (`views: true` in its record) keeps each sample's views in
    one row with flag 8: view numbers ascending, 24-byte view records, per-view hard labels and
    top-K encodings, extras as JSON; the version record counts `rows` (samples) and `views`; the
    set has no class postings (R-56); a later version replaces a sample's whole view list.
    (R-57, the replay order, is checked through the Python API in test_views.py.)"""
    s = new_store(tmp_path, n=6, c=5)
    rows = [(3, 7), (1, 0), (3, 2), (1, 1), (5, 4)]
    views = [{"view": v, "crop": [0.125 * (v % 4), 0.25, 0.625 + 0.125 * (v % 3), 0.75], "flip": v % 2 == 1, "epoch": v // 2, "seed": 1000 + i}
             for i, (_, v) in enumerate(rows)]
    views[2]["scale"] = [0.08, 1]
    (tmp_path / "views.jsonl").write_text("".join(json.dumps(v) + "\n" for v in views))
    ids = save(tmp_path, "vids.npy", np.array([r[0] for r in rows], np.uint64))
    classes = save(tmp_path, "tc.npy", np.array([[v % 5, (v + 1) % 5] for _, v in rows], np.int32))
    probs = save(tmp_path, "tp.npy", np.array([[0.5, 0.25]] * len(rows), np.float32))
    cli("labels", "import", s["store"], "fkd", "--topk-classes", classes, "--topk-probs", probs, "--ids", ids,
        "--views", str(tmp_path / "views.jsonl"))
    record = label_sets(s["store"])["fkd"]
    assert record["views"] is True and record["codec"] == "topk:2:f16"
    version = label_versions(s["store"])[(record["id"], 1)]
    assert (version["rows"], version["views"], version["labelled"]) == (3, 5, 3)
    got = {sid: view_section(row["flags"], row["views"], record["codec"]) for sid, row in label_rows(s["store"], record["id"]).items()}
    assert sorted(got) == [1, 3, 5]
    for sid, decoded in got.items():
        given = sorted((v for (i, v) in zip((r[0] for r in rows), views) if i == sid), key=lambda v: v["view"])
        assert [d["view"] for d in decoded] == [g["view"] for g in given]
        for d, g in zip(decoded, given):
            assert d["crop"] == pytest.approx(g["crop"]) and d["flip"] == g["flip"] and (d["epoch"], d["seed"]) == (g["epoch"], g["seed"])
            assert d.get("extra") == ({"scale": [0.08, 1]} if "scale" in g else None)
            top = d["soft"]
            assert u16(top, 2) == g["view"] % 5 and f16(top, 4) == 0.5, "topk:2:f16: leftover, then (class, p) most probable first"
    assert not any(k[0] == record["id"] for k in postings(s["store"])), "R-56: a per-view set has no class postings"
    # A later version replaces sample 3's whole list; sample 1 keeps version 1's row.
    (tmp_path / "v2.jsonl").write_text(json.dumps({"view": 9, "crop": [0, 0, 1, 1]}) + "\n")
    cli("labels", "import", s["store"], "fkd", "--hard", save(tmp_path, "h.npy", np.array([4], np.int64)),
        "--ids", save(tmp_path, "i2.npy", np.array([3], np.uint64)), "--views", str(tmp_path / "v2.jsonl"))
    latest = label_rows(s["store"], record["id"])
    assert latest[3]["version"] == 2 and latest[1]["version"] == 1
    assert view_section(latest[3]["flags"], latest[3]["views"], record["codec"]) == [
        {"view": 9, "crop": [0.0, 0.0, 1.0, 1.0], "flip": False, "epoch": 0, "seed": 0, "hard": 4}]


def test_K1_K3_K5_corpus_manifest_and_hash_routing(tmp_path):
    """corpus.md §1–§3 from the spec alone: corpus.json is one line of compact sorted JSON; its
    checksum is xxh3-64 (seed 0) of the other members' compact sorted JSON as 16 lowercase hex
    digits; every sample of shard i has an id whose 8 big-endian bytes hash (xxh3-64, seed 0)
    to i modulo the shard count."""
    (tmp_path / "classes.txt").write_text("a\nb\n")
    store, corpus = tmp_path / "store", tmp_path / "corpus"
    cli("init", str(store), "--dim", "2", "--classes", str(tmp_path / "classes.txt"))
    ids = np.array([1, 2, 3, 1000, 2**63 + 5, 77, 12345678901], dtype=np.uint64)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "emb.npy", np.zeros((len(ids), 2), np.float32))
    cli("import", str(store), "--embeddings", str(tmp_path / "emb.npy"), "--ids", str(tmp_path / "ids.npy"))
    cli("shard", str(store), str(corpus), "--shards", "3", "--clearance", "all")
    raw = (corpus / "corpus.json").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    manifest = json.loads(raw)
    assert raw[:-1] == json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    checksum = manifest.pop("checksum")
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert checksum == format(xxhash.xxh3_64_intdigest(body, seed=0), "016x")
    assert manifest["format"] == "labeldb-corpus" and manifest["version"] == 1 and manifest["routing"] == {"rule": "hash"}
    seen = []
    for index, name in enumerate(manifest["shards"]):
        held = [struct.unpack(">Q", k)[0] for k, _ in table(corpus / name, "samples")]
        for id in held:
            assert xxhash.xxh3_64_intdigest(struct.pack(">Q", id), seed=0) % 3 == index
        seen += held
    assert sorted(seen) == sorted(int(i) for i in ids)
