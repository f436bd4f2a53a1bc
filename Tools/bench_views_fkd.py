"""Issue 14: per-view soft labels in FKD's own layout against LabelDB, from Python, same run.

FKD keeps one file per sample per epoch holding that epoch's view: crop box, flip, and a top-K
fp16 soft label (torch.save; numpy.save stands in). At N samples × E epochs that is N·E files.
This writes them and reads every view of random batches of 256 samples, and does the same with
LabelDB through its Python package (import_labels(views=…), Transaction.views), on the same
generated labels. Prints one JSON object.

    python Tools/bench_views_fkd.py --count 100000 --dir /tmp/labeldb-views-fkd
(LABELDB_LIBRARY must point at a release liblabeldb / libLabelDBC.so, or the package be installed.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

import labeldb

RECORD = np.dtype([("crop", "<f4", 4), ("flip", "u1"), ("epoch", "<u2"), ("seed", "<u4"),
                   ("leftover", "<f2"), ("classes", "<u2", 5), ("probs", "<f2", 5)])


def generate(n: int, views: int, k: int, c: int, seed: int = 14) -> dict:
    rng = np.random.default_rng(seed)
    m = n * views
    x0 = rng.integers(0, 500, m) / 1000
    y0 = rng.integers(0, 500, m) / 1000
    side = 0.3 + rng.integers(0, 200, m) / 1000
    truth = np.repeat(rng.integers(0, c, n), views)
    family = (truth // 10) * 10
    classes = np.empty((m, k), np.int64)
    classes[:, 0] = truth
    for j in range(1, k):  # family siblings, distinct from the top class
        classes[:, j] = family + (truth % 10 + j) % 10
    p1 = 0.3 + rng.integers(0, 600, m) / 1000
    rest = 1 - p1
    probs = np.stack([p1, 0.4 * rest, 0.2 * rest, 0.1 * rest, 0.05 * rest], axis=1).astype(np.float32)
    return {"ids": np.repeat(np.arange(1, n + 1, dtype=np.uint64), views), "view": np.tile(np.arange(views, dtype=np.uint32), n),
            "crop": np.stack([x0, y0, x0 + side, y0 + side], axis=1).astype(np.float32),
            "flip": rng.integers(0, 2, m).astype(np.uint8), "epoch": np.tile(np.arange(views, dtype=np.uint16), n),
            "seed": rng.integers(0, 2 ** 32, m, dtype=np.uint64).astype(np.uint32),
            "classes": classes.astype(np.int32), "probs": probs, "leftover": (0.25 * rest).astype(np.float32)}


def fkd_write(data: dict, root: Path, views: int) -> float:
    for e in range(views):
        (root / f"epoch_{e}").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for r in range(len(data["ids"])):
        rec = np.zeros((), RECORD)
        rec["crop"], rec["flip"], rec["epoch"], rec["seed"] = data["crop"][r], data["flip"][r], data["epoch"][r], data["seed"][r]
        rec["leftover"], rec["classes"], rec["probs"] = data["leftover"][r], data["classes"][r], data["probs"][r]
        np.save(root / f"epoch_{data['view'][r]}" / f"{data['ids'][r]}.npy", rec)
    return time.perf_counter() - start


def fkd_read(root: Path, batches: list, views: int, one_view: bool) -> float:
    start = time.perf_counter()
    for b, ids in enumerate(batches):
        epochs = [b % views] if one_view else range(views)
        out = [np.load(root / f"epoch_{e}" / f"{i}.npy") for i in ids for e in epochs]
        assert len(out) == len(ids) * len(epochs)
    return time.perf_counter() - start


def disk_bytes(root: Path) -> int:
    return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(root) for f in files)


def labeldb_write(data: dict, path: Path, n: int, c: int) -> float:
    store = labeldb.create(path, 8, [f"class_{i}" for i in range(c)], element="f16")
    with store.write() as tx:
        tx.put(np.arange(1, n + 1, dtype=np.uint64), np.full((n, 8), 0.5, np.float32), mode="insert")
    start = time.perf_counter()
    with store.write() as tx:
        tx.import_labels("fkd", ids=data["ids"], topk_classes=data["classes"], topk_probs=data["probs"], leftover=data["leftover"],
                         codec="topk:5:f16", views={k: data[k] for k in ("view", "crop", "flip", "epoch", "seed")})
    seconds = time.perf_counter() - start
    store.close()
    return seconds


def labeldb_read(path: Path, batches: list, one_view: bool) -> float:
    store = labeldb.open(path)
    start = time.perf_counter()
    for b, ids in enumerate(batches):
        with store.read() as tx:
            got = tx.views(ids, "fkd", epoch=b if one_view else None)
        assert len(got.view) == len(ids) * (1 if one_view else 10)
    seconds = time.perf_counter() - start
    store.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--dir", default="/tmp/labeldb-views-fkd")
    args = parser.parse_args()
    n, views, c = args.count, args.views, 1000
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    data = generate(n, views, 5, c)
    rng = np.random.default_rng(5)
    batches = [np.unique(rng.integers(1, n + 1, 256)).astype(np.uint64) for _ in range(args.batches)]
    batches = [b if len(b) == 256 else np.unique(np.concatenate([b, np.arange(1, 257, dtype=np.uint64)]))[:256] for b in batches]
    rows, ideal = n * views, n * views * 46
    result = {"samples": n, "views_per_sample": views, "files": rows}
    fkd_seconds = fkd_write(data, root / "fkd", views)
    result["fkd_write_rows_per_second"] = rows / fkd_seconds
    result["fkd_disk_bytes"] = disk_bytes(root / "fkd")
    result["fkd_disk_ratio"] = result["fkd_disk_bytes"] / ideal
    ours_seconds = labeldb_write(data, root / "labeldb", n, c)
    result["labeldb_write_rows_per_second"] = rows / ours_seconds
    result["labeldb_data_mdb_bytes"] = os.path.getsize(root / "labeldb" / "data.mdb")
    del data
    fkd_read(root / "fkd", batches[:10], views, False)  # warm
    labeldb_read(root / "labeldb", batches[:10], False)
    timings = {name: [] for name in ("fkd_all", "ours_all", "fkd_one", "ours_one")}
    for _ in range(3):
        timings["fkd_all"].append(fkd_read(root / "fkd", batches, views, False))
        timings["ours_all"].append(labeldb_read(root / "labeldb", batches, False))
        timings["fkd_one"].append(fkd_read(root / "fkd", batches, views, True))
        timings["ours_one"].append(labeldb_read(root / "labeldb", batches, True))
    med = {k: float(np.median(v)) for k, v in timings.items()}
    read_rows = len(batches) * 256
    result["fkd_read_all_views_rows_per_second"] = read_rows * views / med["fkd_all"]
    result["labeldb_read_all_views_rows_per_second"] = read_rows * views / med["ours_all"]
    result["fkd_read_one_view_samples_per_second"] = read_rows / med["fkd_one"]
    result["labeldb_read_one_view_samples_per_second"] = read_rows / med["ours_one"]
    result["read_all_ratio_labeldb_to_fkd"] = med["fkd_all"] / med["ours_all"]
    result["write_ratio_labeldb_to_fkd"] = fkd_seconds / ours_seconds
    print(json.dumps(result, sort_keys=True))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
