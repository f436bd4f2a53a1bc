"""Writes through Python, and bad input: a clear exception, nothing written, no crash."""
import os
import threading

import numpy as np
import pytest

import labeldb


def _snapshot(path):
    db = labeldb.open(path)
    with db.read("all") as tx:
        state = (tx.count(), tx.ids().tolist(), [(s["name"], s["latest"]) for s in tx.label_sets()])
    db.close()
    return state


def test_put_import_and_read_back(tmp_path):
    db = labeldb.create(tmp_path / "s", dimension=3, classes=["a", "b"])
    emb = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))  # Fortran order, float64: copied once
    with db.write() as tx:
        assert tx.put([7, 2], emb, metadata=[{"k": 1}, {"k": 2}], payloads=[b"x", b"yz"]) == {"inserted": 2, "replaced": 0}
        tx.import_labels("t", soft=[[0.25, 0.75], [1.0, 0.0]], ids=[7, 2], codec="dense:f32")
        tx.import_labels("m", multi=[[0, 1], []], ids=[7, 2])
        assert tx.get(7).metadata == {"k": 1}  # a write transaction sees its own changes
    with db.read() as tx:
        b = tx.get_many([2, 7], labels="t", soft="dense")
        np.testing.assert_array_equal(b.embeddings, np.asarray(emb, np.float32)[[1, 0]])
        np.testing.assert_allclose(b.labels["t"].dense, [[1, 0], [0.25, 0.75]])
        assert b.payloads == [b"yz", b"x"]
    with db.write() as tx:
        assert tx.delete([7, 99]) == 1
    with db.read() as tx:
        assert tx.ids().tolist() == [2]
    db.close()


@pytest.mark.parametrize("bad", [
    dict(ids=[1, 2], embeddings=np.zeros((2, 7), np.float32)),            # wrong dimension
    dict(ids=[1, 1], embeddings=np.zeros((2, 8), np.float32)),            # repeated id
    dict(ids=[1.5, 2], embeddings=np.zeros((2, 8), np.float32)),          # float ids
    dict(ids=[-1, 2], embeddings=np.zeros((2, 8), np.float32)),           # negative ids
    dict(ids=[1, 2], embeddings=np.full((2, 8), np.nan, np.float32)),     # not finite
    dict(ids=[1, 2], embeddings=np.zeros((2, 8), np.float32), metadata=[{}, "not json"]),
    dict(ids=[1, 2], embeddings=np.zeros((2, 8), np.float32), metadata=[{}]),
    dict(ids=[1, 2], embeddings=np.zeros((2, 8), np.float32), integrity=["reviewed"]),  # endorse without privilege
])
def test_bad_puts_raise_and_write_nothing(copy, bad):
    before = _snapshot(copy)
    db = labeldb.open(copy, write=True)
    with pytest.raises(labeldb.BadInput):
        with db.write() as tx:
            tx.put(**bad)
    db.close()
    assert _snapshot(copy) == before


def test_a_failed_call_fails_the_transaction(copy, corpus):
    before = _snapshot(copy)
    db = labeldb.open(copy, write=True)
    tx = db.write()
    tx.put([50_000], np.zeros((1, 8), np.float32))
    with pytest.raises(labeldb.BadInput):
        tx.import_labels("teacher", soft=np.full((1, 6), 0.5, np.float32), ids=[50_000])  # rows do not sum to 1
    with pytest.raises(labeldb.BadInput, match="earlier call"):
        tx.put([50_001], np.zeros((1, 8), np.float32))
    with pytest.raises(labeldb.BadInput):
        tx.commit()
    db.close()
    assert _snapshot(copy) == before


def test_unknown_names_and_bad_clearances(corpus):
    db = labeldb.open(corpus["store"])
    with pytest.raises(labeldb.BadInput):
        db.read("secrecy=no-such-tag")
    with pytest.raises(labeldb.BadInput):
        db.read("secrecy=a;;")
    with db.read("all") as tx:
        with pytest.raises(labeldb.NotFound, match="nosuch"):
            tx.get_many(corpus["ids"][:2], labels="nosuch")
        with pytest.raises(labeldb.NotFound):
            tx.get_many(corpus["ids"][:2], regen="nosuch")
        with pytest.raises(labeldb.BadInput):
            tx.query("label(teacher).top1 = ")
        with pytest.raises(labeldb.BadInput):
            tx.knn(np.zeros((1, 3), np.float32))
    db.close()


def test_misused_handles_raise(corpus, copy):
    db = labeldb.open(corpus["store"])
    tx = db.read("all")
    with pytest.raises(labeldb.BadInput, match="still open"):
        db.close()
    errors = []
    threading.Thread(target=lambda: errors.append(_catch(tx.count))).start()
    import time; time.sleep(0.5)
    assert isinstance(errors[0], labeldb.BadInput) and "thread" in str(errors[0])
    tx.commit()
    with pytest.raises(labeldb.BadInput, match="ended"):
        tx.count()
    db.close()
    with pytest.raises(labeldb.BadInput, match="closed"):
        db.read()
    with pytest.raises(labeldb.StoreError):
        labeldb.open(corpus["store"] + "-missing")
    ro = labeldb.open(copy)
    with pytest.raises(labeldb.StoreError, match="read-only"):
        ro.write()
    ro.close()
    w = labeldb.open(copy, write=True)
    with pytest.raises(labeldb.BadInput, match="already open for writing"):
        labeldb.open(copy, write=True)
    t1 = w.write()
    with pytest.raises(labeldb.BadInput, match="already open on this thread"):
        w.write()
    t1.abort()
    w.close()


def _catch(f):
    try:
        f()
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error
    return None


def test_a_handle_used_after_fork_raises_in_the_child(corpus):
    db = labeldb.open(corpus["store"])
    tx = db.read("all")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tx.count()
        except labeldb.BadInput as error:
            code = 0 if "fork" in str(error) else 2
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    tx.abort()
    db.close()


def test_refusals_are_their_own_class(corpus, copy):
    db = labeldb.open(copy, write=True)
    with pytest.raises(labeldb.Refused):
        with db.write() as tx:
            tx.put([60_000], np.zeros((1, 8), np.float32), integrity=["reviewed"])
    with pytest.raises(labeldb.Refused):
        db.verify("public")
    assert db.verify("all")["ok"] is True
    db.close()


def test_relabel_heads_and_backup(copy, corpus, tmp_path):
    db = labeldb.open(copy, write=True)
    sid = int(corpus["ids"][0])
    with db.write() as tx:
        assert tx.relabel([sid], add_secrecy=["embargo"]) == 1
    with db.read("public") as tx:
        with pytest.raises(labeldb.NotFound):
            tx.get(sid)
    with pytest.raises(labeldb.Refused):
        with db.write() as tx:
            tx.relabel([sid], remove_secrecy=["embargo"])  # declassify without the privilege
    with db.write() as tx:
        tx.relabel([sid], remove_secrecy=["embargo"], privilege=["embargo"])
        tx.import_head("names", np.ones((8, 6), np.float32) / 6)
    fitted = db.fit_projector("p", "teacher", rank=2, head="names", epochs=0)
    assert fitted["head"] == "names" and fitted["rank"] == 2
    db.backup(tmp_path / "backup")
    db.close()
    copy_db = labeldb.open(tmp_path / "backup")
    with copy_db.read("all") as tx:
        assert tx.count() == len(corpus["ids"])
        assert tx.get(sid).taint == {"secrecy": [], "integrity": []}
        assert [p["name"] for p in tx.projectors()] == ["p"]
    copy_db.close()


def test_label_set_arrow_has_only_labelled_rows(copy):
    db = labeldb.open(copy, write=True)
    with db.write() as tx:
        tx.put([70_000], np.zeros((1, 8), np.float32))  # no labels
    with db.read("all") as tx:
        table = tx.label_set("gold").to_arrow()
        everything = tx.count()
    assert table.num_rows == everything - 1 and 70_000 not in table.column("id").to_pylist()
    assert table.column("gold").null_count == 0
    db.close()


def test_compact_soft_labels_import_as_given(copy, corpus):
    db = labeldb.open(copy, write=True)
    ids = corpus["ids"][:10]
    cls = np.array([[0, 3, 5]] * 10, np.uint16)
    probs = np.array([[0.5, 0.25, 0.125]] * 10, np.float16)
    with db.write() as tx:
        v = tx.import_labels("compact", topk_classes=cls, topk_probs=probs, ids=ids)
    with pytest.raises(labeldb.BadInput, match="appears twice"):
        with db.write() as tx:
            tx.import_labels("bad", topk_classes=[[1, 1, 2]] * 10, topk_probs=probs, ids=ids)
    assert v["fidelity"]["exact"] is True and v["fidelity"]["mean_kl"] == 0
    with db.read("all") as tx:
        b = tx.get_many(ids, labels="compact", soft="compact")
        assert [s["codec"] for s in tx.label_sets() if s["name"] == "compact"] == ["topk:3:f16"]
    np.testing.assert_array_equal(b.labels["compact"].top_classes, cls.astype(np.int32))
    np.testing.assert_allclose(b.labels["compact"].top_probabilities, probs.astype(np.float32), atol=1e-6)
    np.testing.assert_allclose(b.labels["compact"].leftover, 0.125, atol=1e-6)
    db.close()
