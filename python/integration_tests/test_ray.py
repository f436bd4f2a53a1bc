"""labeldb.ray on a local Ray (2 CPUs): a sharded corpus read as a ray.data.Dataset with
projection and filter pushed down, a batch inference written back as a new label set version."""
import json
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import labeldb  # noqa: E402
import labeldb.ray as ldray  # noqa: E402
from conftest import cli, cli_json_lines  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture
def sharded(corpus, tmp_path) -> str:
    path = tmp_path / "corpus"
    cli("shard", corpus["store"], str(path), "--shards", "4", "--clearance", "all")
    return str(path)


def _rows(ds) -> dict:
    table = ds.to_arrow_refs()
    import pyarrow as pa
    whole = pa.concat_tables(ray.get(table))
    return {int(i): row for i, row in zip(whole.column("id").to_pylist(), whole.to_pylist())}


def test_read_equals_the_store(cluster, corpus, sharded):
    ds = ldray.read_labeldb(sharded, labels=["teacher", "gold"], probs=True, clearance="all")
    assert ds.count() == len(corpus["ids"])
    rows = _rows(ds)
    store = labeldb.open(corpus["store"])
    with store.read("all") as tx:
        whole = tx.get_many(np.sort(corpus["ids"]), labels=["teacher", "gold"], soft="dense")
    store.close()
    for i, id in enumerate(whole.ids.tolist()):
        row = rows[id]
        np.testing.assert_array_equal(np.asarray(row["embedding"], np.float32), whole.embeddings[i])
        np.testing.assert_array_equal(np.asarray(row["teacher.probs"], np.float32), whole.labels["teacher"].dense[i])
        assert row["gold"]["class"] == int(whole.labels["gold"].hard[i])
    # One read task per shard.
    assert ds.materialize().num_blocks() >= 4


def test_filter_and_projection_are_pushed_down(cluster, corpus, sharded):
    where = "label(teacher).confidence > 0.5 and meta.split = 'train'"
    ds = ldray.read_labeldb(sharded, labels=["teacher"], where=where, columns=["embedding"], clearance="all")
    expected = [row["id"] for row in cli_json_lines("query", corpus["store"], where, "--clearance", "all")]
    rows = _rows(ds)
    assert sorted(rows) == sorted(expected) and expected
    assert set(next(iter(rows.values()))) == {"id", "embedding", "teacher"}
    # The public clearance does not see the secret sample.
    assert corpus["secret"] not in _rows(ldray.read_labeldb(sharded))


def test_batch_inference_writes_a_new_label_set_version(cluster, corpus, sharded, tmp_path):
    weights = np.random.default_rng(11).normal(size=(8, 6)).astype(np.float32)

    def teacher(batch):
        return {"id": batch["id"], "logits": np.stack(batch["embedding"]) @ weights}

    ds = ldray.read_labeldb(sharded, columns=["embedding"], clearance="all").map_batches(teacher, batch_format="numpy")
    sink = ldray.LabelDBDatasink(sharded, "student", soft_column="logits", logits=True, agent="teacher-job",
                                 provenance={"model": "linear-8x6"})
    ds.write_datasink(sink)
    manifest = labeldb.open_corpus(sharded).manifest
    assert manifest["label_sets"]["student"] == 1
    # One writer per shard: each shard's part checked, then written, by a Ray task (not the driver).
    writes = sorted((w["shard"], w["checked_only"]) for w in sink.shard_writes)
    assert writes == sorted((shard, check) for shard in range(4) for check in (True, False))
    assert all(w["pid"] != os.getpid() for w in sink.shard_writes)
    assert sum(w["rows"] for w in sink.shard_writes if not w["checked_only"]) == len(corpus["ids"])
    assert not os.path.exists(os.path.join(sharded, ".labeldb-staging"))
    # The same labels imported into the single store read the same through the CLI.
    single = tmp_path / "single"
    import shutil
    shutil.copytree(corpus["store"], single)
    s = labeldb.open(single, write=True)
    ids = np.sort(corpus["ids"])
    with s.read("all") as tx:
        emb = tx.get_many(ids, soft="none").embeddings
    with s.write("all") as tx:
        tx.import_labels("student", ids=ids, soft=emb @ weights, logits=True, agent="teacher-job")
    s.close()
    a = cli_json_lines("query", sharded, "id >= 0", "--labels", "student", "--clearance", "all")
    b = cli_json_lines("query", str(single), "id >= 0", "--labels", "student", "--clearance", "all")
    assert a == b and len(a) == len(ids)
    # Provenance: each shard's log records the import with the job's parameters.
    corpus_handle = labeldb.open_corpus(sharded)
    for shard in range(len(corpus_handle)):
        with corpus_handle.open_shard(shard) as store, store.read("all") as tx:
            log = json.dumps(tx.provenance())
        assert "linear-8x6" in log and "labeldb.ray.LabelDBDatasink" in log


def test_the_readme_ray_example_runs(cluster, corpus, sharded):
    """README, "Past one machine": read → train → batch inference → a new label set version."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    section = text[text.index("### Past one machine"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    code = (code.replace("/tmp/demo/sharded", sharded).replace("torch.nn.Linear(128, 20)", "torch.nn.Linear(8, 6)")
            .replace("ray.init(num_cpus=2)", ""))
    exec(compile(code, "README.md", "exec"), {})
    manifest = labeldb.open_corpus(sharded).manifest
    assert manifest["label_sets"]["student"] == 1
    labelled = cli_json_lines("query", sharded, "label(student).confidence > 0", "--clearance", "all")
    assert len(labelled) == len(corpus["ids"])
    np.save(os.path.join(sharded, "..", "q.npy"), corpus["emb"][:4])
    a = cli_json_lines("knn", sharded, "--query", os.path.join(sharded, "..", "q.npy"), "--k", "5", "--labels", "student", "--clearance", "all")
    assert len(a) == 4


def test_datasink_creates_a_corpus_and_writes_samples_and_labels(cluster, tmp_path):
    rng = np.random.default_rng(4)
    rows = [{"id": int(i) * 104729, "embedding": rng.normal(size=8).astype(np.float32), "meta": {"i": int(i)},
             "cls": int(i % 3)} for i in range(300)]
    sink = ldray.LabelDBDatasink(tmp_path / "made", "truth", hard_column="cls", embedding_column="embedding", metadata_column="meta",
                                 shards=3, classes=["a", "b", "c"], provenance={"job": "ingest"})
    ray.data.from_items(rows).write_datasink(sink)
    manifest = labeldb.open_corpus(tmp_path / "made").manifest
    assert len(manifest["shards"]) == 3 and manifest["label_sets"] == {"truth": 1}
    got = cli_json_lines("query", str(tmp_path / "made"), "id >= 0", "--labels", "truth", "--columns", "id,metadata,labels")
    assert [r["id"] for r in got] == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    for r in got:
        assert r["metadata"] == by_id[r["id"]]["meta"] and r["labels"]["truth"]["class"] == by_id[r["id"]]["cls"]
    assert cli("verify", str(tmp_path / "made"), "--clearance", "all").returncode == 0
    # Samples, then labels: two sessions, each shard checked and written by its own task in each.
    assert len(sink.shard_writes) == 2 * 2 * 3 and sink.samples["inserted"] == 300


def test_datasink_bad_rows_write_nothing_in_any_shard(cluster, corpus, sharded):
    names = labeldb.open_corpus(sharded).shards
    files = lambda: [open(os.path.join(sharded, n, "data.mdb"), "rb").read() for n in names] + \
        [open(os.path.join(sharded, "corpus.json"), "rb").read()]  # noqa: E731
    before = files()
    ids = np.sort(corpus["ids"])
    rows = [{"id": int(i), "cls": 2 if n != 17 else 99} for n, i in enumerate(ids)]  # one class out of range
    with pytest.raises(Exception, match="99"):
        ray.data.from_items(rows).write_datasink(ldray.LabelDBDatasink(sharded, "bad", hard_column="cls"))
    assert files() == before
    assert not os.path.exists(os.path.join(sharded, ".labeldb-staging"))
    # The lock was released: the next write goes in.
    ray.data.from_items([{"id": r["id"], "cls": 1} for r in rows]).write_datasink(ldray.LabelDBDatasink(sharded, "good", hard_column="cls"))
    assert labeldb.open_corpus(sharded).manifest["label_sets"]["good"] == 1


def test_fit_projector_through_ray_actors_equals_the_fit_on_threads(cluster, sharded, tmp_path):
    """Each shard's passes run in a Ray actor of its own (another process); the figures and every
    regenerated label equal Corpus.fit_projector's on a copy of the same corpus."""
    import shutil
    threaded = tmp_path / "threaded"
    shutil.copytree(sharded, threaded)
    options = dict(rank=3, max_steps=40, max_kl=0.05, seed=4, holdout=0.2, clearance="all")
    local = labeldb.open_corpus(str(threaded)).fit_projector("p", "teacher", **options)
    remote = ldray.fit_projector(sharded, "p", "teacher", **options)
    for key in ("samples", "train_rows", "train_mean_kl", "holdout_mean_kl", "closed_form_mean_kl", "corrections", "steps"):
        assert remote[key] == local[key], key
    assert labeldb.open_corpus(sharded).manifest["projectors"]["p"] == 1
    for shard in range(len(labeldb.open_corpus(sharded))):
        with labeldb.open_corpus(str(threaded)).open_shard(shard) as a, a.read("all") as ta, \
                labeldb.open_corpus(sharded).open_shard(shard) as b, b.read("all") as tb:
            x, y = ta.get_many(ta.ids(), regen=["p"]), tb.get_many(tb.ids(), regen=["p"])
            np.testing.assert_array_equal(x.regen["p"].probabilities, y.regen["p"].probabilities)
            np.testing.assert_array_equal(x.regen["p"].status, y.regen["p"].status)
