"""Several teachers through the Python package (issue 13): agreement equals `labeldb labels agree`,
and a consensus written through the C API reads back like one written by the CLI."""
from __future__ import annotations

import json

import labeldb
import pytest

from conftest import cli, cli_json_lines


def test_agreement_equals_the_cli(corpus):
    with labeldb.open(corpus["store"]) as db, db.read(clearance="all") as tx:
        got = tx.agreement(["teacher", "gold"])
    lines = cli_json_lines("labels", "agree", corpus["store"], "teacher", "gold", "--clearance", "all")
    assert got["pairs"] == lines and got["fleiss"] is None
    assert got["pairs"][0]["count"] == len(corpus["ids"])
    with labeldb.open(corpus["store"]) as db, db.read() as tx:
        public = tx.agreement(["teacher", "gold"], where="meta.split = 'train'")
    assert public["pairs"][0]["count"] < len(corpus["ids"])       # the secret sample and the val split are left out
    with labeldb.open(corpus["store"]) as db, db.read(clearance="all") as tx:
        with pytest.raises(labeldb.BadInput):
            tx.agreement(["teacher"])


def test_consensus_writes_a_label_set_with_its_provenance(copy):
    with labeldb.open(copy, write=True) as db:
        with db.write(clearance="all") as tx:
            report = tx.consensus("both", ["teacher", "gold"], method="vote", weights={"gold": 2})
        assert report["sources"] == ["teacher@1", "gold@1"] and report["method"] == "vote" and report["version"] == 1
        with db.write(clearance="all") as tx:
            ds = tx.consensus("ds", ["teacher", "gold"], method="dawid-skene")
        assert ds["iterations"] >= 1 and set(ds["source_accuracy"]) == {"teacher@1", "gold@1"}
        with pytest.raises(labeldb.BadInput, match="did not converge"):
            with db.write(clearance="all") as tx:
                tx.consensus("x", ["teacher", "gold"], method="dawid-skene", tolerance=1e-12, max_iterations=2)
    names = [s["name"] for s in cli_json_lines("labels", "list", copy, "--clearance", "all")]
    assert "both" in names and "ds" in names and "x" not in names
    # With gold weighted twice, every vote follows gold.
    agree = cli_json_lines("labels", "agree", copy, "both", "gold", "--clearance", "all")[0]
    assert agree["agreement"] == 1.0
    out = copy + "-prov.json"
    cli("provenance", "export", copy, "--out", out)
    prov = json.loads(open(out).read())
    assert any(a.get("prov:type") == "label consensus" for a in prov["activity"].values())


def test_drop_and_projector_check(copy):
    with labeldb.open(copy, write=True) as db:
        db.fit_projector("p", "teacher", rank=2, max_kl=0.05, clearance="all")
        with db.read(clearance="all") as tx:
            check = tx.check_projector("p")
        assert check["bound_holds"] is True and check["checked"] > 0
        with db.write(clearance="all") as tx:
            dropped = tx.drop_labels("teacher")
        assert dropped["name"] == "teacher" and dropped["dependent_projectors"] == ["p"] and dropped["rows"] > 0
        with db.read(clearance="all") as tx, pytest.raises(labeldb.NotFound):
            tx.check_projector("p")                      # nothing left to compare with
        with pytest.raises(labeldb.BadInput):
            with db.write(clearance="all") as tx:
                tx.drop_labels("gold@1")                 # the latest version stays


def test_label_issues_equal_the_cli_and_write_a_review_set(copy):
    args = ("labels", "issues", copy, "--given", "gold", "--probs", "teacher", "--filter", "both", "--clearance", "all")
    lines = cli_json_lines(*args, "--format", "json")
    with labeldb.open(copy) as db, db.read(clearance="all") as tx:
        got = tx.label_issues("gold", "teacher", filter="both")
    assert got["issues"] == lines and got["given"] == "gold@1" and got["probs"] == "teacher@1" and got["written"] is None
    assert got["examined"] > 0 and all(i["suggested"] != i["given"] for i in got["issues"])
    with labeldb.open(copy) as db, db.read(clearance="all") as tx, pytest.raises(labeldb.BadInput, match="not a hard label set"):
        tx.label_issues("teacher", "gold")
    assert lines  # the fixture's teacher disagrees with gold on some samples
    with labeldb.open(copy, write=True) as db:
        with db.write(clearance="all") as tx:
            written = tx.write_label_issues("review", "gold", "teacher", filter="both")
        assert written["written"]["version"] == 1 and written["written"]["rows"] == len(lines)


def test_consensus_with_a_reference(copy):
    with labeldb.open(copy, write=True) as db:
        with db.write(clearance="all") as tx:
            report = tx.consensus("c", ["teacher", "gold"], method="vote", reference="gold")
        assert report["reference"] == "gold@1" and report["reference_samples"] > 0
        assert set(report["reference_accuracy"]) == {"teacher@1", "gold@1"}
        # gold judged against itself is always right where it speaks.
        assert all(a in (None, 1.0) for a in report["reference_accuracy"]["gold@1"])
        with pytest.raises(labeldb.BadInput, match="not both"):
            with db.write(clearance="all") as tx:
                tx.consensus("x", ["teacher", "gold"], reference="gold", reference_tag="t", reference_set="gold")


def test_corpus_card_equals_the_cli(corpus, tmp_path):
    html = str(tmp_path / "card.html")
    with labeldb.open(corpus["store"]) as db, db.read(clearance="all") as tx:
        card = tx.corpus_card(html=html, title="corpus")
    printed = json.loads(cli("card", corpus["store"], "--format", "json", "--clearance", "all").stdout)
    assert card == printed       # one engine: the C API and the CLI compute the same card
    assert card["composition"]["samples"] == len(corpus["ids"])
    page = open(html, encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and 'id="card-data"' in page
    with labeldb.open(corpus["store"]) as db, db.read() as tx:
        public = tx.corpus_card(labels=["gold"])
    assert [s["name"] for s in public["label_sources"]] == ["gold@1"] and public["clearance"] == "public"
    assert public["composition"]["samples"] < card["composition"]["samples"]


def test_fit_projector_with_a_byte_budget_equals_the_cli(copy):
    with labeldb.open(copy, write=True) as db:
        got = db.fit_projector("b", "teacher", rank=[1, 2], budget=10_000_000, max_kl=0.05, max_steps=20, clearance="all")
        search = got["rank_search"]
        assert [c["rank"] for c in search["candidates"]] == [1, 2]
        assert got["rank"] == min(search["candidates"], key=lambda c: c["total_bytes"])["rank"]
        with pytest.raises(labeldb.BadInput, match="need a 'budget'"):
            db.fit_projector("x", "teacher", rank=[1, 2], clearance="all")
        with pytest.raises(labeldb.BadInput, match="over the budget"):
            db.fit_projector("x", "teacher", rank=[1], budget=10, max_kl=0.05, max_steps=5, clearance="all")
    shown = cli_json_lines("projector", "show", copy, "b", "--clearance", "all")[0]
    assert shown["rank_search"] == search and shown["total_bytes"] == got["total_bytes"]


def test_hard_labels_equal_a_batch_read_of_the_same_set(corpus):
    for clearance in ("all", "public"):
        with labeldb.open(corpus["store"]) as db, db.read(clearance=clearance) as tx:
            ids, classes = tx.hard_labels("gold")
            batch = tx.get_many(tx.ids(), labels=["gold"], soft="none", embeddings=False, metadata=False, payloads=False, taints=False)
            hard = batch.labels["gold"].hard
            expected_ids = batch.ids[hard >= 0]
            assert ids.dtype == "uint64" and classes.dtype == "int32"
            assert list(ids) == list(expected_ids) and list(classes) == list(hard[hard >= 0])
            assert len(ids) > 0 and list(ids) == sorted(ids)
    with labeldb.open(corpus["store"]) as db, db.read(clearance="all") as tx:
        with pytest.raises(labeldb.NotFound):
            tx.hard_labels("nope")
        ids, classes = tx.hard_labels("teacher")           # a soft set: no hard labels
        assert len(ids) == 0 and len(classes) == 0
