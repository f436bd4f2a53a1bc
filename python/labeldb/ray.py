"""Ray Data over LabelDB (needs ray[data]): a store or a sharded corpus read as a
ray.data.Dataset, and label sets written back.

    import labeldb.ray
    ds = labeldb.ray.read_labeldb("corpus", labels=["teacher"], probs=True, where="label(teacher).confidence > 0.5")
    scored = ds.map_batches(teacher_logits)                   # {"id", "logits"} per batch
    scored.write_datasink(labeldb.ray.LabelDBDatasink("corpus", "teacher2", soft_column="logits", logits=True))

Reads: one read task per shard (a store: per id range), each opening its shard in its own worker
process, pinned to the manifest's committed label-set and projector versions; `where` is evaluated by the
engine in each shard (filter pushdown) and `columns` leaves out what is not asked for (projection
pushdown). Blocks are Arrow tables with the columns of labeldb's Arrow form (id, embedding,
metadata, payload, taint, one label struct per source) and, with probs=True, NAME.probs: each
label source's distribution. The embedding and NAME.probs are Ray tensor columns (numpy batches
hold [rows, d] float32 arrays; select them for iter_torch_batches, which cannot make tensors of
the label structs).

Writes (LabelDBDatasink): samples and/or a new label set version; write tasks turn blocks into
arrays, and on completion the driver writes them across the shards through the corpus's one
writer (each shard checked, then committed, then the manifest; Corpus.put, Corpus.import_labels),
creating the corpus first with shards=N.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import numpy as np

try:
    import pyarrow as pa
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasink, Datasource, ReadTask
    from ray.data.extensions import ArrowTensorArray
except ImportError as error:  # pragma: no cover
    raise ImportError("labeldb.ray needs ray[data] and pyarrow (pip install 'ray[data]')") from error

from . import _arrow, _corpus, _store
from ._errors import BadInput

_COLUMNS = ("embedding", "metadata", "payload", "taint")


def _open(path: str, shard: int | None, pin: dict | None):
    """A store, or a shard pinned to the label-set versions the driver's manifest committed."""
    return _corpus.Corpus(path).open_shard(shard, pin=pin) if shard is not None else _store.open(path)


class LabelDBDatasource(Datasource):
    """A store or sharded corpus as a Ray Datasource: the ids each read task reads are found on
    the driver (per shard, with `where`); the rows are read in the tasks."""

    def __init__(self, path: str | os.PathLike, labels: Sequence[str] = (), regen: Sequence[str] = (), where: str | None = None,
                 clearance: str = "public", columns: Sequence[str] = _COLUMNS, probs: bool = False, batch_size: int = 4096):
        self.path = os.fspath(path)
        unknown = set(columns) - set(_COLUMNS)
        if unknown:
            raise BadInput(f"columns: unknown {sorted(unknown)} (known: {', '.join(_COLUMNS)}; id and the label columns always come)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadInput(f"batch_size must be a positive integer, not {batch_size!r}")
        self.labels, self.regen, self.where, self.clearance = list(labels), list(regen), where, clearance
        self.columns, self.probs, self.batch_size = tuple(columns), probs, batch_size
        corpus = _corpus.Corpus(self.path) if _corpus.is_corpus(self.path) else None
        self.shards: list[int | None] = list(range(len(corpus))) if corpus else [None]
        # Ids, the filter and every task read the versions of this one manifest.
        self.pin = corpus.pin if corpus else None
        self.ids: list[np.ndarray] = []
        for shard in self.shards:
            store = _open(self.path, shard, self.pin)
            try:
                with store.read(clearance) as tx:
                    self.ids.append(tx.query(where).ids if where else tx.ids())
                    if shard in (None, 0):
                        self.dimension, self.classes = store.dimension, store.classes
            finally:
                store.close()

    def estimate_inmemory_data_size(self) -> int | None:
        rows = sum(len(x) for x in self.ids)
        per_row = 8 + (4 * self.dimension if "embedding" in self.columns else 0) + 64 * len(self.labels + self.regen)
        if self.probs:
            per_row += 4 * len(self.classes) * len(self.labels + self.regen)
        return rows * per_row

    #: Fewest rows a read task gets when a shard is cut: each task opens its shard (an LMDB
    #: environment, the schema and manifest checks), which costs milliseconds, so Ray Data's
    #: default of hundreds of tasks would spend more time opening than reading.
    min_rows_per_task = 65_536

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        """One task per shard; a shard (or a store) is cut into id ranges of at least
        `min_rows_per_task` rows when `parallelism` asks for more tasks than there are shards."""
        pieces = max(1, -(-max(parallelism, 1) // len(self.shards)))
        tasks = []
        for shard, ids in zip(self.shards, self.ids):
            for part in np.array_split(ids, max(1, min(pieces, len(ids) // self.min_rows_per_task))):
                if len(part) == 0:
                    continue
                meta = BlockMetadata(num_rows=len(part), size_bytes=None, input_files=None, exec_stats=None)
                tasks.append(ReadTask(self._reader(shard, part), meta))
        return tasks

    def _reader(self, shard: int | None, ids: np.ndarray):
        path, labels, regen, clearance, pin = self.path, self.labels, self.regen, self.clearance, self.pin
        columns, probs, batch_size = self.columns, self.probs, self.batch_size

        def read() -> Iterable[pa.Table]:
            store = _open(path, shard, pin)
            try:
                with store.read(clearance) as tx:
                    sets = {s["name"]: s for s in tx.label_sets()}
                    projectors = {p["name"]: p for p in tx.projectors()}
                    stored = [n for n in labels if n.split("@")[0] in sets]
                    regenerated = [n for n in labels if n.split("@")[0] not in sets] + list(regen)
                    for start in range(0, len(ids), batch_size):
                        batch = tx.get_many(ids[start:start + batch_size], labels=stored, regen=regenerated,
                                            soft="dense" if probs else "compact", topk=None if probs else 1,
                                            embeddings="embedding" in columns, metadata="metadata" in columns,
                                            payloads="payload" in columns, taints=True)
                        table = _arrow.batch_table(batch, store.classes, sets, projectors)
                        if "taint" not in columns:
                            table = table.drop(["taint"])
                        if probs:
                            table = _with_probs(table, batch, store.classes)
                        yield _as_tensors(table)
            finally:
                store.close()

        return read


def _as_tensors(table: pa.Table) -> pa.Table:
    """The fixed-size list columns (embedding, NAME.probs) as Ray tensor columns, so numpy batches
    hold [rows, d] arrays and iter_torch_batches makes tensors of them."""
    for i, field in enumerate(table.schema):
        if pa.types.is_fixed_size_list(field.type):
            column = table.column(i).combine_chunks()
            values = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), field.type.list_size)
            table = table.set_column(i, field.name, ArrowTensorArray.from_numpy(values))
    return table


def _with_probs(table: pa.Table, batch, classes) -> pa.Table:
    """Adds NAME.probs for each label source: its distribution per row (zeros without a label)."""
    keep = np.flatnonzero(batch.found)
    c = len(classes)
    for name, cols in batch.labels.items():
        dense = cols.dense if cols.dense is not None else np.zeros((len(batch.ids), c), np.float32)
        table = table.append_column(f"{name}.probs", pa.FixedSizeListArray.from_arrays(pa.array(dense[keep].reshape(-1), pa.float32()), c))
    for name, cols in batch.regen.items():
        table = table.append_column(f"{name}.probs", pa.FixedSizeListArray.from_arrays(
            pa.array(cols.probabilities[keep].reshape(-1), pa.float32()), c))
    return table


def read_labeldb(path: str | os.PathLike, labels: Sequence[str] = (), regen: Sequence[str] = (), where: str | None = None,
                 clearance: str = "public", columns: Sequence[str] = _COLUMNS, probs: bool = False, batch_size: int = 4096,
                 **read_options) -> "ray.data.Dataset":
    """A store or sharded corpus as a ray.data.Dataset (see the module's description)."""
    source = LabelDBDatasource(path, labels=labels, regen=regen, where=where, clearance=clearance, columns=columns,
                               probs=probs, batch_size=batch_size)
    return ray.data.read_datasource(source, **read_options)


class LabelDBDatasink(Datasink):
    """Writes a dataset's rows into a store or a sharded corpus: samples (`embedding_column`, with
    optional `metadata_column` — dicts or JSON text — and `payload_column`), and/or one new
    version of label set `name` (exactly one of `soft_column`, distributions or logits with
    logits=True, and `hard_column`, class indices). `id_column` names the rows' samples. With
    `shards=N` and `classes`, a missing corpus is created first (N shards, routed by hash; the
    dimension from the data). `provenance` (text parameters, e.g. the model and job) is recorded
    with each write.

    Write tasks turn blocks into arrays; on completion the driver writes the samples, then the
    labels, each as one routed write across the shards (the corpus's one writer)."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, id_column: str = "id", soft_column: str | None = None,
                 hard_column: str | None = None, logits: bool = False, temperature: float = 1.0, codec: str | None = None,
                 embedding_column: str | None = None, metadata_column: str | None = None, payload_column: str | None = None,
                 shards: int | None = None, classes: Sequence[str] | None = None,
                 agent: str = "ray", secrecy=None, clearance: str = "all", provenance: dict | None = None):
        if name is not None and (soft_column is None) == (hard_column is None):
            raise BadInput("LabelDBDatasink: a label set takes exactly one of soft_column and hard_column")
        if name is None and (soft_column or hard_column):
            raise BadInput("LabelDBDatasink: soft_column and hard_column need the label set's name")
        if name is None and embedding_column is None:
            raise BadInput("LabelDBDatasink: give embedding_column (samples), name with a label column, or both")
        if shards is not None and classes is None:
            raise BadInput("LabelDBDatasink: shards= creates a corpus and needs classes=")
        self.path, self.name, self.id_column = os.fspath(path), name, id_column
        self.soft_column, self.hard_column, self.logits, self.temperature = soft_column, hard_column, logits, temperature
        self.embedding_column, self.metadata_column, self.payload_column = embedding_column, metadata_column, payload_column
        self.shards, self.classes = shards, list(classes) if classes is not None else None
        self.codec, self.agent, self.secrecy, self.clearance = codec, agent, secrecy, clearance
        self.provenance = dict(provenance or {})
        self.result: dict | None = None
        self.samples: dict | None = None

    def write(self, blocks: Iterable, ctx) -> dict:
        out: dict = {"ids": [], "values": [], "embeddings": [], "metadata": [], "payloads": []}
        for block in blocks:
            table = block if isinstance(block, pa.Table) else pa.Table.from_pandas(block)
            if table.num_rows == 0:
                continue
            out["ids"].append(table.column(self.id_column).to_numpy().astype(np.uint64))
            if self.name is not None:
                data = table.column(self.soft_column or self.hard_column).to_numpy(zero_copy_only=False)
                out["values"].append(np.stack(data) if self.soft_column else np.asarray(data))
            if self.embedding_column:
                out["embeddings"].append(np.stack(table.column(self.embedding_column).to_numpy(zero_copy_only=False)).astype(np.float32))
            if self.metadata_column:
                out["metadata"] += [m if isinstance(m, dict) else json.loads(m) for m in table.column(self.metadata_column).to_pylist()]
            if self.payload_column:
                out["payloads"] += [bytes(p) for p in table.column(self.payload_column).to_pylist()]
        return out

    def on_write_complete(self, write_result) -> None:
        returns = [r for r in getattr(write_result, "write_returns", write_result) if r["ids"]]
        ids = np.concatenate([i for r in returns for i in r["ids"]]) if returns else np.zeros(0, np.uint64)
        provenance = {"writer": "labeldb.ray.LabelDBDatasink", **self.provenance}
        if self.embedding_column:
            embeddings = np.concatenate([e for r in returns for e in r["embeddings"]]) if returns else np.zeros((0, 0), np.float32)
            if self.shards is not None and not os.path.exists(os.path.join(self.path, "corpus.json")):
                _corpus.create_corpus(self.path, embeddings.shape[1], self.classes, self.shards)
            metadata = [m for r in returns for m in r["metadata"]] if self.metadata_column else None
            payloads = [p for r in returns for p in r["payloads"]] if self.payload_column else None
            if _corpus.is_corpus(self.path):
                self.samples = _corpus.Corpus(self.path).put(ids, embeddings, metadata=metadata, payloads=payloads, secrecy=self.secrecy,
                                                             agent=self.agent, clearance=self.clearance, provenance=provenance)
            else:
                store = _store.open(self.path, write=True)
                try:
                    with store.write(self.clearance) as tx:
                        self.samples = tx.put(ids, embeddings, metadata=metadata, payloads=payloads, secrecy=self.secrecy)
                finally:
                    store.close()
        if self.name is None:
            return
        parts = [v for r in returns for v in r["values"]]
        options = dict(codec=self.codec, agent=self.agent, secrecy=self.secrecy)
        if self.soft_column:
            # Logits become probabilities in the engine (softmax(z / T)), as `labels import --logits`.
            labels = {"soft": np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 1), np.float32),
                      "logits": self.logits, "temperature": self.temperature if self.logits else None}
        else:
            labels = {"hard": np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)}
        if _corpus.is_corpus(self.path):
            self.result = _corpus.Corpus(self.path).import_labels(self.name, ids, **labels, **options, clearance=self.clearance,
                                                                  provenance=provenance)
        else:
            store = _store.open(self.path, write=True)
            try:
                with store.write(self.clearance) as tx:
                    self.result = tx.import_labels(self.name, ids=ids, **labels, **options)
            finally:
                store.close()
