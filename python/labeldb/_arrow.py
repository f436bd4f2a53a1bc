"""Arrow out and in: batches and query results as pyarrow tables, and tables into a store.

Columns: id (uint64), embedding (FixedSizeList<float32>), metadata (JSON string), payload
(binary), taint (struct of secrecy and integrity string lists), and one struct column per label
set with the fields of a query row's label in format-spec/cli.md (version, row_version, agent,
hard, top [{class, name, p}], taint).
"""
from __future__ import annotations

import json

import numpy as np

try:
    import pyarrow as pa
except ImportError as error:  # pragma: no cover - exercised only without pyarrow
    raise ImportError("labeldb's Arrow support needs pyarrow (pip install pyarrow)") from error

from ._errors import BadInput

TAINT = pa.struct([("secrecy", pa.list_(pa.string())), ("integrity", pa.list_(pa.string()))])
TOP = pa.list_(pa.struct([("class", pa.int32()), ("name", pa.string()), ("p", pa.float32())]))


def _label_type() -> pa.DataType:
    return pa.struct([("version", pa.int32()), ("row_version", pa.int32()), ("agent", pa.string()),
                      ("hard", pa.int32()), ("top", TOP), ("taint", TAINT)])


def _join(a: dict | None, b: dict | None) -> dict | None:
    """The join of two taint labels: secrecy ∪, integrity ∩ ("*" is everything)."""
    if a is None or b is None:
        return None
    def union(x, y):
        return ["*"] if "*" in x or "*" in y else sorted(set(x) | set(y))
    def meet(x, y):
        if "*" in x:
            return list(y)
        if "*" in y:
            return list(x)
        return sorted(set(x) & set(y))
    return {"secrecy": union(a["secrecy"], b["secrecy"]), "integrity": meet(a["integrity"], b["integrity"])}


def _label_column(cols, batch, classes, versions: list) -> pa.Array:
    """One label set's struct column; null where a row has no label."""
    n = len(batch.ids)
    present = cols.version > 0
    top_k = cols.top_classes.shape[1] if cols.top_classes is not None else 0
    if cols.top_classes is not None:
        tc, tp = cols.top_classes[:, :5], cols.top_probabilities[:, :5]
    else:  # dense: the five most probable
        order = np.argsort(-cols.dense, axis=1, kind="stable")[:, :5]
        tc, tp = order.astype(np.int32), np.take_along_axis(cols.dense, order, axis=1)
    keep = (tc >= 0) & (tp > 0) & present[:, None]
    # Rows with a hard label and no soft one: the one-hot distribution's single class.
    hard_only = present & ~keep.any(axis=1) & (cols.hard >= 0)
    tc = tc.copy(); tp = tp.copy()
    tc[hard_only, 0] = cols.hard[hard_only]; tp[hard_only, 0] = 1.0
    keep[hard_only, 0] = True
    counts = keep.sum(axis=1)
    offsets = np.zeros(n + 1, np.int32)
    offsets[1:] = np.cumsum(counts)
    flat_c = tc[keep].astype(np.int32)
    names = np.asarray(classes, dtype=object)[flat_c] if len(flat_c) else np.zeros(0, dtype=object)
    entries = pa.StructArray.from_arrays([pa.array(flat_c, pa.int32()), pa.array(names, pa.string()),
                                          pa.array(tp[keep].astype(np.float32), pa.float32())],
                                         fields=list(TOP.value_type))
    top = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), entries)
    latest = len(versions)
    agents = [versions[v - 1]["agent"] if v > 0 else None for v in cols.version.tolist()]
    taints = [(_join(t, versions[v - 1].get("source")) if v > 0 else None)
              for v, t in zip(cols.version.tolist(), batch.taints or [None] * n)]
    _ = top_k
    mask = pa.array(~present)
    return pa.StructArray.from_arrays(
        [pa.array(np.where(present, latest, 0), pa.int32()), pa.array(cols.version, pa.int32()), pa.array(agents, pa.string()),
         pa.array(np.where(cols.hard >= 0, cols.hard, 0), pa.int32(), mask=cols.hard < 0), top, pa.array(taints, TAINT)],
        fields=list(_label_type()), mask=mask)


def batch_table(batch, classes, label_sets: dict | None) -> pa.Table:
    """A Batch as a Table (rows not found are left out)."""
    keep = np.flatnonzero(batch.found)
    columns = {"id": pa.array(batch.ids[keep], pa.uint64())}
    if batch.embeddings is not None:
        d = batch.embeddings.shape[1]
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(batch.embeddings[keep].reshape(-1), pa.float32()), d)
    if batch.metadata_json is not None:
        columns["metadata"] = pa.array([batch.metadata_json[i].decode() for i in keep], pa.string())
    if batch.payloads is not None:
        columns["payload"] = pa.array([batch.payloads[i] for i in keep], pa.binary())
    if batch.taints is not None:
        columns["taint"] = pa.array([batch.taints[i] for i in keep], TAINT)
    for name, cols in batch.labels.items():
        versions = (label_sets or {}).get(name.split("@")[0], {}).get("versions", [])
        column = _label_column(cols, batch, classes, versions)
        columns[name] = column.take(pa.array(keep))
    return pa.table(columns)


def query_reader(result, batch_size: int) -> pa.RecordBatchReader:
    """Streams a QueryResult's rows, one batch of `batch_size` at a time."""
    tx = result.tx
    classes = tx._store.classes
    sets = {s["name"]: s for s in tx.label_sets()} if result.labels else {}
    schema = _schema(tx._store.dimension, result.labels)

    def batches():
        for start in range(0, len(result.ids), batch_size):
            b = tx.get_many(result.ids[start:start + batch_size], labels=result.labels, soft="compact", topk=5,
                            missing="keep")
            yield from batch_table(b, classes, sets).cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _schema(d: int, labels) -> pa.Schema:
    fields = [("id", pa.uint64()), ("embedding", pa.list_(pa.float32(), d)), ("metadata", pa.string()),
              ("payload", pa.binary()), ("taint", TAINT)]
    return pa.schema(fields + [(name, _label_type()) for name in labels])


def put_arrow(tx, data, **options) -> dict:
    """Stores the rows of a Table or RecordBatchReader (columns id, embedding, and optionally
    metadata and payload), one put per record batch."""
    batches = data.to_batches() if isinstance(data, pa.Table) else data
    totals = {"inserted": 0, "replaced": 0}
    for rb in batches:
        names = rb.schema.names
        for required in ("id", "embedding"):
            if required not in names:
                raise BadInput(f"put_arrow: the data has no '{required}' column (columns: {names})")
        ids = rb.column("id").to_numpy(zero_copy_only=False)
        emb_col = rb.column("embedding")
        values = emb_col.flatten().to_numpy(zero_copy_only=False) if len(emb_col) else np.zeros(0, np.float32)
        emb = np.asarray(values, np.float32).reshape(len(ids), -1) if len(ids) else np.zeros((0, tx._store.dimension), np.float32)
        metadata = [json.loads(m) if m else {} for m in rb.column("metadata").to_pylist()] if "metadata" in names else None
        payloads = [p or b"" for p in rb.column("payload").to_pylist()] if "payload" in names else None
        summary = tx.put(ids, emb, metadata=metadata, payloads=payloads, **options)
        for key in totals:
            totals[key] += summary[key]
    return totals


def import_parquet(store, path: str, clearance: str = "all", **options) -> dict:
    """Imports a Parquet file with the to_arrow columns into `store`, one write transaction."""
    import pyarrow.parquet as pq
    with store.write(clearance=clearance) as tx:
        return put_arrow(tx, pq.ParquetFile(path).iter_batches(), **options)
