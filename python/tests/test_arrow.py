"""Arrow out (schema and values) and in (put_arrow, import_parquet)."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labeldb
from conftest import cli_json_lines


def test_query_to_arrow_has_the_documented_schema_and_values(corpus):
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        result = tx.query("label(teacher).top1 = 'class1'", labels=["teacher", "gold"])
        table = result.to_arrow()
        reader = result.to_arrow_reader(batch_size=7)
        streamed = pa.Table.from_batches(list(reader), schema=reader.schema)
    assert table.schema.names == ["id", "embedding", "metadata", "payload", "taint", "teacher", "gold"]
    assert table.schema.field("id").type == pa.uint64()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 8)
    assert streamed.equals(table)
    rows = cli_json_lines("query", corpus["store"], "label(teacher).top1 = 'class1'", "--labels", "teacher",
                          "--labels", "gold", "--clearance", "all")
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    for got, want in zip(table.to_pylist(), rows):
        for name in ("teacher", "gold"):
            mine, theirs = got[name], want["labels"][name]
            assert (mine["class"], mine["top1"], mine["taint"]) == (theirs["class"], theirs["top1"], theirs["taint"])
            assert abs(mine["confidence"] - theirs["confidence"]) < 1e-6
        assert json.loads(got["metadata"]) == corpus["meta"][list(corpus["ids"]).index(got["id"])] | {}
    df = table.to_pandas()
    assert len(df) == len(rows)
    db.close()


def test_put_arrow_and_parquet_round_trip(corpus, tmp_path):
    db = labeldb.open(corpus["store"])
    with db.read("all") as tx:
        table = tx.query().to_arrow()
    db.close()
    pq.write_table(table.select(["id", "embedding", "metadata", "payload"]), tmp_path / "c.parquet")
    copy = labeldb.create(tmp_path / "copy", dimension=8, classes=corpus["classes"])
    assert labeldb.import_parquet(copy, str(tmp_path / "c.parquet")) == {"inserted": len(corpus["ids"]), "replaced": 0}
    with copy.read("all") as tx:
        again = tx.query().to_arrow()
    for name in ("id", "embedding", "metadata", "payload"):
        assert again.column(name).equals(table.column(name)), name
    with pytest.raises(labeldb.BadInput, match="no 'embedding' column"):
        with copy.write() as tx:
            tx.put_arrow(pa.table({"id": pa.array([1], pa.uint64())}))
    copy.close()
