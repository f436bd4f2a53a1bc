"""Stores and transactions: thin wrappers over the C API's handles."""
from __future__ import annotations

import ctypes
import json
import os
import threading
from ctypes import POINTER, c_char_p, c_float, c_int32, c_int64, c_size_t, c_uint8, c_uint64, c_void_p
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from . import _native
from ._errors import BadInput, Error, NotFound
from ._native import check, lib, take_string

_STATUS = {0: None, 1: "regenerated", 2: "corrected", 3: "stale", 4: "unfitted"}


def _ptr(array: np.ndarray | None, ctype):
    return None if array is None else array.ctypes.data_as(POINTER(ctype))


def _as_array(values, dtype, name: str, ndim: int | None = None) -> np.ndarray:
    """A C-contiguous array of `dtype`: Fortran-order and strided input is copied once; a dtype
    that would lose information (floats for ids, say) is refused."""
    array = np.asarray(values)
    target = np.dtype(dtype)
    if array.dtype != target:
        kind = array.dtype.kind
        integral = kind in "iub" and target.kind in "iu"
        if array.size and not (integral or (kind in "iuf" and target.kind == "f")):
            raise BadInput(f"{name}: dtype {array.dtype} cannot be used as {target}")
        if integral and kind == "i" and target.kind == "u" and array.size and array.min() < 0:
            raise BadInput(f"{name}: negative values cannot be ids")
        array = array.astype(target)
    if ndim is not None and array.ndim != ndim:
        raise BadInput(f"{name}: expected {ndim} dimension(s), found shape {array.shape}")
    return np.ascontiguousarray(array)


def _options(**values) -> bytes:
    return json.dumps({k: v for k, v in values.items() if v is not None}).encode()


def _c(text: str, what: str) -> bytes:
    """A string for the C API: C strings end at NUL, so a NUL inside would silently cut it."""
    if not isinstance(text, str):
        raise BadInput(f"{what} must be a string, not {type(text).__name__}")
    if "\0" in text:
        raise BadInput(f"{what} contains a NUL character")
    try:
        return text.encode()
    except UnicodeEncodeError as error:
        raise BadInput(f"{what} is not valid Unicode ({error.reason})") from None


def _id(value, what: str = "id") -> int:
    """A sample id: an integer in 0 … 2**64 - 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2 ** 64:
        raise BadInput(f"{what} must be an integer in 0 … 2**64 - 1, not {value!r}")
    return int(value)


def _tags(values) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    return list(values)


@dataclass
class Sample:
    """One sample: its id, embedding, metadata, payload and taint label; `labels` and `regen` hold
    the label sets and projectors asked for (dicts as in a Batch's row)."""
    id: int
    embedding: np.ndarray
    metadata: dict
    payload: bytes
    taint: dict
    labels: dict = field(default_factory=dict)
    regen: dict = field(default_factory=dict)


@dataclass
class LabelColumns:
    """One label set's columns of a batch: `version` (0 = no label), `hard` (-1 = none), and the
    soft labels dense ([n, C]) or compact (`top_classes`, `top_probabilities` [n, K], `leftover`)."""
    name: str
    version: np.ndarray
    hard: np.ndarray
    dense: np.ndarray | None = None
    top_classes: np.ndarray | None = None
    top_probabilities: np.ndarray | None = None
    leftover: np.ndarray | None = None


@dataclass
class RegenColumns:
    """One projector's regenerated labels: `probabilities` [n, C] and `status` per row."""
    name: str
    probabilities: np.ndarray
    status: np.ndarray

    def status_names(self) -> list:
        return [_STATUS[int(s)] for s in self.status]


class Batch:
    """Columns of a batch read, row i for ids[i]. Metadata stays JSON bytes until `metadata` is read."""

    def __init__(self, ids, found, embeddings, metadata_json, payloads, taints, labels, regen):
        self.ids = ids
        self.found = found
        self.embeddings = embeddings
        self.metadata_json = metadata_json
        self.payloads = payloads
        self.taints = taints
        self.labels: dict[str, LabelColumns] = labels
        self.regen: dict[str, RegenColumns] = regen
        self._metadata = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def metadata(self) -> list | None:
        """Each row's metadata as a dict (parsed on first use)."""
        if self._metadata is None and self.metadata_json is not None:
            self._metadata = [json.loads(m) if m else {} for m in self.metadata_json]
        return self._metadata

    def to_arrow(self, classes: Sequence[str] | None = None, label_sets: dict | None = None):
        """The batch as a pyarrow.Table (see labeldb.arrow)."""
        from . import _arrow
        return _arrow.batch_table(self, classes, label_sets)


class _PreparedRead:
    """One kind of batch read with its buffers allocated once: the C struct points into numpy
    arrays of `capacity` rows, reused by every call (results are copied out)."""

    def __init__(self, store, capacity, labels, regen, form, k, embeddings, metadata, payloads, taints):
        n, d, c = capacity, store.dimension, len(store.classes)
        self.capacity, self.labels, self.regen = capacity, labels, regen
        self.flags = (embeddings, metadata, payloads, taints)
        b = self.struct = _native.BatchStruct()
        self.found = np.zeros(n, np.uint8)
        self.emb = np.zeros((n, d), np.float32) if embeddings else None
        self.meta_off = np.zeros(n + 1, np.uint64) if metadata else None
        self.pay_off = np.zeros(n + 1, np.uint64) if payloads else None
        self.taint_index = np.zeros(n, np.int32) if taints else None
        b.found, b.embeddings, b.embedding = _ptr(self.found, c_uint8), int(embeddings), _ptr(self.emb, c_float)
        b.metadata, b.metadata_offsets = int(metadata), _ptr(self.meta_off, c_uint64)
        b.payloads, b.payload_offsets = int(payloads), _ptr(self.pay_off, c_uint64)
        b.taints, b.taint_index = int(taints), _ptr(self.taint_index, c_int32)
        self.names = (c_char_p * max(len(labels), 1))(*[s.encode() for s in labels])
        b.label_count, b.labels, b.soft_form, b.compact_k = len(labels), self.names, form, k
        self.label_out, self.label_arrays = (_native.LabelColumns * max(len(labels), 1))(), []
        for i, name in enumerate(labels):
            cols = LabelColumns(name, np.zeros(n, np.int32), np.zeros(n, np.int32))
            if form == _native.SOFT_DENSE:
                cols.dense = np.zeros((n, c), np.float32)
            elif form == _native.SOFT_COMPACT:
                cols.top_classes = np.zeros((n, k), np.int32)
                cols.top_probabilities = np.zeros((n, k), np.float32)
                cols.leftover = np.zeros(n, np.float32)
            self.label_out[i] = _native.LabelColumns(
                _ptr(cols.version, c_int32), _ptr(cols.hard, c_int32), _ptr(cols.dense, c_float),
                _ptr(cols.top_classes, c_int32), _ptr(cols.top_probabilities, c_float), _ptr(cols.leftover, c_float))
            self.label_arrays.append(cols)
        b.label_columns = self.label_out
        self.regen_names = (c_char_p * max(len(regen), 1))(*[s.encode() for s in regen])
        self.regen_out, self.regen_arrays = (_native.RegenColumns * max(len(regen), 1))(), []
        for i, name in enumerate(regen):
            cols = RegenColumns(name, np.zeros((n, c), np.float32), np.zeros(n, np.uint8))
            self.regen_out[i] = _native.RegenColumns(_ptr(cols.probabilities, c_float), _ptr(cols.status, c_uint8))
            self.regen_arrays.append(cols)
        b.regen_count, b.regen, b.regen_columns = len(regen), self.regen_names, self.regen_out
        self.struct_ref = ctypes.byref(b)
        # The ids go into a buffer of our own: its pointer is made once (data_as costs microseconds).
        self.ids = np.zeros(n, np.uint64)
        self.ids_ptr = _ptr(self.ids, c_uint64)
        self.taint_memo: dict = {}

    def call(self, handle, ids: np.ndarray) -> int:
        """Runs the read for `ids` (copied into the ids buffer); the results stay in the buffers."""
        n = len(ids)
        self.ids[:n] = ids
        check(lib.ldb_get_many(handle, self.ids_ptr, n, self.struct_ref))
        return n

    def taint_rows(self, n: int) -> list:
        """Each row's taint label (dicts shared between rows with the same label)."""
        text = self.struct.taint_json or b"[]"
        distinct = self.taint_memo.get(text)
        if distinct is None:
            distinct = self.taint_memo[text] = json.loads(text)
        return [distinct[i] if i >= 0 else None for i in self.taint_index[:n].tolist()]

    def sample(self, handle, id: int) -> "Sample | None":
        """The one-row read of Transaction.get, built without the Batch machinery."""
        self.ids[0] = id
        check(lib.ldb_get_many(handle, self.ids_ptr, 1, self.struct_ref))
        if not self.found[0]:
            return None
        b = self.struct
        embeddings, metadata, payloads, taints = self.flags
        labels = {}
        for cols in self.label_arrays:
            entry = {"version": int(cols.version[0]), "hard": int(cols.hard[0])}
            if cols.dense is not None:
                entry["soft"] = cols.dense[0].copy()
            if cols.top_classes is not None:
                entry.update(top_classes=cols.top_classes[0].copy(), top_probabilities=cols.top_probabilities[0].copy(),
                             leftover=float(cols.leftover[0]))
            labels[cols.name] = entry
        regen = {c.name: {"probabilities": c.probabilities[0].copy(), "status": _STATUS[int(c.status[0])]}
                 for c in self.regen_arrays}
        meta = json.loads(ctypes.string_at(b.metadata_bytes, b.metadata_size)) if metadata and b.metadata_size else {}
        payload = ctypes.string_at(b.payload_bytes, b.payload_size) if payloads and b.payload_size else b""
        return Sample(id, self.emb[0].copy() if embeddings else None, meta, payload,
                      self.taint_rows(1)[0] if taints else None, labels, regen)

    def run(self, handle, ids: np.ndarray) -> Batch:
        n = self.call(handle, ids)
        b = self.struct
        embeddings, metadata, payloads, taints = self.flags
        taint_rows = self.taint_rows(n) if taints else None
        labels = {}
        for cols in self.label_arrays:
            labels[cols.name] = LabelColumns(
                cols.name, cols.version[:n].copy(), cols.hard[:n].copy(),
                None if cols.dense is None else cols.dense[:n].copy(),
                None if cols.top_classes is None else cols.top_classes[:n].copy(),
                None if cols.top_probabilities is None else cols.top_probabilities[:n].copy(),
                None if cols.leftover is None else cols.leftover[:n].copy())
        regen = {c.name: RegenColumns(c.name, c.probabilities[:n].copy(), c.status[:n].copy()) for c in self.regen_arrays}
        return Batch(ids, self.found[:n].astype(bool), None if self.emb is None else self.emb[:n].copy(),
                     _slices(b.metadata_bytes, b.metadata_size, self.meta_off[:n + 1]) if metadata else None,
                     _slices(b.payload_bytes, b.payload_size, self.pay_off[:n + 1]) if payloads else None,
                     taint_rows, labels, regen)


class Transaction:
    """A snapshot under a clearance. Use as a context manager; it belongs to the thread that began it."""

    def __init__(self, store: "Store", clearance: str, write: bool):
        self._store = store
        self._handle = c_void_p()
        self.clearance = clearance
        self._thread = threading.get_ident()
        self._readers: dict = {}  # prepared batch reads by request, reused across calls
        self._widths: dict = {}   # compact K by label sets (a write that imports labels clears it)
        check(lib.ldb_txn_begin(store._live(), _c(clearance, "clearance"), 1 if write else 0, ctypes.byref(self._handle)))
        store._transactions += 1

    def _live(self):
        if not self._handle.value:
            raise BadInput("the transaction has ended (committed or aborted); begin a new one")
        if threading.get_ident() != self._thread:
            raise BadInput("the transaction was used from a thread other than the one that began it")
        return self._handle

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.commit()
        else:
            self.abort()
        return False

    def __del__(self):
        # A write collected on another thread cannot be aborted there; it stays open (and its
        # lock held) until the process ends, as an unended LMDB write would.
        if getattr(self, "_handle", None) is not None and self._handle.value and os.getpid() == self._store._pid:
            try:
                self.abort()
            except Exception:
                pass

    def _end(self):
        self._handle = c_void_p()
        self._store._transactions -= 1

    def commit(self) -> None:
        """Ends the transaction (a write transaction commits its changes)."""
        handle = self._live()
        try:
            check(lib.ldb_txn_commit(handle))
        finally:
            self._end()

    def abort(self) -> None:
        """Ends the transaction without writing anything. A write transaction can only be ended
        on the thread that began it (LMDB ties its lock to that thread)."""
        if not self._handle.value:
            return
        if isinstance(self, WriteTransaction) and threading.get_ident() != self._thread:
            raise BadInput("a write transaction must be aborted on the thread that began it")
        lib.ldb_txn_abort(self._handle)
        self._end()

    # ---- reading ----

    def count(self) -> int:
        """The number of samples the clearance sees."""
        out = c_uint64()
        check(lib.ldb_count(self._live(), ctypes.byref(out)))
        return out.value

    __len__ = count

    def _take_ids(self, call, *args) -> np.ndarray:
        pointer, count = POINTER(c_uint64)(), c_size_t()
        check(call(self._live(), *args, ctypes.byref(pointer), ctypes.byref(count)))
        try:
            return np.ctypeslib.as_array(pointer, shape=(count.value,)).copy() if count.value else np.zeros(0, np.uint64)
        finally:
            lib.ldb_free(ctypes.cast(pointer, c_void_p))

    def ids(self) -> np.ndarray:
        """Every visible id, ascending (uint64)."""
        return self._take_ids(lib.ldb_ids)

    def hard_labels(self, set: str) -> tuple[np.ndarray, np.ndarray]:
        """Every hard label of label set `set` ("NAME" or "NAME@VERSION") this transaction sees, in one
        engine call: (ids uint64, classes int32), ascending by id; samples without a hard label there
        are left out. Read a block of rows at a time, much faster than get_many for a whole set."""
        ids, classes, count = POINTER(c_uint64)(), POINTER(ctypes.c_int32)(), c_size_t()
        check(lib.ldb_hard_labels(self._live(), _c(set, "the label set"), ctypes.byref(ids), ctypes.byref(classes), ctypes.byref(count)))
        try:
            if not count.value:
                return np.zeros(0, np.uint64), np.zeros(0, np.int32)
            return (np.ctypeslib.as_array(ids, shape=(count.value,)).copy(),
                    np.ctypeslib.as_array(classes, shape=(count.value,)).copy())
        finally:
            lib.ldb_free(ctypes.cast(ids, c_void_p))
            lib.ldb_free(ctypes.cast(classes, c_void_p))

    def views(self, ids, set: str, epoch: int | None = None, soft: str = "compact", topk: int | None = None) -> "Views":
        """The augmented views of `ids` in the per-view label set `set` ("NAME" or "NAME@VERSION"),
        each with its label, in one engine call: every view of each sample, or with `epoch` the
        one view training epoch E replays (index E mod n of the sample's n views, in view-number
        order). soft: "compact" (K classes, probabilities, leftover; K from a topk codec or
        `topk`), "dense" ([views, C]) or "none". Absent, hidden and unlabelled ids read no views."""
        ids = _as_array(ids, np.uint64, "ids", ndim=1)
        if soft not in ("compact", "dense", "none"):
            raise BadInput(f"soft must be 'compact', 'dense' or 'none', not {soft!r}")
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer))):
            raise BadInput(f"epoch must be an integer, not {epoch!r}")
        out = POINTER(_native.ViewsStruct)()
        check(lib.ldb_read_views(self._live(), _c(set, "the label set"), _ptr(ids, c_uint64), len(ids),
                                 _options(epoch=None if epoch is None else int(epoch), soft=soft, k=topk), ctypes.byref(out)))
        try:
            return Views._copy(ids, out.contents)
        finally:
            lib.ldb_views_free(out)

    def get_many(self, ids, labels: Sequence[str] | str | None = None, regen: Sequence[str] | str | None = None,
                 soft: str = "compact", topk: int | None = None, embeddings: bool = True, metadata: bool = True,
                 payloads: bool = True, taints: bool = True, missing: str = "raise") -> Batch:
        """Reads the rows of `ids` (any order) in one engine call.

        labels: label set names ("NAME" or "NAME@VERSION") whose labels to read; soft: "compact"
        (top-K classes and probabilities plus the leftover, K from topk or the set's topk:K codec),
        "dense" ([n, C]) or "none"; regen: projectors to regenerate labels with. missing: "raise"
        (NotFound naming the first absent id) or "keep" (the row's `found` is False).
        """
        ids = _as_array(ids, np.uint64, "ids", ndim=1)
        if missing not in ("raise", "keep"):
            raise BadInput(f"missing must be 'raise' or 'keep', not {missing!r}")
        labels, regen, form, k = self._resolve(labels, regen, soft, topk)
        key = (labels, regen, form, k, embeddings, metadata, payloads, taints)
        reader = self._readers.get(key)
        if reader is None or reader.capacity < len(ids):
            reader = _PreparedRead(self._store, max(len(ids), 1), *key)
            self._readers[key] = reader
        batch = reader.run(self._live(), ids)
        if missing == "raise" and not batch.found.all():
            absent = ids[~batch.found][0]
            raise NotFound(f"sample {int(absent)} is not in the store (or the clearance hides it)")
        return batch

    def _resolve(self, labels, regen, soft: str, topk):
        """The label sets and projectors as tuples of checked names, the soft form's code, and K of
        the compact form (from `topk`, else from the sets' topk:K codec)."""
        labels = (labels,) if isinstance(labels, str) else tuple(labels or ())
        regen = (regen,) if isinstance(regen, str) else tuple(regen or ())
        for name in labels + regen:
            _c(name, "a label set or projector name")
        form = {"none": _native.SOFT_NONE, "dense": _native.SOFT_DENSE, "compact": _native.SOFT_COMPACT}.get(soft)
        if form is None:
            raise BadInput(f"soft must be 'compact', 'dense' or 'none', not {soft!r}")
        if topk is not None and (isinstance(topk, bool) or not isinstance(topk, (int, np.integer))
                                 or not 1 <= int(topk) <= len(self._store.classes)):
            raise BadInput(f"topk must be 1 … {len(self._store.classes)} (the classes), not {topk!r}")
        # K = 0 would let the library take each set's topk:K codec's K, but the arrays need it first.
        k = int(topk or 0) if form == _native.SOFT_COMPACT else 0
        if form == _native.SOFT_COMPACT and labels and k == 0:
            k = self._widths.get(labels) or self._widths.setdefault(labels, self._codec_width(list(labels)))
        return labels, regen, form, k

    def _codec_width(self, labels: list[str]) -> int:
        """K of the sets' topk:K codecs (the arrays need it before the call); BadInput when they differ."""
        codecs = {s["name"]: s.get("codec") for s in self.label_sets()}
        widths = set()
        for name in labels:
            base = name.split("@")[0]
            if base not in codecs:
                raise NotFound(f"unknown label set '{name}'")
            if codecs[base] is None:
                continue  # no soft labels: any K serves
            parts = codecs[base].split(":")
            widths.add(int(parts[1]) if len(parts) == 3 and parts[0] == "topk" else 0)
        if 0 in widths or len(widths) > 1:
            raise BadInput(f"compact soft labels of {labels}: give topk= (the codecs do not all keep the same fixed K)")
        return widths.pop() if widths else 1

    def get(self, id: int, labels=None, regen=None, soft: str = "dense", topk: int | None = None) -> Sample:
        """One sample with the labels asked for; NotFound when it is absent or hidden."""
        key = ("get", labels if isinstance(labels, str) else tuple(labels or ()),
               regen if isinstance(regen, str) else tuple(regen or ()), soft, topk)
        reader = self._readers.get(key)
        if reader is None:
            names, projectors, form, k = self._resolve(labels, regen, soft, topk)
            reader = self._readers[key] = _PreparedRead(self._store, 1, names, projectors, form, k, True, True, True, True)
        sample = reader.sample(self._live(), _id(id))
        if sample is None:
            raise NotFound(f"sample {int(id)} is not in the store (or the clearance hides it)")
        return sample

    def query(self, where: str | None = None, labels=None, regen=None, order: str = "id", descending: bool = False,
              limit: int | None = None, offset: int = 0) -> "QueryResult":
        """Runs a filter (the CLI's `--where` language); the result reads its rows lazily.
        `order`: "id", or "confidence:SET", "margin:SET", "entropy:SET" (a label score;
        unlabelled samples last)."""
        ids = self._take_ids(lib.ldb_query, _c(where or "", "the filter"),
                             _options(order=order, descending=descending, limit=limit, offset=offset))
        return QueryResult(self, ids, labels, regen)

    def label_set(self, name: str, soft: str = "compact", topk: int | None = None) -> "LabelSetRows":
        """Every sample's label in label set `name` ("NAME" or "NAME@VERSION"), read in batches:
        `to_arrow_reader()`/`to_arrow()` give the rows that have a label, with the columns of
        `query(...).to_arrow()`."""
        return LabelSetRows(self, name, soft, topk)

    def knn(self, queries, k: int = 10, labels: str | None = None, flow: str = "permissive", lam: float = 0.1,
            metric: str = "cosine", where: str | None = None) -> "KNNResult":
        """Exact k nearest neighbours; with `labels`, the kNN label of each query (as `labeldb knn`)."""
        return _knn(lib.ldb_knn, self._live(), self._store.dimension, queries, k,
                    dict(labels=labels, flow=flow, **{"lambda": lam}, metric=metric, where=where))

    def _json(self, call, *args):
        out = c_void_p()
        check(call(self._live(), *args, ctypes.byref(out)))
        return json.loads(take_string(out))

    def label_sets(self) -> list[dict]:
        """Every label set with its versions (as `labeldb labels list --format json`)."""
        return self._json(lib.ldb_label_sets)

    def projectors(self) -> list[dict]:
        """Every projector with its versions."""
        return self._json(lib.ldb_projectors)

    def provenance(self) -> dict:
        """The provenance log: its hash-chain check ("log") and W3C PROV-JSON ("prov")."""
        return self._json(lib.ldb_provenance)

    def audit(self, id: int) -> dict:
        """A sample's labels, why they carry their taint labels, and their lineage (as `labeldb audit`)."""
        return self._json(lib.ldb_audit, c_uint64(_id(id)))

    def agreement(self, sets, where: str | None = None) -> dict:
        """How far label sets (or projectors) agree, as `labeldb labels agree`: {"pairs": [{"a", "b",
        "count", "agreement", "kappa", "js_divergence", "confusion"}], "fleiss": {"sets", "count",
        "fleiss_kappa"} or None}."""
        return self._json(lib.ldb_agreement, _options(sets=list(sets), where=where))

    def label_issues(self, given: str, probs: str, filter: str = "prune-by-noise-rate", where: str | None = None) -> dict:
        """Likely label errors by confident learning, as `labeldb labels issues` (cleanlab 2.9's
        find_label_issues): {"given", "probs", "examined", "estimated_errors", "issues": [{"rank",
        "id", "given", "suggested", "self_confidence", "margin"}, least self-confident first],
        "written": None}. `given` is a hard label set, `probs` a soft set or a projector."""
        return self._json(lib.ldb_label_issues, _options(given=given, probs=probs, filter=filter, where=where))

    def corpus_card(self, labels=None, html: str | None = None, title: str | None = None) -> dict:
        """The corpus card of what this transaction's clearance sees, as `labeldb card --format
        json` (composition, label sources, agreement, flow, provenance, embeddings); with `html`,
        the self-contained page is also written to that path."""
        if isinstance(labels, str):
            labels = [labels]
        return self._json(lib.ldb_corpus_card, _options(labels=None if labels is None else list(labels), html=html, title=title))

    def check_projector(self, name: str) -> dict:
        """Recomputes a projector's labels for every fitted sample and checks its bound, as
        `labeldb projector check`: {"checked", "max_kl", "top1_misses", "violations", "bound_holds", …}."""
        return self._json(lib.ldb_check_projector, _c(name, "the projector name"))


def _fails_transaction(method):
    """A write method whose failure — in the engine or in this package's own checks — fails the
    transaction, so commit cannot pass over a call that did not happen."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._failed:
            raise BadInput(f"an earlier call in this write transaction failed ({self._failed}); abort it")
        try:
            return method(self, *args, **kwargs)
        except Error as error:
            self._failed = str(error)
            raise
    return wrapper


class WriteTransaction(Transaction):
    """The write transaction. A failing call leaves it failed: only abort (or leaving the `with`
    block by the exception) is possible, and nothing is written."""

    _failed: str | None = None

    def commit(self) -> None:
        """Commits every change; BadInput (and nothing written) after a failed call."""
        if self._failed and self._handle.value:
            reason = self._failed
            self.abort()
            raise BadInput(f"an earlier call in this write transaction failed ({reason}); nothing was written")
        super().commit()

    @_fails_transaction
    def put(self, ids, embeddings, metadata: Sequence[dict] | None = None, payloads: Sequence[bytes] | None = None,
            secrecy=None, integrity=None, privilege=None, mode: str = "replace") -> dict:
        """Stores samples; a metadata dict's "taint" member adds tags to that row's label."""
        ids, emb, meta_off, meta_bytes, pay_off, pay_bytes = _put_columns(ids, embeddings, metadata, payloads, self._store.dimension)
        out = c_void_p()
        check(lib.ldb_put(self._live(), _ptr(ids, c_uint64), len(ids), _ptr(emb, c_float),
                          _ptr(meta_off, c_uint64), _ptr(meta_bytes, c_uint8), _ptr(pay_off, c_uint64), _ptr(pay_bytes, c_uint8),
                          _options(mode=mode, secrecy=_tags(secrecy), integrity=_tags(integrity), privilege=_tags(privilege)),
                          ctypes.byref(out)))
        return json.loads(take_string(out))

    @_fails_transaction
    def put_arrow(self, data, **options) -> dict:
        """Stores the rows of a pyarrow Table or RecordBatchReader with the columns to_arrow gives
        (`id`, `embedding`, optional `metadata` JSON strings and `payload` binary)."""
        from . import _arrow
        return _arrow.put_arrow(self, data, **options)

    @_fails_transaction
    def consensus(self, name: str, sources, method: str = "mean", weights: dict | None = None, codec: str | None = None,
                  agent: str = "python", tolerance: float = 1e-6, max_iterations: int = 500,
                  reference: str | None = None, reference_tag: str | None = None, reference_set: str | None = None) -> dict:
        """Writes a new version of label set `name`: the consensus of `sources` (mean, vote or
        dawid-skene), as `labeldb labels consensus`; `reference` (a trusted set) or `reference_tag`
        with `reference_set` weight each source per class by its accuracy there. Returns the CLI's
        JSON (version, sources; for Dawid–Skene iterations and source_accuracy; with a reference
        reference_accuracy and reference_counts)."""
        return self._json(lib.ldb_consensus, _c(name, "the label set name"),
                          _options(sources=list(sources), method=method, weights=weights, codec=codec, agent=agent,
                                   tolerance=tolerance, max_iterations=max_iterations, reference=reference,
                                   reference_tag=reference_tag, reference_set=reference_set))

    @_fails_transaction
    def write_label_issues(self, name: str, given: str, probs: str, filter: str = "prune-by-noise-rate",
                           where: str | None = None, agent: str = "python") -> dict:
        """`label_issues`, and the suggested classes of the flagged samples written as a new
        version of hard label set `name`, for review (`labels issues --write-set`); "written"
        holds the version."""
        return self._json(lib.ldb_label_issues, _options(given=given, probs=probs, filter=filter, where=where,
                                                          write_set=name, agent=agent))

    @_fails_transaction
    def drop_labels(self, name: str) -> dict:
        """Drops label set "SET", or one old version "SET@V", as `labeldb labels drop`; projectors
        fitted on it keep their bound."""
        return self._json(lib.ldb_drop_labels, _c(name, "the label set name"))

    @_fails_transaction
    def relabel(self, ids, add_secrecy=None, remove_secrecy=None, add_integrity=None, remove_integrity=None,
                privilege=None, agent: str = "python") -> int:
        """Changes samples' taint labels (as `labeldb taint`); declassifying and endorsing need the
        privilege for each tag (Refused otherwise). Returns how many labels changed."""
        ids = _as_array(ids, np.uint64, "ids", ndim=1)
        changed = c_uint64()
        check(lib.ldb_relabel(self._live(), _ptr(ids, c_uint64), len(ids),
                              _options(add_secrecy=_tags(add_secrecy), remove_secrecy=_tags(remove_secrecy),
                                       add_integrity=_tags(add_integrity), remove_integrity=_tags(remove_integrity),
                                       privilege=_tags(privilege), agent=agent), ctypes.byref(changed)))
        return changed.value

    @_fails_transaction
    def import_head(self, name: str, values, replace: bool = False, secrecy=None, integrity=None, privilege=None) -> None:
        """Stores a base head W0 ([d, C] floats) for projector fits (as `labeldb heads import`)."""
        w = _as_array(values, np.float32, "values", ndim=2)
        check(lib.ldb_import_head(self._live(), _c(name, "the head name"), _ptr(w, c_float), w.shape[0], w.shape[1],
                                  _options(replace=replace, secrecy=_tags(secrecy), integrity=_tags(integrity),
                                           privilege=_tags(privilege))))

    @_fails_transaction
    def delete(self, ids) -> int:
        """Deletes the samples the transaction sees among `ids`; how many were deleted."""
        ids = _as_array(ids, np.uint64, "ids", ndim=1)
        deleted = c_uint64()
        check(lib.ldb_delete(self._live(), _ptr(ids, c_uint64), len(ids), ctypes.byref(deleted)))
        return deleted.value

    @_fails_transaction
    def import_labels(self, name: str, soft=None, hard=None, multi=None, ids=None, codec: str | None = None,
                      agent: str = "python", secrecy=None, integrity=None, privilege=None, normalize: bool = False,
                      logits: bool = False, temperature: float | None = None,
                      topk_classes=None, topk_probs=None, leftover=None, views=None) -> dict:
        """Imports one kind of labels for `ids` into label set `name`, as its next version: soft
        ([n, C] probabilities, or logits), hard ([n] classes), multi (a list of class lists), or
        compact soft labels as they often arrive — topk_classes and topk_probs ([n, K], most
        probable first) with an optional leftover ([n]; 1 - sum when absent), stored as given
        with the codec topk:K:f16 (the version's fidelity then says "exact").

        With `views` the set holds labels per augmented view: row i labels one view of sample
        ids[i] (ids repeat once per view), and `views` gives each row's view — a list of
        views-file objects ({"view": n, "crop": [x0, y0, x1, y1], "flip": b, "epoch": e, "seed": s,
        other members kept as extras}) or columns {"view", "crop", "flip", "epoch", "seed",
        "extra"}. Each sample's views replace its view list for this version (soft, hard or
        compact labels; not multi, not logits)."""
        if ids is None:
            raise BadInput("import_labels: ids are required")
        ids = _as_array(ids, np.uint64, "ids", ndim=1)
        name_bytes = _c(name, "the label set name")
        self._widths.clear()
        self._readers.clear()  # K of a compact read may change with this import's codec
        if views is not None and (multi is not None or logits):
            raise BadInput("import_labels: per-view labels are soft, hard or compact (topk_*); not multi-labels or logits")
        rows = _LabelArrays(len(ids), len(self._store.classes), soft, hard, multi, topk_classes, topk_probs, leftover)
        if (logits or temperature is not None) and rows.soft is None:
            raise BadInput("import_labels: logits and temperature go with soft")
        options = _options(codec=codec, agent=agent, secrecy=_tags(secrecy), integrity=_tags(integrity), privilege=_tags(privilege),
                           normalize=normalize, logits=logits if views is None and rows.k == 0 else None,
                           temperature=temperature if views is None and rows.k == 0 else None)
        out = c_void_p()
        if views is not None:
            params, keep = _view_params(views, len(ids))
            check(lib.ldb_import_view_labels(
                self._live(), name_bytes, _ptr(ids, c_uint64), len(ids), ctypes.byref(params), _ptr(rows.soft, c_float),
                _ptr(rows.hard, c_int64), rows.k, _ptr(rows.classes, c_int32), _ptr(rows.probs, c_float), _ptr(rows.rest, c_float),
                options, ctypes.byref(out)))
            del keep
        elif rows.k:
            check(lib.ldb_import_topk_labels(
                self._live(), name_bytes, _ptr(ids, c_uint64), len(ids), rows.k, _ptr(rows.classes, c_int32), _ptr(rows.probs, c_float),
                _ptr(rows.rest, c_float), options, ctypes.byref(out)))
        else:
            check(lib.ldb_import_labels(
                self._live(), name_bytes, _ptr(ids, c_uint64), len(ids), _ptr(rows.soft, c_float), _ptr(rows.hard, c_int64),
                _ptr(rows.multi_offsets, c_uint64), _ptr(rows.multi_classes, c_int64), options, ctypes.byref(out)))
        return json.loads(take_string(out))


class _LabelArrays:
    """One import's labels as the C API takes them, every shape checked against the n ids and C
    classes first (the engine reads exactly the lengths it is promised): exactly one of soft
    [n, C], hard [n], multi (n lists), or compact rows (topk_classes and topk_probs [n, K],
    leftover [n] or None; k = K, else 0)."""

    def __init__(self, n: int, c: int, soft, hard, multi, topk_classes, topk_probs, leftover):
        self.soft = self.hard = self.multi_offsets = self.multi_classes = self.classes = self.probs = self.rest = None
        self.k = 0
        if topk_classes is not None or topk_probs is not None:
            if topk_classes is None or topk_probs is None or any(x is not None for x in (soft, hard, multi)):
                raise BadInput("import_labels: topk_classes and topk_probs go together, without soft, hard or multi")
            wide = _as_array(topk_classes, np.int64, "topk_classes", ndim=2)
            if wide.size and (wide.min() < 0 or wide.max() >= c):
                raise BadInput(f"topk_classes: classes must be 0 … {c - 1}")
            self.classes = wide.astype(np.int32)
            self.probs = _as_array(topk_probs, np.float32, "topk_probs", ndim=2)
            if self.classes.shape != self.probs.shape or self.classes.shape[0] != n or self.classes.shape[1] < 1:
                raise BadInput(f"topk_classes {self.classes.shape} and topk_probs {self.probs.shape} must both be ({n}, K)")
            self.k = self.classes.shape[1]
            self.rest = None if leftover is None else _as_array(leftover, np.float32, "leftover", ndim=1)
            if self.rest is not None and len(self.rest) != n:
                raise BadInput(f"leftover: {len(self.rest)} values for {n} ids")
            return
        if leftover is not None:
            raise BadInput("import_labels: leftover goes with topk_classes and topk_probs")
        if sum(x is not None for x in (soft, hard, multi)) != 1:
            raise BadInput("import_labels: give exactly one of soft, hard, multi, or topk_classes with topk_probs")
        if soft is not None:
            self.soft = _as_array(soft, np.float32, "soft", ndim=2)
            if self.soft.shape != (n, c):
                raise BadInput(f"soft: expected shape ({n}, {c}), found {self.soft.shape}")
        elif hard is not None:
            self.hard = _as_array(hard, np.int64, "hard", ndim=1)
            if len(self.hard) != n:
                raise BadInput(f"hard: {len(self.hard)} labels for {n} ids")
        else:
            if len(multi) != n:
                raise BadInput(f"multi: {len(multi)} rows for {n} ids")
            lists = [_as_array(list(row), np.int64, "multi", ndim=1) for row in multi]
            self.multi_offsets = np.zeros(n + 1, np.uint64)
            self.multi_offsets[1:] = np.cumsum([len(x) for x in lists])
            self.multi_classes = np.ascontiguousarray(np.concatenate(lists) if lists else np.zeros(0, np.int64), np.int64)


def _knn(call, target, dimension: int, queries, k, options: dict) -> "KNNResult":
    """ldb_knn or ldb_corpus_knn on `target` (a transaction, or a corpus path): queries and k
    checked, the [n, k] ids and similarities, and with labels their kNN labels."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= 100_000:
        raise BadInput(f"k must be an integer in 1 … 100000, not {k!r}")
    q = _as_array(queries, np.float32, "queries")
    if q.ndim == 1:
        q = q.reshape(1, -1)
    if q.ndim != 2 or q.shape[1] != dimension:
        raise BadInput(f"queries: expected [n, {dimension}], found shape {q.shape}")
    n = q.shape[0]
    ids = np.zeros((n, k), np.uint64)
    sims = np.zeros((n, k), np.float32)
    out = c_void_p()
    check(call(target, _ptr(q, c_float), n, k, _options(**options), _ptr(ids, c_uint64), _ptr(sims, c_float), ctypes.byref(out)))
    return KNNResult(ids, sims, json.loads(take_string(out)) if options.get("labels") else None)


def _bytes(value, name: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise BadInput(f"{name}: expected bytes, found {type(value).__name__}")


def _put_columns(ids, embeddings, metadata, payloads, dimension: int):
    """A put's columns as the C API takes them, every shape checked: ids, [n, d] float32
    embeddings, and metadata (dicts as JSON) and payloads as offsets into bytes, or None."""
    ids = _as_array(ids, np.uint64, "ids", ndim=1)
    emb = _as_array(embeddings, np.float32, "embeddings", ndim=2)
    if emb.shape != (len(ids), dimension):
        raise BadInput(f"embeddings: expected shape ({len(ids)}, {dimension}), found {emb.shape}")
    meta_off = meta_bytes = pay_off = pay_bytes = None
    if metadata is not None:
        if len(metadata) != len(ids):
            raise BadInput(f"metadata: {len(metadata)} rows for {len(ids)} ids")
        meta_off, meta_bytes = _pack([json.dumps(m).encode() if isinstance(m, dict) else _bytes(m, "metadata") for m in metadata])
    if payloads is not None:
        if len(payloads) != len(ids):
            raise BadInput(f"payloads: {len(payloads)} rows for {len(ids)} ids")
        pay_off, pay_bytes = _pack([_bytes(p, "payloads") for p in payloads])
    return ids, emb, meta_off, meta_bytes, pay_off, pay_bytes


def _pack(rows: list[bytes]):
    offsets = np.zeros(len(rows) + 1, np.uint64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    blob = np.frombuffer(b"".join(rows) or b"\0", np.uint8)
    return offsets, np.ascontiguousarray(blob)


def _slices(pointer, size: int, offsets: np.ndarray) -> list[bytes]:
    data = ctypes.string_at(pointer, size) if size else b""
    o = offsets.tolist()
    return [data[o[i]:o[i + 1]] for i in range(len(o) - 1)]


@dataclass
class Views:
    """Views read by Transaction.views: sample i (of `ids`) has the views at rows
    offsets[i]:offsets[i + 1] of every per-view column, in ascending view number; versions[i] is
    the label-set version of its row (0: none). Per view: view number, crop [x0, y0, x1, y1],
    flip, epoch, seed, hard label (-1: none), the soft label (dense [views, C], or compact
    top_classes/top_probabilities [views, K] and leftover), and extra parameters (dict or None)."""
    ids: np.ndarray
    offsets: np.ndarray
    versions: np.ndarray
    view: np.ndarray
    crop: np.ndarray
    flip: np.ndarray
    epoch: np.ndarray
    seed: np.ndarray
    hard: np.ndarray
    dense: np.ndarray | None
    top_classes: np.ndarray | None
    top_probabilities: np.ndarray | None
    leftover: np.ndarray | None
    extras: list

    def __len__(self) -> int:
        return len(self.view)

    def of(self, i: int) -> slice:
        """The rows of sample i's views."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    @staticmethod
    def _copy(ids: np.ndarray, v) -> "Views":
        n, m = v.samples, v.views

        def take(pointer, shape, dtype):
            count = int(np.prod(shape))
            if not pointer or count == 0:
                return np.zeros(shape, dtype)
            return np.ctypeslib.as_array(pointer, shape=(count,)).copy().reshape(shape).astype(dtype, copy=False)

        ends = take(v.extra_offsets, (m + 1,), np.uint64)
        raw = ctypes.string_at(v.extra_bytes, int(ends[-1])) if m and ends[-1] else b""
        extras = [json.loads(raw[int(ends[i]):int(ends[i + 1])]) if ends[i + 1] > ends[i] else None for i in range(m)]
        return Views(
            ids=ids.copy(), offsets=take(v.offsets, (n + 1,), np.uint64).astype(np.int64), versions=take(v.versions, (n,), np.int32),
            view=take(v.view, (m,), np.uint32), crop=take(v.crop, (m, 4), np.float32), flip=take(v.flip, (m,), np.uint8).astype(bool),
            epoch=take(v.epoch, (m,), np.uint16), seed=take(v.seed, (m,), np.uint32), hard=take(v.hard, (m,), np.int32),
            dense=take(v.dense, (m, v.classes), np.float32) if v.dense else None,
            top_classes=take(v.top_classes, (m, v.k), np.int32) if v.top_classes else None,
            top_probabilities=take(v.top_probabilities, (m, v.k), np.float32) if v.top_probabilities else None,
            leftover=take(v.leftover, (m,), np.float32) if v.leftover else None, extras=extras)


def _view_params(views, n: int):
    """ldb_view_params from views given as a list of views-file objects ({"view", "crop", "flip",
    "epoch", "seed", other members kept as extras}) or as columns {"view", "crop", "flip",
    "epoch", "seed", "extra"}; returns the struct and the arrays it points into."""
    if isinstance(views, dict):
        columns = dict(views)
        extras = columns.pop("extra", None)
    else:
        views = list(views)
        named = ("view", "crop", "flip", "epoch", "seed")
        for i, v in enumerate(views):
            if not isinstance(v, dict) or "view" not in v or "crop" not in v:
                raise BadInput(f"views[{i}]: expected an object with at least 'view' and 'crop'")
        columns = {"view": [v["view"] for v in views], "crop": [v["crop"] for v in views],
                   "flip": [v.get("flip", False) for v in views], "epoch": [v.get("epoch", 0) for v in views],
                   "seed": [v.get("seed", 0) for v in views]}
        extras = [{k: x for k, x in v.items() if k not in named} or None for v in views]
    unknown = set(columns) - {"view", "crop", "flip", "epoch", "seed"}
    if unknown:
        raise BadInput(f"views: unknown columns {sorted(unknown)}")
    view = np.asarray(columns["view"])
    if view.ndim != 1 or len(view) != n:
        raise BadInput(f"views: {len(view) if view.ndim == 1 else view.shape} view numbers for {n} label rows")
    if view.size and (view.dtype.kind not in "iu" or view.min() < 0 or view.max() > 2 ** 32 - 1):
        raise BadInput("views: view numbers must be integers in 0 … 2**32 - 1")
    keep = {"view": np.ascontiguousarray(view, np.uint32),
            "crop": _as_array(np.asarray(columns["crop"], np.float32).reshape(-1, 4) if n else np.zeros((0, 4), np.float32), np.float32, "views crop", ndim=2)}
    if len(keep["crop"]) != n:
        raise BadInput(f"views: {len(keep['crop'])} crops for {n} label rows")
    for name, dtype, top in (("flip", np.uint8, 1), ("epoch", np.uint16, 2 ** 16 - 1), ("seed", np.uint32, 2 ** 32 - 1)):
        if columns.get(name) is None:
            continue
        values = np.asarray(columns[name])
        if values.shape != (n,) or (values.size and (values.dtype.kind not in "iub" or values.min() < 0 or values.max() > top)):
            raise BadInput(f"views: {name} must be {n} integers in 0 … {top}")
        keep[name] = np.ascontiguousarray(values, dtype)
    params = _native.ViewParams()
    params.view, params.crop = _ptr(keep["view"], ctypes.c_uint32), _ptr(keep["crop"], c_float)
    params.flip = _ptr(keep.get("flip"), c_uint8)
    params.epoch = _ptr(keep.get("epoch"), ctypes.c_uint16)
    params.seed = _ptr(keep.get("seed"), ctypes.c_uint32)
    if extras is not None and any(e is not None for e in extras):
        if len(extras) != n:
            raise BadInput(f"views: {len(extras)} extras for {n} label rows")
        blobs = [b"" if e is None else json.dumps(e, sort_keys=True, separators=(",", ":")).encode() for e in extras]
        keep["extra_offsets"] = np.zeros(n + 1, np.uint64)
        keep["extra_offsets"][1:] = np.cumsum([len(b) for b in blobs])
        keep["extra_bytes"] = np.frombuffer(b"".join(blobs) or b"\0", np.uint8).copy()
        params.extra_offsets = _ptr(keep["extra_offsets"], c_uint64)
        params.extra_bytes = _ptr(keep["extra_bytes"], c_uint8)
    return params, keep


class QueryResult:
    """The ids a query matched, in its order; rows are read in batches on demand."""

    def __init__(self, tx: Transaction, ids: np.ndarray, labels, regen):
        self.tx, self.ids = tx, ids
        self.labels = [labels] if isinstance(labels, str) else list(labels or [])
        self.regen = [regen] if isinstance(regen, str) else list(regen or [])

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, size: int = 4096, soft: str = "dense", **read) -> Iterator[Batch]:
        """The rows in batches of `size` (get_many's options apply)."""
        if not isinstance(size, int) or size < 1:
            raise BadInput(f"size must be a positive integer, not {size!r}")
        for start in range(0, len(self.ids), size):
            yield self.tx.get_many(self.ids[start:start + size], labels=self.labels, regen=self.regen, soft=soft, **read)

    def to_arrow_reader(self, batch_size: int = 4096):
        """A pyarrow.RecordBatchReader over the rows: memory stays at one batch."""
        from . import _arrow
        return _arrow.query_reader(self, batch_size)

    def to_arrow(self):
        """All rows as a pyarrow.Table."""
        return self.to_arrow_reader().read_all()

    def to_pandas(self):
        return self.to_arrow().to_pandas()


class LabelSetRows(QueryResult):
    """The samples labelled in one label set version; rows without a label there are left out."""

    def __init__(self, tx: Transaction, name: str, soft: str, topk):
        super().__init__(tx, tx.ids(), [name], [])
        self.name = name

    def to_arrow_reader(self, batch_size: int = 4096):
        from . import _arrow
        import pyarrow as pa
        reader = _arrow.query_reader(self, batch_size)

        def labelled():
            for rb in reader:
                keep = rb.column(self.name).is_valid()
                yield rb.filter(keep)

        return pa.RecordBatchReader.from_batches(reader.schema, labelled())


@dataclass
class KNNResult:
    """Neighbour ids and similarities [queries, k] (id 0 and -inf past the last hit), and with
    labels, one kNN label document per query."""
    ids: np.ndarray
    similarities: np.ndarray
    labels: list | None


class Store:
    """An open store. Open it once per process; transactions come from `read()` and `write()`."""

    def __init__(self, handle: c_void_p, path: str):
        self._handle = handle
        self._pid = os.getpid()
        self._transactions = 0
        self.path = path
        info = self.info()
        self.dimension: int = info["dim"]
        self.classes: list[str] = info["classes"]
        self.read_only: bool = info["read_only"]

    def _live(self):
        if not self._handle.value:
            raise BadInput("the store is closed")
        return self._handle

    def info(self) -> dict:
        """Counts (as the public sees them), the schema, sizes and the format version."""
        out = c_void_p()
        check(lib.ldb_info(self._live(), ctypes.byref(out)))
        return json.loads(take_string(out))

    def read(self, clearance: str = "public") -> Transaction:
        """A read transaction (a snapshot) under `clearance`: "public", "all" or "secrecy=a,b;integrity=c"."""
        return Transaction(self, clearance, write=False)

    def write(self, clearance: str = "all") -> WriteTransaction:
        """The write transaction; one at a time per store across threads and processes."""
        return WriteTransaction(self, clearance, write=True)

    def fit_projector(self, name: str, source: str, rank: int | list[int] | None = None, **options) -> dict:
        """Fits a projector version from label set `source` (see `labeldb projector fit`); rank 16
        unless given.

        With `budget=BYTES` (and `max_kl`), `rank` may be a list of candidates (or None: powers
        of two from 8); the one whose parameters plus corrections take the fewest bytes is
        fitted, and the search is in the result's `rank_search`."""
        out = c_void_p()
        check(lib.ldb_fit_projector(self._live(), _c(name, "the projector name"), _options(**{"from": source, "rank": rank}, **options),
                                    ctypes.byref(out)))
        return json.loads(take_string(out))

    def backup(self, destination: str | os.PathLike, clearance: str = "all") -> None:
        """Copies the store, compacted, into `destination` (as `labeldb backup`)."""
        check(lib.ldb_backup(self._live(), _c(os.fspath(destination), "the destination"), _c(clearance, "clearance")))

    def verify(self, clearance: str = "all", in_process: bool = False) -> dict:
        """Checks every record. By default in a child process, so a store whose page structure is
        damaged (which can crash LMDB) yields a report, not a crashed interpreter."""
        if in_process:
            out = c_void_p()
            check(lib.ldb_verify(self._live(), _c(clearance, "clearance"), ctypes.byref(out)))
            return json.loads(take_string(out))
        from . import _verify
        return _verify.in_child(self.path, clearance)

    def close(self) -> None:
        """Closes the store; BadInput while transactions are open."""
        if self._handle.value and os.getpid() == self._pid:
            check(lib.ldb_close(self._handle))
        self._handle = c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            if getattr(self, "_handle", None) is not None and self._handle.value and self._transactions == 0 \
                    and os.getpid() == self._pid:
                lib.ldb_close(self._handle)
        except Exception:
            pass


def open(path: str | os.PathLike, write: bool = False) -> Store:
    """Opens the store in directory `path`, read-only unless `write`.

    Example::

        db = labeldb.open("corpus")
        with db.read(clearance="all") as tx:
            batch = tx.get_many(ids, labels=["teacher"])

    An LMDB environment must not cross fork(): open the store in each process (labeldb.torch
    datasets open lazily in each DataLoader worker).
    """
    if os.path.isfile(os.path.join(os.fspath(path), "corpus.json")):
        raise BadInput(f"{os.fspath(path)} is a sharded corpus: open it with labeldb.open_corpus, and its shards with Corpus.open_shard")
    handle = c_void_p()
    check(lib.ldb_open(_c(os.fspath(path), "the path"), 1 if write else 0, ctypes.byref(handle)))
    return Store(handle, os.fspath(path))


def create(path: str | os.PathLike, dimension: int, classes: Sequence[str] | int, element: str = "f32") -> Store:
    """Creates a store (the directory must be missing or empty) and opens it for writing."""
    handle = c_void_p()
    spec = {"dimension": int(dimension), "classes": classes if isinstance(classes, int) else list(classes), "element": element}
    check(lib.ldb_create(_c(os.fspath(path), "the path"), json.dumps(spec).encode(), ctypes.byref(handle)))
    return Store(handle, os.fspath(path))
