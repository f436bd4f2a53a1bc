"""Sharded corpora from Python (labeldb.open_corpus): the manifest and routing come from the
engine, each shard reads pinned to the manifest, and label imports route across the shards with
the results the CLI reads from the corpus and a single store gives after the same import."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import labeldb
from conftest import cli, cli_json_lines


@pytest.fixture
def sharded(corpus, tmp_path) -> str:
    target = tmp_path / "sharded"
    cli("shard", corpus["store"], str(target), "--shards", "3", "--clearance", "all")
    return str(target)


def test_manifest_and_routing_come_from_the_engine(corpus, sharded):
    c = labeldb.open_corpus(sharded)
    assert len(c) == 3 and c.classes == corpus["classes"] and c.dimension == 8
    assert c.manifest["routing"] == {"rule": "hash"} and c.manifest["label_sets"] == {"teacher": 1, "gold": 1}
    routes = c.route(corpus["ids"])
    for shard in range(3):
        with c.open_shard(shard) as store, store.read("all") as tx:
            held = tx.ids()
        assert set(held.tolist()) == set(corpus["ids"][routes == shard].tolist())
    with pytest.raises(labeldb.BadInput, match="sharded corpus"):
        labeldb.open(sharded)
    with pytest.raises(labeldb.BadInput):
        c.open_shard(3)


def test_shard_reads_equal_the_store(corpus, sharded):
    c = labeldb.open_corpus(sharded)
    store = labeldb.open(corpus["store"])
    with store.read("all") as tx:
        whole = tx.get_many(corpus["ids"], labels=["teacher", "gold"], soft="dense")
    routes = c.route(corpus["ids"])
    for shard in range(3):
        mine = corpus["ids"][routes == shard]
        with c.open_shard(shard) as s, s.read("all") as tx:
            part = tx.get_many(mine, labels=["teacher", "gold"], soft="dense")
        rows = np.nonzero(routes == shard)[0]
        np.testing.assert_array_equal(part.embeddings, whole.embeddings[rows])
        np.testing.assert_array_equal(part.labels["teacher"].dense, whole.labels["teacher"].dense[rows])
        np.testing.assert_array_equal(part.labels["gold"].hard, whole.labels["gold"].hard[rows])
    store.close()


def test_import_labels_routes_rows_and_commits_one_version(corpus, sharded, tmp_path):
    c = labeldb.open_corpus(sharded)
    ids = corpus["ids"][::2]
    logits = np.random.default_rng(3).normal(size=(len(ids), 6)).astype(np.float32)
    result = c.import_labels("student", ids, soft=logits, logits=True, temperature=2.0, agent="job-7",
                             provenance={"model": "resnet", "job": 7})
    assert result["version"] == 1 and result["rows"] == len(ids) and result["shards"] == 3
    assert labeldb.open_corpus(sharded).manifest["label_sets"]["student"] == 1
    # The same import into a copy of the store reads the same through the CLI.
    single = tmp_path / "single"
    shutil.copytree(corpus["store"], single)
    s = labeldb.open(single, write=True)
    with s.write("all") as tx:
        tx.import_labels("student", ids=ids, soft=logits, logits=True, temperature=2.0, agent="job-7")
    s.close()
    np.save(tmp_path / "q.npy", corpus["emb"][:3])
    for args in (["query", "label(student).confidence > 0.3", "--labels", "student"],
                 ["knn", "--query", str(tmp_path / "q.npy"), "--k", "5"]):
        a = cli_json_lines(args[0], sharded, *args[1:], "--clearance", "all")
        b = cli_json_lines(args[0], str(single), *args[1:], "--clearance", "all")
        assert a == b and a
    shard_log = cli_json_lines("audit", os.path.join(sharded, c.shards[0]), str(int(ids[0])), "--clearance", "all")
    assert shard_log  # the shard's own provenance records the import


def test_bad_corpus_imports_write_nothing(corpus, sharded):
    c = labeldb.open_corpus(sharded)
    before = [open(os.path.join(sharded, name, "data.mdb"), "rb").read() for name in c.shards]
    manifest = open(os.path.join(sharded, "corpus.json"), "rb").read()
    with pytest.raises(labeldb.BadInput):
        c.import_labels("student", [1, 2], hard=[0])               # lengths differ
    with pytest.raises(labeldb.BadInput):
        c.import_labels("student", corpus["ids"][:2], soft=np.full((2, 6), 0.5, np.float32))  # not a distribution
    with pytest.raises(labeldb.Error):
        c.import_labels("student", [123_456_789], hard=[1])        # no such sample
    assert [open(os.path.join(sharded, name, "data.mdb"), "rb").read() for name in c.shards] == before
    assert open(os.path.join(sharded, "corpus.json"), "rb").read() == manifest


def test_damaged_manifest_is_refused(sharded):
    path = os.path.join(sharded, "corpus.json")
    text = json.loads(open(path).read())
    text["generation"] = 2  # the checksum no longer matches
    open(path, "w").write(json.dumps(text))
    with pytest.raises(labeldb.StoreError, match="checksum"):
        labeldb.open_corpus(sharded)


def test_shards_opened_through_one_corpus_read_its_manifest(corpus, sharded):
    """A reader pins the manifest it read: shards it opens after a later import still read the
    versions it saw (workers opening shards lazily read one committed state)."""
    reader = labeldb.open_corpus(sharded)
    ids = corpus["ids"][:10]
    labeldb.open_corpus(sharded).import_labels("teacher", ids, hard=[1] * 10, agent="later")
    with reader.open_shard(0) as store, store.read("all") as tx:
        assert [s["latest"] for s in tx.label_sets() if s["name"] == "teacher"] == [1]
    with labeldb.open_corpus(sharded).open_shard(0) as store, store.read("all") as tx:
        assert [s["latest"] for s in tx.label_sets() if s["name"] == "teacher"] == [2]


def test_put_routes_samples_and_reads_as_the_store(corpus, sharded, tmp_path):
    c = labeldb.open_corpus(sharded)
    rng = np.random.default_rng(9)
    ids = np.array([20_001, 20_002, 20_003, int(corpus["ids"][0])], np.uint64)
    emb = rng.normal(size=(4, 8)).astype(np.float32)
    meta = [{"i": 1}, {"i": 2, "taint": {"secrecy": ["pii"]}}, {"i": 3}, {"i": 0}]
    payloads = [b"a", b"", b"ccc", b"d"]
    with pytest.raises(labeldb.Error):
        c.put(ids, emb, metadata=meta, payloads=payloads, mode="insert")   # ids[3] is stored: nothing written
    assert labeldb.open_corpus(sharded).manifest["generation"] == 1
    assert c.put(ids, emb, metadata=meta, payloads=payloads, provenance={"job": "ingest-1"}) == {"inserted": 3, "replaced": 1, "shards": 3}
    single = tmp_path / "single"
    shutil.copytree(corpus["store"], single)
    s = labeldb.open(single, write=True)
    with s.write("all") as tx:
        tx.put(ids, emb, metadata=meta, payloads=payloads)
    s.close()
    for clearance in ("all", "public"):
        a = cli_json_lines("scan", sharded, "--clearance", clearance)
        b = cli_json_lines("scan", str(single), "--clearance", clearance)
        assert a == b and len(a) >= len(corpus["ids"])
    for id in ids:
        assert cli("get", sharded, str(int(id)), "--clearance", "all", "--payload").stdout.replace(sharded, "") \
            .split("label")[0] == cli("get", str(single), str(int(id)), "--clearance", "all", "--payload").stdout.split("label")[0]


def test_create_corpus_then_put_and_import(tmp_path):
    c = labeldb.create_corpus(tmp_path / "new", dimension=3, classes=["a", "b"], shards=2)
    assert len(c) == 2 and c.manifest["label_sets"] == {}
    ids = np.arange(1, 11, dtype=np.uint64) * 7919
    c.put(ids, np.eye(10, 3, dtype=np.float32) + 0.1, metadata=[{"n": int(i)} for i in range(10)])
    c.import_labels("y", ids, hard=np.arange(10) % 2)
    rows = cli_json_lines("query", str(tmp_path / "new"), "label(y).top1 = 'b'", "--labels", "y")
    assert [r["id"] for r in rows] == [int(i) for i in ids[1::2]]
    with pytest.raises(labeldb.Error):
        labeldb.create_corpus(tmp_path / "new", dimension=3, classes=["a", "b"], shards=2)   # not empty


def test_fit_projector_across_shards_equals_the_store_fit(corpus, sharded, tmp_path):
    c = labeldb.open_corpus(sharded)
    copy = tmp_path / "copy"
    shutil.copytree(corpus["store"], copy)
    store = labeldb.open(str(copy), write=True)
    options = dict(rank=3, epochs=0, max_kl=0.05, seed=4, holdout=0.2)
    single = store.fit_projector("p", "teacher", **options)
    sharded_fit = c.fit_projector("p", "teacher", **options)
    assert sharded_fit["version"] == 1 and labeldb.open_corpus(sharded).manifest["projectors"]["p"] == 1
    assert sharded_fit["samples"] == single["samples"] and sharded_fit["train_rows"] == single["train_rows"]
    for key in ("train_mean_kl", "holdout_mean_kl", "closed_form_mean_kl"):
        assert sharded_fit[key] == pytest.approx(single[key], rel=1e-4)
    # Each sample regenerates in its own shard as in the store, and its bound holds.
    with store.read("all") as tx:
        whole = tx.get_many(corpus["ids"], regen=["p"], soft="dense")
    c = labeldb.open_corpus(sharded)   # a Corpus reads the manifest it opened: this one records `p`
    routes = c.route(corpus["ids"])
    for shard in range(len(c)):
        rows = np.nonzero(routes == shard)[0]
        with c.open_shard(shard) as s, s.read("all") as tx:
            part = tx.get_many(corpus["ids"][rows], regen=["p"], soft="dense")
        same = part.regen["p"].status == whole.regen["p"].status[rows]
        assert same.mean() > 0.95
        np.testing.assert_allclose(part.regen["p"].probabilities[same], whole.regen["p"].probabilities[rows][same], atol=1e-5)
    store.close()
    # Bad options are refused before anything is written.
    with pytest.raises(labeldb.BadInput):
        c.fit_projector("q", "teacher", rank=3, colour="blue")
    assert "q" not in labeldb.open_corpus(sharded).manifest["projectors"]


def test_fit_projector_with_parts_served_elsewhere_equals_the_fit_on_threads(sharded, tmp_path):
    # The parts are served from a copy of the corpus (one process opens a store once; Ray actors
    # live in processes of their own): the same rows, so the same requests and replies.
    threaded, replica = tmp_path / "threaded", tmp_path / "replica"
    shutil.copytree(sharded, threaded)
    shutil.copytree(sharded, replica)
    options = dict(rank=3, max_steps=40, max_kl=0.05, seed=4, holdout=0.2, clearance="all")
    local = labeldb.open_corpus(str(threaded)).fit_projector("p", "teacher", **options)
    c = labeldb.open_corpus(sharded)
    parts = [labeldb.FitPart(replica, shard, "all") for shard in range(len(c))]
    calls = [0] * len(parts)

    def serve(shard, request):
        calls[shard] += 1
        return parts[shard].serve(request)

    remote = c.fit_projector("p", "teacher", parts=serve, **options)
    assert all(n > 5 for n in calls)
    for key in ("samples", "train_rows", "train_mean_kl", "holdout_mean_kl", "closed_form_mean_kl", "corrections", "steps"):
        assert remote[key] == local[key], key
    # Every shard regenerates as the threaded fit's shard does.
    for shard in range(len(c)):
        with labeldb.open_corpus(str(threaded)).open_shard(shard) as a, a.read("all") as ta, \
                labeldb.open_corpus(sharded).open_shard(shard) as b, b.read("all") as tb:
            x, y = ta.get_many(ta.ids(), regen=["p"]), tb.get_many(tb.ids(), regen=["p"])
            np.testing.assert_array_equal(x.regen["p"].probabilities, y.regen["p"].probabilities)
            np.testing.assert_array_equal(x.regen["p"].status, y.regen["p"].status)
    # A part that fails fails the fit with its own error, and nothing is written.
    def broken(shard, request):
        raise RuntimeError("the actor died")

    with pytest.raises(RuntimeError, match="the actor died"):
        labeldb.open_corpus(sharded).fit_projector("q", "teacher", parts=broken, **options)
    assert "q" not in labeldb.open_corpus(sharded).manifest["projectors"]
    with pytest.raises(labeldb.BadInput):
        parts[0].serve(b"\x02garbage")
    # The fit wrote `sharded`: the replica's servers hold an older state and refuse the next fit;
    # a server under another clearance than the fit's refuses too.
    with pytest.raises(labeldb.BadInput, match="not in the state the fit read"):
        labeldb.open_corpus(sharded).fit_projector("q", "teacher", parts=serve, **options)
    third = tmp_path / "third"
    shutil.copytree(replica, third)
    with labeldb.FitPart(replica, 0, "public") as narrow:
        with pytest.raises(labeldb.BadInput, match="clearance"):
            labeldb.open_corpus(str(third)).fit_projector(
                "q", "teacher", parts=lambda shard, request: (narrow if shard == 0 else parts[shard]).serve(request), **options)
    for part in parts:
        part.close()


def test_a_pinned_shard_reads_the_projector_versions_of_its_manifest(corpus, sharded):
    early = labeldb.open_corpus(sharded)          # read before the fits: no projector `late`
    c = labeldb.open_corpus(sharded)
    c.fit_projector("late", "teacher", rank=2, epochs=0)
    later = labeldb.open_corpus(sharded)
    assert later.pin["projectors"]["late"] == 1 and "late" not in early.pin["projectors"]
    with early.open_shard(0) as shard, shard.read("all") as tx:
        with pytest.raises(labeldb.NotFound):
            tx.get_many(tx.ids()[:2], regen=["late"])
    with later.open_shard(0) as shard, shard.read("all") as tx:
        assert tx.get_many(tx.ids()[:2], regen=["late"]).regen["late"].probabilities.shape[0] == 2
    # A pin of label sets alone (the earlier form) still opens, reading the manifest's projectors now.
    with later.open_shard(1, pin=later.manifest["label_sets"]) as shard, shard.read("all") as tx:
        assert len(tx.get_many(tx.ids()[:1], regen=["late"]).regen["late"].status) == 1


def _write_part(path, name, session, shard, ids, logits, check_only):
    """A spawned process writing one shard's part of a write session (an LMDB environment must
    not cross fork(): each process opens the shard itself)."""
    import labeldb as ldb
    return ldb.open_corpus(path).import_labels(name, ids, soft=logits, logits=True, agent="job-9", session=session, shard=shard,
                                               check_only=check_only, provenance={"model": "m"})


def test_a_write_session_takes_each_shards_part_from_its_own_process(corpus, sharded, tmp_path):
    import multiprocessing
    c = labeldb.open_corpus(sharded)
    ids = corpus["ids"][1::2]
    logits = np.random.default_rng(8).normal(size=(len(ids), 6)).astype(np.float32)
    routes = c.route(ids)
    before = cli_json_lines("query", sharded, "id >= 0", "--labels", "teacher", "--clearance", "all")
    with c.writer() as writer, multiprocessing.get_context("spawn").Pool(3) as pool:
        session = writer.begin("student")
        assert session["version"] == 1 and session["label_set"] == "student"
        with pytest.raises(labeldb.StoreError, match="one writer at a time"):
            labeldb.open_corpus(sharded).import_labels("student", ids, soft=logits, logits=True)
        for check_only in (True, False):
            parts = pool.starmap(_write_part, [(sharded, "student", session, shard, ids[routes == shard], logits[routes == shard], check_only)
                                              for shard in range(3)])
            assert [p["rows"] for p in parts] == [int((routes == shard).sum()) for shard in range(3)]
            # Nothing of the new version shows before the commit.
            assert "student" not in labeldb.open_corpus(sharded).manifest["label_sets"]
            assert cli("query", sharded, "id >= 0", "--labels", "student", "--clearance", "all", check=False).returncode == 1
            assert cli_json_lines("query", sharded, "id >= 0", "--labels", "teacher", "--clearance", "all") == before
        committed = writer.commit()
        assert committed["version"] == 1 and committed["rows"] == len(ids) and committed["shards"] == 3
    assert labeldb.open_corpus(sharded).manifest["label_sets"]["student"] == 1
    # Equal to the same import through the corpus's own writer, in a second split of the store.
    other = tmp_path / "other"
    cli("shard", corpus["store"], str(other), "--shards", "3", "--clearance", "all")
    labeldb.open_corpus(other).import_labels("student", ids, soft=logits, logits=True, agent="job-9")
    np.save(tmp_path / "q.npy", corpus["emb"][:3])
    for args in (["query", "label(student).confidence > 0.2", "--labels", "student"],
                 ["knn", "--query", str(tmp_path / "q.npy"), "--k", "5", "--labels", "student"]):
        a = cli_json_lines(args[0], sharded, *args[1:], "--clearance", "all")
        b = cli_json_lines(args[0], str(other), *args[1:], "--clearance", "all")
        assert a == b and a


def test_a_shard_write_outside_its_session_is_refused_and_writes_nothing(corpus, sharded):
    c = labeldb.open_corpus(sharded)
    ids = corpus["ids"][:6]
    routes = c.route(ids)
    files = lambda: [open(os.path.join(sharded, n, "data.mdb"), "rb").read() for n in c.shards] + \
        [open(os.path.join(sharded, "corpus.json"), "rb").read()]  # noqa: E731
    before = files()
    with c.writer() as writer:
        session = writer.begin("student")
        mine, other = ids[routes == routes[0]], ids[routes != routes[0]]
        with pytest.raises(labeldb.BadInput, match="belongs to shard"):
            c.import_labels("student", other[:1], hard=[1], session=session, shard=int(routes[0]))
        with pytest.raises(labeldb.BadInput, match="not label set"):
            c.import_labels("teacher", mine, hard=[1] * len(mine), session=session, shard=int(routes[0]))
        with pytest.raises(labeldb.BadInput, match="not samples"):
            c.put(mine, np.zeros((len(mine), 8), np.float32), session=session, shard=int(routes[0]))
        with pytest.raises(labeldb.BadInput):
            c.import_labels("student", mine, hard=[9] * len(mine), session=session, shard=int(routes[0]))  # no class 9
        assert files() == before
        # A part written, the others not: the commit is refused and the manifest stays.
        c.import_labels("student", mine, hard=[1] * len(mine), session=session, shard=int(routes[0]))
        with pytest.raises(labeldb.BadInput, match="has not written its part"):
            writer.commit()
        writer.abandon()
        with pytest.raises(labeldb.BadInput, match="not the open session"):
            c.import_labels("student", mine, hard=[1] * len(mine), session=session, shard=int(routes[0]))
    assert open(os.path.join(sharded, "corpus.json"), "rb").read() == before[-1]
    assert "student" not in labeldb.open_corpus(sharded).manifest["label_sets"]
    with pytest.raises(labeldb.BadInput, match="go with a session"):
        c.put(ids, np.zeros((len(ids), 8), np.float32), shard=0)


def test_corpus_knn_equals_the_stores(corpus, sharded):
    c = labeldb.open_corpus(sharded)
    store = labeldb.open(corpus["store"])
    queries = corpus["emb"][:5] + 0.01
    for clearance in ("all", "public"):
        with store.read(clearance) as tx:
            for options in ({}, {"labels": "teacher"}, {"labels": "teacher", "flow": "conservative"}, {"where": "label(teacher).confidence > 0.3"}):
                a = c.knn(queries, k=4, clearance=clearance, **options)
                b = tx.knn(queries, k=4, **options)
                np.testing.assert_array_equal(a.ids, b.ids)
                np.testing.assert_array_equal(a.similarities, b.similarities)
                assert a.labels == b.labels
    store.close()
    with pytest.raises(labeldb.BadInput, match="queries"):
        c.knn(np.zeros((2, 3), np.float32))
    with pytest.raises(labeldb.BadInput, match="no-such-tag"):
        c.knn(queries, clearance="secrecy=no-such-tag")


def test_corpus_consensus_and_provenance_equal_the_stores(corpus, sharded, tmp_path):
    c = labeldb.open_corpus(sharded)
    single = tmp_path / "single"
    shutil.copytree(corpus["store"], single)
    s = labeldb.open(single, write=True)
    with s.write("all") as tx:
        b = tx.consensus("both", ["teacher", "gold"], method="vote", weights={"gold": 2}, agent="job")
    s.close()
    a = c.consensus("both", ["teacher", "gold"], method="vote", weights={"gold": 2}, agent="job")
    drop = lambda d: {k: v for k, v in d.items() if k not in ("time_ms", "fidelity")}  # noqa: E731
    assert drop(a) == drop(b) and a["version"] == 1
    rows = cli_json_lines("query", sharded, "label(both).confidence > 0", "--labels", "both", "--clearance", "all")
    assert rows and rows == cli_json_lines("query", str(single), "label(both).confidence > 0", "--labels", "both", "--clearance", "all")
    # The provenance document: each shard's log as a bundle, equal to the shard's own PROV-JSON.
    prov = c.provenance("all")
    assert set(prov["bundle"]) == {f"labeldb:shard/{name}" for name in c.shards}
    for shard, name in enumerate(c.shards):
        with c.open_shard(shard) as store, store.read("all") as tx:
            own = tx.provenance()["prov"]
        own.pop("prefix")
        assert prov["bundle"][f"labeldb:shard/{name}"] == own
        assert any(a.get("prov:type") == "label consensus" for a in own["activity"].values())


def test_a_shard_opened_for_writing_on_its_own_is_refused(sharded):
    c = labeldb.open_corpus(sharded)
    with pytest.raises(labeldb.BadInput, match="is shard 0 of the corpus"):
        labeldb.open(os.path.join(sharded, c.shards[0]), write=True)
    with c.open_shard(0) as store, store.read("all") as tx:
        assert tx.count() > 0
