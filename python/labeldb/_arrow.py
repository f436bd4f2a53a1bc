"""Arrow out and in: batches and query results as pyarrow tables, and tables into a store.

Columns: id (uint64), embedding (FixedSizeList<float32>), metadata (JSON string), payload
(binary), taint (struct of secrecy and integrity string lists), and one struct column per label
source (label set or projector) with the fields of a query row's label in format-spec/cli.md (class, top1, confidence, taint).
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


def _label_type() -> pa.DataType:
    """A query row's label (format-spec/cli.md, `labeldb query`): the class that labels the sample
    (the hard label when there is one, else the soft label's most probable class), its name, its
    confidence, and the label's taint."""
    return pa.struct([("class", pa.int32()), ("top1", pa.string()), ("confidence", pa.float32()), ("taint", TAINT)])


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


def _struct(present, cls, conf, classes, taints) -> pa.Array:
    names = np.asarray(classes, dtype=object)[np.where(present, cls, 0)]
    return pa.StructArray.from_arrays(
        [pa.array(cls, pa.int32()), pa.array(names, pa.string()), pa.array(conf, pa.float32()), pa.array(taints, TAINT)],
        fields=list(_label_type()), mask=pa.array(~present))


def _label_column(cols, batch, classes, versions: list) -> pa.Array:
    """One label set's column; null where a row has no label (or only an empty multi-label)."""
    n = len(batch.ids)
    hard = cols.hard >= 0
    if cols.top_classes is not None:
        soft_class, soft_p = cols.top_classes[:, 0], cols.top_probabilities[:, 0]
    elif cols.dense is not None:
        soft_class = cols.dense.argmax(axis=1).astype(np.int32)
        soft_p = cols.dense[np.arange(n), soft_class]
        soft_class = np.where(cols.dense.sum(axis=1) > 0, soft_class, -1)
    else:
        soft_class, soft_p = np.full(n, -1, np.int32), np.zeros(n, np.float32)
    cls = np.where(hard, cols.hard, soft_class)
    conf = np.where(hard, 1.0, soft_p).astype(np.float32)
    present = (cols.version > 0) & (cls >= 0)
    sample_taints = batch.taints or [None] * n
    taints = [(_join(t, versions[v - 1].get("source")) if ok else None)
              for ok, v, t in zip(present.tolist(), cols.version.tolist(), sample_taints)]
    return _struct(present, cls, conf, classes, taints)


def _regen_column(cols, batch, classes, projector: dict) -> pa.Array:
    """One projector's regenerated labels as a query row's label (its taint: the projector's
    version label joined with the sample's)."""
    present = batch.found & (cols.status > 0)
    cls = cols.probabilities.argmax(axis=1).astype(np.int32)
    conf = cols.probabilities[np.arange(len(cls)), cls]
    sample_taints = batch.taints or [None] * len(cls)
    taints = [(_join(t, projector.get("taint")) if ok else None) for ok, t in zip(present.tolist(), sample_taints)]
    return _struct(present, cls, conf, classes, taints)


def batch_table(batch, classes, label_sets: dict | None, projectors: dict | None = None) -> pa.Table:
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
        columns[name] = _label_column(cols, batch, classes, versions).take(pa.array(keep))
    for name, cols in batch.regen.items():
        base, _, version = name.partition("@")
        projector = (projectors or {}).get(base, {})
        if version:  # the version named, not the latest
            chosen = [v for v in projector.get("versions", []) if str(v.get("version")) == version]
            projector = {"taint": chosen[0].get("taint")} if chosen else projector
        columns[name] = _regen_column(cols, batch, classes, projector).take(pa.array(keep))
    return pa.table(columns)


def query_reader(result, batch_size: int) -> pa.RecordBatchReader:
    """Streams a QueryResult's rows, one batch of `batch_size` at a time. Each `labels` name is a
    label set, or else a projector whose labels are regenerated on read (as `labeldb query`)."""
    tx = result.tx
    classes = tx._store.classes
    sets = {s["name"]: s for s in tx.label_sets()}
    projectors = {p["name"]: p for p in tx.projectors()}
    names = result.labels + result.regen
    stored = [n for n in names if n.split("@")[0] in sets]
    regenerated = [n for n in names if n.split("@")[0] not in sets]
    schema = _schema(tx._store.dimension, names)

    def batches():
        for start in range(0, len(result.ids), batch_size):
            b = tx.get_many(result.ids[start:start + batch_size], labels=stored, regen=regenerated,
                            soft="compact", topk=1, missing="keep")
            yield from batch_table(b, classes, sets, projectors).select(schema.names).cast(schema).to_batches()

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
        d = tx._store.dimension
        if pa.types.is_fixed_size_list(emb_col.type):
            if emb_col.type.list_size != d:
                raise BadInput(f"put_arrow: embeddings have {emb_col.type.list_size} values, the store's dimension is {d}")
        elif pa.types.is_list(emb_col.type) or pa.types.is_large_list(emb_col.type):
            lengths = emb_col.value_lengths().to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != d)
            if len(bad):
                raise BadInput(f"put_arrow: row {int(bad[0])} has an embedding of {lengths[bad[0]]} values, expected {d}")
        else:
            raise BadInput(f"put_arrow: the embedding column must be a list of floats, not {emb_col.type}")
        if emb_col.null_count:
            raise BadInput("put_arrow: an embedding is null")
        values = emb_col.flatten().to_numpy(zero_copy_only=False) if len(emb_col) else np.zeros(0, np.float32)
        emb = np.asarray(values, np.float32).reshape(len(ids), -1) if len(ids) else np.zeros((0, tx._store.dimension), np.float32)
        metadata = None
        if "metadata" in names:
            try:
                metadata = [json.loads(m) if m else {} for m in rb.column("metadata").to_pylist()]
            except (ValueError, TypeError) as error:
                raise BadInput(f"put_arrow: a metadata value is not JSON ({error})") from None
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
