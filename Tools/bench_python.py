"""LabelDB from Python against the peers, same workload, same run (issue 11's benchmarks).

    python bench_python.py --data /tmp/peers-data --dir /tmp/labeldb-batch --swift-json SWIFT.json

Needs the stores `labeldb-bench batch-read` leaves in --dir (DIR/labeldb and DIR/raw, the peers'
lmdb_raw layout), its JSON (for the Swift API's batched figure, measured in the same run), and the
packages numpy, lmdb, pyarrow, torch, datasets and labeldb. The baselines are the peers' own
classes (../shared/peers/bench_peers.py), imported, not copied.
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import labeldb

PEERS = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "bench_peers.py"


def peers_module():
    spec = importlib.util.spec_from_file_location("bench_peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, reps=3):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def reads(a, out):
    """Batched and point reads: LabelDB's Python package against py-lmdb on the raw layout."""
    bp = peers_module()
    ids = np.load(os.path.join(a.data, "read_ids.npy"))
    raw = bp.LmdbRaw()
    raw.open(os.path.join(a.dir, "raw"))
    db = labeldb.open(os.path.join(a.dir, "labeldb"))
    tx = db.read("all")
    batches = [ids[i:i + 256] for i in range(0, len(ids), 256)]

    def ldb_batched():
        for b in batches:
            r = tx.get_many(b, labels=["hard", "teacher"], soft="compact", topk=5, taints=False)
            r.metadata_json, r.payloads  # metadata stays JSON bytes, as the task asks

    def raw_batched():
        for b in batches:
            raw.get_batch(b)

    out["python_batch256_rows_s"] = len(ids) / timed(ldb_batched)
    out["pylmdb_batch256_rows_s"] = len(ids) / timed(raw_batched)
    point = ids[:4096].tolist()

    def ldb_point():
        for i in point:
            tx.get(i, labels=["hard", "teacher"], soft="compact", topk=5)

    def raw_point():
        for i in point:
            raw.get(i)

    out["python_get1_us"] = timed(ldb_point) / len(point) * 1e6
    out["pylmdb_get1_us"] = timed(raw_point) / len(point) * 1e6
    tx.abort()
    db.close()
    if a.swift_json:
        swift = json.load(open(a.swift_json))
        out["swift_batch256_rows_s"] = 1e6 / swift["batch256_us_per_row"]
        out["python_vs_swift_batched"] = out["python_batch256_rows_s"] / out["swift_batch256_rows_s"]
    out["python_vs_pylmdb_batched"] = out["python_batch256_rows_s"] / out["pylmdb_batch256_rows_s"]
    out["python_get1_vs_pylmdb"] = out["python_get1_us"] / out["pylmdb_get1_us"]


def arrow(a, out):
    """Arrow export of every row's id, embedding, metadata, payload and labels vs pyarrow reading the
    same columns from Parquet."""
    import pyarrow.parquet as pq
    bp = peers_module()
    parquet = os.path.join(a.dir, "workload.parquet")
    if not os.path.exists(parquet):
        pq.write_table(bp.arrow_table(bp.Workload(a.data)), parquet)
    db = labeldb.open(os.path.join(a.dir, "labeldb"))
    with db.read("all") as tx:
        result = tx.query(labels=["hard", "teacher"])
        n = len(result)
        t = time.perf_counter()
        rows = sum(b.num_rows for b in result.to_arrow_reader(batch_size=8192))
        out["arrow_export_rows_s"] = rows / (time.perf_counter() - t)
    db.close()
    t = time.perf_counter()
    table = pq.read_table(parquet, columns=["id", "emb", "meta", "payload", "hard_label", "soft_cls", "soft_p", "soft_rest"])
    out["parquet_read_rows_s"] = table.num_rows / (time.perf_counter() - t)
    out["arrow_rows"] = n


def loader(a, out):
    """One DataLoader epoch (batch 256, 2 workers) over every sample: LabelDB vs LMDB + pickle and
    Hugging Face datasets with_format("torch")."""
    import torch
    from torch.utils.data import DataLoader, Dataset as TorchDataset
    from labeldb.torch import Dataset, collate
    bp = peers_module()
    stores = a.peer_stores
    w = None

    def epoch(loader_):
        t = time.perf_counter()
        rows = sum(len(b["id"]) for b in loader_)
        return rows, time.perf_counter() - t

    ds = Dataset(os.path.join(a.dir, "labeldb"), labels=["hard", "teacher"], soft="compact", topk=5, clearance="all")
    rows, s = epoch(DataLoader(ds, batch_size=256, num_workers=2, collate_fn=collate, shuffle=True))
    out["loader_labeldb_rows_s"] = rows / s

    pickle_path = os.path.join(stores, "lmdb_pickle")
    if not os.path.exists(pickle_path):
        w = w or bp.Workload(a.data)
        bp.LmdbPickle().import_(w, pickle_path)

    class PickleDataset(TorchDataset):
        """The common recipe: one pickled dict per sample, opened lazily per worker."""
        def __init__(self):
            self.keys, self.reader = None, None
            self.ids = np.load(os.path.join(a.data, "ids.npy"))

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            if self.reader is None:
                self.reader = bp.LmdbPickle()
                self.reader.open(pickle_path)
            r = self.reader.get(int(self.ids[i]))
            return {"id": np.array(r["id"], np.uint64), "emb": r["emb"], "hard": r["hard"], "cls": r["cls"].astype(np.int64), "p": r["p"].astype(np.float32)}

    rows, s = epoch(DataLoader(PickleDataset(), batch_size=256, num_workers=2, shuffle=True))
    out["loader_lmdb_pickle_rows_s"] = rows / s

    hf_path = os.path.join(stores, "hf_datasets")
    if not os.path.exists(hf_path):
        w = w or bp.Workload(a.data)
        bp.HfDatasets().import_(w, hf_path)
    from datasets import load_from_disk
    hf = load_from_disk(hf_path).with_format("torch", columns=["id", "emb", "hard_label", "soft_cls", "soft_p"])
    rows, s = epoch(DataLoader(hf, batch_size=256, num_workers=2, shuffle=True))
    out["loader_hf_datasets_rows_s"] = rows / s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/tmp/peers-data")
    ap.add_argument("--dir", default="/tmp/labeldb-batch")
    ap.add_argument("--peer-stores", default="/tmp/peers-stores")
    ap.add_argument("--swift-json")
    ap.add_argument("--only", default="reads,arrow,loader")
    a = ap.parse_args()
    os.makedirs(a.peer_stores, exist_ok=True)
    out = {"benchmark": "python", "engine": labeldb.engine_version}
    for part in a.only.split(","):
        globals()[part](a, out)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}), file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
