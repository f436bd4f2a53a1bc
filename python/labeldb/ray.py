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

Writes (LabelDBDatasink): samples and/or a new label set version, into a corpus with one writer
per shard: write tasks route their rows and stage each shard's part; one Ray task per shard
checks its part, then one per shard writes it, inside a write session the driver holds and
commits (corpus.md K-13; Corpus.writer). With shards=N the corpus is created first.

Projector fits (fit_projector): the fitter runs in the driver, which holds the corpus's writer;
every pass over a shard's rows (XᵀX and XᵀY, the evaluations, the correction search, the
refinement's minibatches) runs in one Ray actor per shard, which sends back only its sums or
figures (corpus.md K-17). The fit equals Corpus.fit_projector's up to BLAS's rounding.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
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


# The corpus writers the driver holds for the datasinks writing now, by stage folder: kept off the
# datasink, which Ray serializes into the write tasks and may copy.
_WRITERS: dict = {}


class LabelDBDatasink(Datasink):
    """Writes a dataset's rows into a store or a sharded corpus: samples (`embedding_column`, with
    optional `metadata_column` — dicts or JSON text — and `payload_column`), and/or one new
    version of label set `name` (exactly one of `soft_column`, distributions or logits with
    logits=True, and `hard_column`, class indices). `id_column` names the rows' samples. With
    `shards=N` and `classes`, a missing corpus is created first (N shards, routed by hash; the
    dimension from `dimension`, or the embedding column's fixed width). `provenance` (text
    parameters, e.g. the model and job) is recorded with each write.

    Into a corpus, one writer per shard (corpus.md K-13): write tasks route their rows and stage
    each shard's part beside the manifest (in .labeldb-staging/, removed when the write ends; a
    driver that dies leaves its folder, which may be deleted while no write runs); then the
    driver takes the corpus's lock and opens a write session, one Ray task per shard checks its
    part, and once every shard's check passed, one task per shard writes it; the driver commits
    the session in the manifest. Samples and labels are two sessions, samples first: bad samples
    write nothing anywhere, and a label set's version shows only once committed, whole (bad
    labels write none of it, but leave the samples of the same write stored, as `labeldb import`
    then `labeldb labels import` would). Into a single store, the driver writes the rows."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, id_column: str = "id", soft_column: str | None = None,
                 hard_column: str | None = None, logits: bool = False, temperature: float = 1.0, codec: str | None = None,
                 embedding_column: str | None = None, metadata_column: str | None = None, payload_column: str | None = None,
                 shards: int | None = None, classes: Sequence[str] | None = None, dimension: int | None = None,
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
        self.shards, self.classes, self.dimension = shards, list(classes) if classes is not None else None, dimension
        self.codec, self.agent, self.secrecy, self.clearance = codec, agent, secrecy, clearance
        self.provenance = dict(provenance or {})
        # Where write tasks stage each shard's part: one folder per write, inside the corpus.
        self.stage = os.path.join(self.path, ".labeldb-staging", uuid.uuid4().hex)
        self.result: dict | None = None
        self.samples: dict | None = None
        self.shard_writes: list[dict] = []

    def on_write_start(self, schema=None) -> None:
        if self.shards is not None and not _corpus.is_corpus(self.path):
            dimension = self.dimension or _fixed_width(schema, self.embedding_column)
            if dimension is None:
                raise BadInput(f"LabelDBDatasink: creating a corpus needs its dimension: pass dimension=, or give "
                               f"{self.embedding_column or 'the embedding column'} a fixed width")
            _corpus.create_corpus(self.path, dimension, self.classes, self.shards)

    def write(self, blocks: Iterable, ctx) -> dict:
        columns = self._columns(blocks)
        if not _corpus.is_corpus(self.path):
            return columns  # a single store: the driver writes the rows
        return {"files": _stage_parts(self.stage, _corpus.Corpus(self.path), columns)}

    def _columns(self, blocks: Iterable) -> dict:
        """The blocks' rows as arrays: ids, values, embeddings (lists of parts), metadata, payloads."""
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
        returns = list(getattr(write_result, "write_returns", write_result))
        if _corpus.is_corpus(self.path) or self.shards is not None:
            try:
                self._write_corpus(returns)
            finally:
                self._finish()
        else:
            self._write_store(returns)

    def on_write_failed(self, error: Exception) -> None:
        self._finish()

    def _finish(self) -> None:
        """Removes the staged parts and releases the corpus (a session not committed stays invisible)."""
        shutil.rmtree(self.stage, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(self.stage))  # when no other write stages there
        except OSError:
            pass
        writer = _WRITERS.pop(self.stage, None)
        if writer is not None:
            writer.close()

    def _write_corpus(self, returns: list) -> None:
        if self.shards is not None and not _corpus.is_corpus(self.path):  # no block reached the sink
            self.on_write_start(None)
        # The lock from here to the end of the write; staging needed none.
        _WRITERS[self.stage] = _corpus.CorpusWriter(self.path)
        corpus = _corpus.Corpus(self.path)
        files = [[f for r in returns for f in r["files"][shard]] for shard in range(len(corpus))]
        options = {"agent": self.agent, "secrecy": self.secrecy, "clearance": self.clearance,
                   "provenance": {"writer": "labeldb.ray.LabelDBDatasink", **self.provenance}}
        if self.embedding_column:
            self.samples = self._session(None, files, dict(options, payloads=self.payload_column is not None,
                                                           metadata=self.metadata_column is not None))
        if self.name is not None:
            labels = dict(options, name=self.name, codec=self.codec, soft=self.soft_column is not None,
                          logits=self.logits, temperature=self.temperature if self.logits else None)
            self.result = self._session(self.name, files, labels)

    def _session(self, name: str | None, files: list, options: dict) -> dict:
        """One write session: every shard's part checked by its own task, then written by its own
        task, then committed by the driver's writer."""
        writer = _WRITERS[self.stage]
        session = writer.begin(name)
        write = ray.remote(_write_shard_part)
        for check_only in (True, False):
            refs = [write.remote(self.path, session, shard, parts, options, check_only) for shard, parts in enumerate(files)]
            # Every task ends before a failure is raised: the session must not end (and the lock
            # go) while a shard's write still runs.
            ray.wait(refs, num_returns=len(refs))
            results = ray.get(refs)
            self.shard_writes += results
        committed = writer.commit()
        if name is None:
            committed.update(inserted=sum(r["inserted"] for r in results), replaced=sum(r["replaced"] for r in results))
        return committed

    def _write_store(self, returns: list) -> None:
        """A single store: the driver writes the rows the write tasks returned."""
        returns = [r for r in returns if r["ids"]]
        ids = np.concatenate([i for r in returns for i in r["ids"]]) if returns else np.zeros(0, np.uint64)
        store = _store.open(self.path, write=True)
        try:
            with store.write(self.clearance) as tx:
                if self.embedding_column:
                    embeddings = np.concatenate([e for r in returns for e in r["embeddings"]]) if returns else np.zeros((0, 0), np.float32)
                    metadata = [m for r in returns for m in r["metadata"]] if self.metadata_column else None
                    payloads = [p for r in returns for p in r["payloads"]] if self.payload_column else None
                    self.samples = tx.put(ids, embeddings, metadata=metadata, payloads=payloads, secrecy=self.secrecy)
                if self.name is not None:
                    parts = [v for r in returns for v in r["values"]]
                    if self.soft_column:
                        # Logits become probabilities in the engine (softmax(z / T)), as `labels import --logits`.
                        labels = {"soft": np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 1), np.float32),
                                  "logits": self.logits, "temperature": self.temperature if self.logits else None}
                    else:
                        labels = {"hard": np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)}
                    self.result = tx.import_labels(self.name, ids=ids, **labels, codec=self.codec, agent=self.agent, secrecy=self.secrecy)
        finally:
            store.close()


def _fixed_width(schema, column: str | None) -> int | None:
    """The width of a fixed-size list or one-dimensional tensor column of an Arrow schema."""
    if schema is None or column is None or column not in schema.names:
        return None
    kind = schema.field(column).type
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    shape = getattr(kind, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 1 else None


def _stage_parts(stage: str, corpus: "_corpus.Corpus", columns: dict) -> list:
    """Routes a write task's rows and writes each shard's part as one .npz file in the stage
    (renamed into place whole); returns the files, per shard."""
    files: list = [[] for _ in range(len(corpus))]
    if not columns["ids"]:
        return files
    ids = np.concatenate(columns["ids"])
    route = corpus.route(ids)
    if (route < 0).any():
        raise BadInput(f"LabelDBDatasink: id {int(ids[route < 0][0])} belongs to no shard of {corpus.path} (its ranges leave it out)")
    whole = {"ids": ids}
    if columns["values"]:
        whole["values"] = np.concatenate(columns["values"])
    if columns["embeddings"]:
        whole["embeddings"] = np.concatenate(columns["embeddings"])
    task = uuid.uuid4().hex
    for shard in np.unique(route).tolist():
        rows = np.flatnonzero(route == shard)
        part = {key: value[rows] for key, value in whole.items()}
        if columns["metadata"]:
            part["metadata"] = np.array(json.dumps([columns["metadata"][i] for i in rows]))
        if columns["payloads"]:
            blobs = [columns["payloads"][i] for i in rows]
            part["payload_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
            part["payload_bytes"] = np.frombuffer(b"".join(blobs), np.uint8)
        folder = os.path.join(stage, f"shard-{shard}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{task}.npz")
        with open(path + ".tmp", "wb") as out:
            np.savez(out, **part)
        os.replace(path + ".tmp", path)
        files[shard].append(path)
    return files


def _load_parts(files: list) -> dict:
    """One shard's staged parts, concatenated (no pickled objects are read)."""
    parts = [np.load(f, allow_pickle=False) for f in files]
    out: dict = {"ids": np.concatenate([p["ids"] for p in parts]) if parts else np.zeros(0, np.uint64)}
    if parts and "values" in parts[0]:
        out["values"] = np.concatenate([p["values"] for p in parts])
    if parts and "embeddings" in parts[0]:
        out["embeddings"] = np.concatenate([p["embeddings"] for p in parts])
    if parts and "metadata" in parts[0]:
        out["metadata"] = [m for p in parts for m in json.loads(str(p["metadata"]))]
    if parts and "payload_bytes" in parts[0]:
        out["payloads"] = [bytes(p["payload_bytes"][a:b]) for p in parts for a, b in zip(p["payload_offsets"][:-1], p["payload_offsets"][1:])]
    return out


def _write_shard_part(path: str, session: dict, shard: int, files: list, options: dict, check_only: bool) -> dict:
    """A Ray task: shard `shard`'s part of a write session, read from its staged files and
    written into the shard (or only checked), in this worker process."""
    corpus, part = _corpus.Corpus(path), _load_parts(files)
    common = dict(agent=options["agent"], secrecy=options["secrecy"], clearance=options["clearance"], provenance=options["provenance"],
                  session=session, shard=shard, check_only=check_only)
    if "name" not in options:
        embeddings = part.get("embeddings", np.zeros((0, corpus.dimension), np.float32))
        metadata = part.get("metadata", []) if options["metadata"] else None
        payloads = part.get("payloads", []) if options["payloads"] else None
        result = corpus.put(part["ids"], embeddings, metadata=metadata, payloads=payloads, **common)
    else:
        c = len(corpus.classes)
        if options["soft"]:
            values = {"soft": part.get("values", np.zeros((0, c), np.float32)).astype(np.float32), "logits": options["logits"],
                      "temperature": options["temperature"]}
        else:
            values = {"hard": part.get("values", np.zeros(0, np.int64)).astype(np.int64)}
        result = corpus.import_labels(options["name"], part["ids"], codec=options["codec"], **values, **common)
    return {**result, "shard": shard, "pid": os.getpid(), "checked_only": check_only}


class _FitPartActor:
    """One shard's side of a fit: a FitPart held open across the fit's requests."""

    def __init__(self, path: str, shard: int, clearance: str):
        self._part = _corpus.FitPart(path, shard, clearance)

    def serve(self, request: bytes) -> bytes:
        return self._part.serve(request)

    def close(self) -> None:
        self._part.close()


def fit_projector(path: str | os.PathLike, name: str, source: str, rank: int | list[int] | None = None, *,
                  clearance: str = "public", actor_options=None, **options) -> dict:
    """Fits the next version of projector `name` over the corpus at `path` with one Ray actor
    per shard serving the passes over its rows (corpus.md K-17), as Corpus.fit_projector fits it
    on threads (same options; the same figures up to BLAS's rounding, which follows the threads
    and CPU kernels each process has).
    The driver holds the corpus's writer, runs the solve and the refinement's steps, and records
    the version in every shard. Returns the version, as Corpus.fit_projector does.

    Each actor opens its shard only, at `path` as its machine sees it. Ray places actors where it
    likes: `actor_options(shard)` (or a dict for all) gives each actor's `.options(...)`, e.g. a
    NodeAffinitySchedulingStrategy for the node that holds the shard (default: num_cpus=0)."""
    path = os.fspath(path)
    corpus = _corpus.Corpus(path)
    actor = ray.remote(_FitPartActor)
    settings = actor_options if callable(actor_options) else (lambda shard: actor_options or {"num_cpus": 0})
    actors = [actor.options(**settings(shard)).remote(path, shard, clearance) for shard in range(len(corpus.shards))]
    try:
        return corpus.fit_projector(name, source, rank, clearance=clearance,
                                    parts=lambda shard, request: ray.get(actors[shard].serve.remote(request)), **options)
    finally:
        # Every actor goes, whatever closing one does; the fit's own error (if any) is the one raised.
        for handle in actors:
            try:
                ray.get(handle.close.remote())
            except Exception:  # noqa: BLE001 — the actor is killed next either way
                pass
            ray.kill(handle)
