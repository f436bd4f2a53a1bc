"""Round trips: what Python reads equals what was imported and what the CLI prints."""
import json

import numpy as np
import pytest

import labeldb
from conftest import cli, cli_json_lines


def test_get_many_returns_every_column_in_the_callers_order(corpus):
    db = labeldb.open(corpus["store"])
    order = np.random.default_rng(1).permutation(len(corpus["ids"]))
    with db.read("all") as tx:
        b = tx.get_many(corpus["ids"][order], labels=["teacher", "gold"], soft="dense")
    assert b.found.all()
    np.testing.assert_array_equal(b.embeddings, corpus["emb"][order])
    assert [m["i"] for m in b.metadata] == order.tolist()
    assert all("taint" not in m for m in b.metadata)  # the taint member is consumed on import
    np.testing.assert_array_equal(b.labels["gold"].hard, corpus["hard"][order])
    np.testing.assert_allclose(b.labels["teacher"].dense.sum(1), 1, atol=1e-5)
    assert b.labels["teacher"].dense.argmax(1).tolist() == corpus["soft"][order].argmax(1).tolist()
    i = order.tolist().index(3)
    assert b.taints[i] == {"secrecy": ["pii"], "integrity": []}
    assert b.payloads[i] == bytes([3]) * 3
    db.close()


def test_compact_soft_labels_equal_the_dense_decode(corpus):
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        dense = tx.get_many(corpus["ids"], labels="teacher", soft="dense").labels["teacher"].dense
        compact = tx.get_many(corpus["ids"], labels="teacher", soft="compact").labels["teacher"]
        narrower = tx.get_many(corpus["ids"], labels="teacher", soft="compact", topk=2).labels["teacher"]
    assert compact.top_classes.shape == (len(corpus["ids"]), 3)
    picked = np.take_along_axis(dense, compact.top_classes.astype(np.int64), axis=1)
    np.testing.assert_allclose(compact.top_probabilities, picked, atol=1e-6)
    np.testing.assert_allclose(compact.top_probabilities.sum(1) + compact.leftover, 1, atol=1e-5)
    np.testing.assert_array_equal(narrower.top_classes, compact.top_classes[:, :2])
    np.testing.assert_allclose(narrower.leftover, compact.leftover + compact.top_probabilities[:, 2], atol=1e-6)
    db.close()


def test_get_matches_the_cli(corpus):
    sid = int(corpus["ids"][10])
    printed = json.loads(cli("get", corpus["store"], str(sid), "--format", "json", "--payload", "--clearance", "all").stdout)
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        s = tx.get(sid, labels=["teacher", "gold"])
    assert s.id == printed["id"]
    np.testing.assert_allclose(s.embedding, printed["embedding"], rtol=1e-6)
    assert s.metadata == printed["metadata"]
    top = printed["labels"]["teacher"]["top"]
    assert top[0]["class"] == int(np.argmax(s.labels["teacher"]["soft"]))
    assert abs(top[0]["p"] - float(np.max(s.labels["teacher"]["soft"]))) < 1e-6
    assert s.labels["gold"]["hard"] == printed["labels"]["gold"]["hard"]
    db.close()


def test_label_sets_and_query_match_the_cli(corpus):
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        sets = {s["name"]: s for s in tx.label_sets()}
        ids = tx.query("label(teacher).top1 = 'class2'").ids
    printed = {s["name"]: s for s in cli_json_lines("labels", "list", corpus["store"], "--clearance", "all")}
    for name, summary in printed.items():
        assert {k: sets[name][k] for k in summary} == summary
    rows = cli_json_lines("query", corpus["store"], "label(teacher).top1 = 'class2'", "--clearance", "all")
    assert ids.tolist() == [r["id"] for r in rows]
    expected = sorted(int(i) for i, p in zip(corpus["ids"], corpus["soft"]) if p.argmax() == 2)
    assert ids.tolist() == expected
    db.close()


def test_knn_matches_the_cli(corpus, tmp_path):
    q = corpus["emb"][:2] + 0.01
    np.save(tmp_path / "q.npy", q)
    rows = cli_json_lines("knn", corpus["store"], "--query", str(tmp_path / "q.npy"), "--k", "4", "--clearance", "all")
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        r = tx.knn(q, k=4)
    for i, row in enumerate(rows):
        assert r.ids[i].tolist() == [n["id"] for n in row["neighbors"]]
    db.close()


def test_absent_ids_raise_not_found_or_are_marked(corpus):
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        with pytest.raises(labeldb.NotFound, match="10001"):
            tx.get_many([int(corpus["ids"][0]), 10_001])
        b = tx.get_many([10_001, int(corpus["ids"][0])], missing="keep", labels="gold")
    assert b.found.tolist() == [False, True]
    assert b.labels["gold"].hard[0] == -1 and b.labels["gold"].version[0] == 0
    db.close()


def test_audit_and_provenance_are_the_cli_documents(corpus):
    sid = int(corpus["ids"][5])
    printed = json.loads(cli("audit", corpus["store"], str(sid), "--format", "json", "--clearance", "all").stdout)
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        assert tx.audit(sid) == printed
        log = tx.provenance()
    assert log["log"]["ok"] is True and log["log"]["records"] >= 3
    assert any(a["prov:type"] == "labels.import" or "label" in a["prov:type"] for a in log["prov"]["activity"].values())
    db.close()


def test_compact_width_comes_from_the_soft_sets_codec(corpus):
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        b = tx.get_many(corpus["ids"][:4], labels=["teacher", "gold"])  # gold has no codec: K from teacher
    assert b.labels["teacher"].top_classes.shape == (4, 3) and b.labels["gold"].top_classes.shape == (4, 3)
    assert (b.labels["gold"].top_classes == -1).all()
    db.close()
