"""Labels per augmented view from Python (issue 14): import through the C API, read all views or
the one an epoch replays, equal to what the CLI exports, refusals, and the torch option."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import labeldb
from conftest import cli


def make_store(root: Path, n: int = 8, c: int = 5) -> str:
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(c)))
    np.save(root / "emb.npy", np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32))
    np.save(root / "ids.npy", np.arange(1, n + 1, dtype=np.uint64))
    store = str(root / "store")
    cli("init", store, "--dim", "4", "--classes", str(root / "classes.txt"))
    cli("import", store, "--embeddings", str(root / "emb.npy"), "--ids", str(root / "ids.npy"))
    return store


def view_rows(rng, ids, per_sample: int):
    """(ids, views-file objects, top-2 classes, probabilities): views numbered out of order."""
    out_ids, views, classes, probs = [], [], [], []
    for sid in ids:
        for v in rng.permutation(per_sample * 2)[:per_sample]:
            x0, y0 = rng.uniform(0, 0.5, size=2)
            views.append({"view": int(v), "crop": [float(np.float32(x0)), float(np.float32(y0)), float(np.float32(x0 + 0.5)), float(np.float32(y0 + 0.25))],
                          "flip": bool(rng.integers(2)), "epoch": int(v) // 2, "seed": int(rng.integers(2 ** 32))})
            if v == 3:
                views[-1]["scale"] = [0.08, 1.0]
            out_ids.append(sid)
            top = rng.permutation(5)[:2]
            classes.append(top)
            probs.append([0.625, 0.25])
    return np.array(out_ids, np.uint64), views, np.array(classes, np.int32), np.array(probs, np.float32)


def test_import_and_read_every_view_equal_to_the_cli_export(tmp_path):
    store = make_store(tmp_path)
    rng = np.random.default_rng(4)
    ids, views, classes, probs = view_rows(rng, [2, 5, 7], 4)
    with labeldb.open(store, write=True) as db:
        with db.write() as tx:
            info = tx.import_labels("fkd", topk_classes=classes, topk_probs=probs, ids=ids, views=views, agent="teacher")
        assert (info["rows"], info["views"], info["labelled"]) == (3, 12, 3)
        with db.read() as tx:
            got = tx.views([7, 1, 2, 5, 99], "fkd")
            dense = tx.views([7, 1, 2, 5, 99], "fkd", soft="dense")
    assert list(got.versions) == [1, 0, 1, 1, 0] and list(np.diff(got.offsets)) == [4, 0, 4, 4, 0]
    cli("labels", "export", store, "fkd", "--out", str(tmp_path / "p.npy"), "--ids-out", str(tmp_path / "i.npy"),
        "--views-out", str(tmp_path / "v.jsonl"))
    exported = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    export_ids = np.load(tmp_path / "i.npy")
    p = np.load(tmp_path / "p.npy")
    # The CLI's order is (id, view): samples 2, 5, 7; Python's follows the ids asked for.
    order = [got.of(2), got.of(3), got.of(0)]
    rows = np.concatenate([np.arange(s.start, s.stop) for s in order])
    assert list(export_ids) == [2] * 4 + [5] * 4 + [7] * 4
    for row, line in zip(rows, exported):
        assert got.view[row] == line["view"] and got.flip[row] == line["flip"]
        assert (got.epoch[row], got.seed[row]) == (line["epoch"], line["seed"])
        assert list(got.crop[row]) == pytest.approx(line["crop"])
        assert got.extras[row] == ({"scale": [0.08, 1]} if "scale" in line else None)
    np.testing.assert_allclose(dense.dense[rows], p, atol=1e-6)
    # The compact form is the dense one's top two.
    for row in rows:
        assert list(got.top_classes[row]) == list(np.argsort(-dense.dense[row], kind="stable")[:2])


def test_R57_epoch_replays_index_e_mod_n_in_view_number_order(tmp_path):
    store = make_store(tmp_path)
    ids = np.array([3, 3, 3, 6], np.uint64)
    views = {"view": [9, 2, 5, 4], "crop": [[0, 0, 1, 1]] * 4, "seed": [90, 20, 50, 40]}
    with labeldb.open(store, write=True) as db:
        with db.write() as tx:
            tx.import_labels("v", hard=[0, 1, 2, 3], ids=ids, views=views)
        with db.read() as tx:
            for epoch in range(7):
                one = tx.views([3, 6, 4], "v", epoch=epoch)
                assert list(one.offsets) == [0, 1, 2, 2]
                assert list(one.view) == [[2, 5, 9][epoch % 3], 4]
                assert list(one.seed) == [[20, 50, 90][epoch % 3], 40]
                assert list(one.hard) == [[1, 2, 0][epoch % 3], 3]


def test_refusals_name_what_is_wrong_and_write_nothing(tmp_path):
    store = make_store(tmp_path)
    one = [{"view": 0, "crop": [0, 0, 1, 1]}]
    with labeldb.open(store, write=True) as db:
        with db.write() as tx:
            tx.import_labels("plain", hard=[1], ids=[1])
            tx.import_labels("v", hard=[1], ids=[1], views=one)
        cases = [
            (dict(hard=[0, 1], ids=[2, 2], views=one * 2), "view 0 of id 2 appears twice"),
            (dict(hard=[0], ids=[2], views=[{"view": 0, "crop": [0.5, 0, 0.5, 1]}]), "zero area"),
            (dict(hard=[0], ids=[2], views=[{"view": 0, "crop": [0, 0, 1.25, 1]}]), "outside [0, 1]"),
            (dict(hard=[0, 1], ids=[2, 3], views=one), "1 view numbers for 2 label rows"),
            (dict(hard=[0], ids=[2], views=[{"crop": [0, 0, 1, 1]}]), "at least 'view' and 'crop'"),
            (dict(multi=[[0]], ids=[2], views=one), "not multi-labels"),
        ]
        for kwargs, fragment in cases:
            with pytest.raises(labeldb.BadInput, match=None) as caught:
                with db.write() as tx:
                    tx.import_labels("v", **kwargs)
            assert fragment in str(caught.value), str(caught.value)
        with pytest.raises(labeldb.BadInput, match="holds one label per sample"):
            with db.write() as tx:
                tx.import_labels("plain", hard=[0], ids=[2], views=one)
        with pytest.raises(labeldb.BadInput, match="holds labels per augmented view"):
            with db.write() as tx:
                tx.import_labels("v", hard=[0], ids=[2])
        with db.read() as tx:
            assert [s["latest"] for s in tx.label_sets()] == [1, 1]
            with pytest.raises(labeldb.BadInput, match="holds one label per sample"):
                tx.views([1], "plain")
            with pytest.raises(labeldb.BadInput, match="per augmented view"):
                tx.get_many([1], labels=["v"])


def test_clearance_hides_views_from_a_secret_source(tmp_path):
    store = make_store(tmp_path)
    with labeldb.open(store, write=True) as db:
        with db.write(clearance="all") as tx:
            tx.import_labels("v", hard=[0, 1], ids=[1, 1], views={"view": [0, 1], "crop": [[0, 0, 1, 1]] * 2})
            tx.import_labels("v", hard=[2], ids=[1], views={"view": [7], "crop": [[0, 0, 0.5, 0.5]]}, secrecy=["vendor"])
        with db.read() as tx:
            public = tx.views([1], "v")
        with db.read(clearance="secrecy=vendor;integrity=") as tx:
            cleared = tx.views([1], "v")
    assert list(public.view) == [0, 1] and list(public.versions) == [1]
    assert list(cleared.view) == [7] and list(cleared.versions) == [2]


def test_compact_views_with_leftover_zero_view_reads_and_refused_arguments(tmp_path):
    store = make_store(tmp_path)
    views = {"view": [0, 1], "crop": [[0, 0, 1, 1]] * 2}
    with labeldb.open(store, write=True) as db:
        with db.write() as tx:
            tx.import_labels("v", topk_classes=[[0, 1], [2, 3]], topk_probs=[[0.5, 0.25], [0.5, 0.125]], leftover=[0.25, 0.375],
                             ids=[1, 1], views=views)
        with db.read() as tx:
            got = tx.views([1], "v")
            assert list(got.leftover) == pytest.approx([0.25, 0.375], abs=1e-3)
            # A batch that reads no view still has every column the form asks for.
            none = tx.views([2, 3], "v", soft="dense")
            assert none.dense is not None and none.dense.shape == (0, 5) and list(none.offsets) == [0, 0, 0]
            assert tx.views([2], "v").top_classes.shape == (0, 2)
        refusals = [
            (dict(topk_classes=[[0, 1]] * 2, topk_probs=[[0.5, 0.25]] * 2, leftover=[0.25], ids=[2, 2], views=views), "leftover: 1 values for 2 ids"),
            (dict(soft=np.full((2, 5), 0.2), logits=True, ids=[2, 2], views=views), "not multi-labels or logits"),
            (dict(hard=[0], ids=[2], views=[{"view": 0, "crop": [0, 0, 1, 1], "hard": 3}]), "extra member 'hard' is reserved"),
        ]
        for kwargs, fragment in refusals:
            with pytest.raises(labeldb.BadInput) as caught:
                with db.write() as tx:
                    tx.import_labels("v", **kwargs)
            assert fragment in str(caught.value), str(caught.value)
