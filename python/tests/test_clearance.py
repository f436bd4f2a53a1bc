"""Clearance non-interference through Python: what a low clearance reads does not depend on the
rows it cannot see. Two twin stores share their public rows and differ in every secret one."""
import json

import numpy as np
import pytest

import labeldb


def _twin(path, secret_seed):
    rng = np.random.default_rng(0)
    public_ids = np.arange(0, 60, dtype=np.uint64) * 3
    public_emb = rng.normal(size=(60, 5)).astype(np.float32)
    srng = np.random.default_rng(secret_seed)
    secret_ids = np.arange(1, 31, dtype=np.uint64) * 3 + secret_seed  # ids differ between twins too
    secret_emb = public_emb[:30] + 1e-3 * srng.normal(size=(30, 5)).astype(np.float32)  # near the public rows
    db = labeldb.create(path, dimension=5, classes=["a", "b", "c", "d"])
    soft = lambda n, r: (lambda z: z / z.sum(1, keepdims=True))(r.random((n, 4)).astype(np.float32) + 0.05)
    with db.write("all") as tx:
        tx.put(public_ids, public_emb, metadata=[{"p": int(i)} for i in public_ids])
        tx.put(secret_ids, secret_emb, metadata=[{"s": int(i)} for i in secret_ids], secrecy=["pii"])
        tx.import_labels("t", soft=soft(60, rng), ids=public_ids, codec="topk:2:f16", agent="a")
        tx.import_labels("t", soft=soft(30, srng), ids=secret_ids, agent="a")
        tx.import_labels("h", hard=srng.integers(0, 4, size=30), ids=secret_ids, agent="b")
    db.close()
    return public_emb


def _observe(path, queries) -> dict:
    db = labeldb.open(path)
    seen = {}
    with db.read("public") as tx:
        ids = tx.ids()
        seen["count"] = tx.count()
        seen["ids"] = ids.tolist()
        b = tx.get_many(ids, labels=["t"], soft="dense", missing="keep")
        seen["rows"] = [b.embeddings.tolist(), b.metadata, b.taints, b.labels["t"].dense.tolist(), b.labels["t"].version.tolist()]
        probe = tx.get_many(np.arange(0, 200, dtype=np.uint64), missing="keep")
        seen["probe"] = probe.found.tolist()
        seen["query"] = tx.query("label(t).top1 = 'b'").ids.tolist()
        k = tx.knn(queries, k=5, labels="t")
        seen["knn"] = [k.ids.tolist(), k.similarities.tolist(), k.labels]
        seen["sets"] = [{key: v for key, v in s.items() if key != "versions"} for s in tx.label_sets()]
        seen["audit"] = tx.audit(int(ids[0]))
    db.close()
    return seen


def test_public_reads_do_not_depend_on_secret_rows(tmp_path):
    q = _twin(tmp_path / "a", secret_seed=1)[:4]
    _twin(tmp_path / "b", secret_seed=2)
    a, b = _observe(tmp_path / "a", q), _observe(tmp_path / "b", q)
    assert a["count"] == 60
    for key in a:
        if key == "audit":
            continue  # lineage names the import activities' times, which differ between twins
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key
    assert a["audit"]["labels"].keys() == b["audit"]["labels"].keys()


def test_secret_rows_are_absent_not_refused(tmp_path):
    _twin(tmp_path / "a", secret_seed=1)
    db = labeldb.open(tmp_path / "a")
    with db.read("public") as tx:
        with pytest.raises(labeldb.NotFound):
            tx.get(4)
        with pytest.raises(labeldb.NotFound):
            tx.audit(4)
    with db.read("secrecy=pii") as tx:
        assert tx.get(4).taint == {"secrecy": ["pii"], "integrity": []}
    db.close()
