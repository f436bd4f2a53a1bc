"""Sharded corpora (format-spec/corpus.md) from Python: the manifest, routing, a shard opened on
its own, and label imports routed across the shards. The engine checks the manifest and computes
every route; nothing here parses the format."""
from __future__ import annotations

import ctypes
import json
import os
import threading
from collections.abc import Callable
from ctypes import POINTER, c_float, c_int32, c_int64, c_size_t, c_uint8, c_uint64, c_void_p

import numpy as np

from ._errors import BadInput
from ._errors import Error as LabelDBError
from ._native import FIT_EXECUTOR, check, lib, take_string
from ._store import KNNResult, Store, _as_array, _c, _knn, _LabelArrays, _options, _ptr, _put_columns, _tags


class Corpus:
    """A sharded corpus: N stores (shards) and the manifest naming them. A reader opens the shards
    it reads, each pinned to the label-set versions the manifest has committed; every id lives
    in exactly one shard, the one `route` names.

    Example::

        corpus = labeldb.open_corpus("corpus")
        for i in range(len(corpus)):
            with corpus.open_shard(i) as shard, shard.read("all") as tx:
                batch = tx.get_many(tx.ids(), labels=["teacher"])
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        out = c_void_p()
        check(lib.ldb_corpus_manifest(_c(self.path, "the path"), ctypes.byref(out)))
        self.manifest: dict = json.loads(take_string(out))
        self.shards: list[str] = self.manifest["shards"]
        self.classes: list[str] = self.manifest["schema"]["classes"]
        # What a reader of this manifest sees: its committed label-set and projector versions.
        self.pin: dict = {"label_sets": self.manifest["label_sets"], "projectors": self.manifest["projectors"]}
        self.dimension: int = self.manifest["schema"]["dimension"]

    def __len__(self) -> int:
        return len(self.shards)

    def route(self, ids) -> np.ndarray:
        """The shard index of each id (int32; -1 where a range rule gives it to no shard)."""
        ids = _as_array(ids, np.uint64, "ids", ndim=1)
        out = np.empty(len(ids), np.int32)
        check(lib.ldb_corpus_route(_c(self.path, "the path"), _ptr(ids, c_uint64), len(ids), _ptr(out, c_int32)))
        return out

    def open_shard(self, shard: int, pin: dict | None = None) -> Store:
        """Shard `shard` opened read-only, reading the label-set and projector versions this
        Corpus's manifest committed (or `pin`, `self.pin` of a Corpus opened earlier, e.g. on a
        driver before its workers open their shards; a manifest's label_sets alone pin only
        those), so every shard opened through one Corpus reads one committed state. Open it in
        the process that reads it: an LMDB environment must not cross fork()."""
        if not isinstance(shard, (int, np.integer)) or not 0 <= int(shard) < len(self.shards):
            raise BadInput(f"shard must be 0 … {len(self.shards) - 1}, not {shard!r}")
        handle = c_void_p()
        pinned = json.dumps(self.pin if pin is None else pin).encode()
        check(lib.ldb_open_shard(_c(self.path, "the path"), int(shard), pinned, ctypes.byref(handle)))
        return Store(handle, os.path.join(self.path, self.shards[int(shard)]))

    def knn(self, queries, k: int = 10, labels: str | None = None, flow: str = "permissive", lam: float = 0.1,
            metric: str = "cosine", where: str | None = None, clearance: str = "public") -> KNNResult:
        """Exact k nearest neighbours over every shard; with `labels`, the kNN label of each query
        (as `labeldb knn CORPUS`): each shard's candidates merged exactly, equal to one store's
        answer over the same samples (corpus.md §5)."""
        return _knn(lib.ldb_corpus_knn, _c(self.path, "the path"), self.dimension, queries, k,
                    dict(labels=labels, flow=flow, **{"lambda": lam}, metric=metric, where=where, clearance=clearance))

    def consensus(self, name: str, sources, method: str = "mean", weights: dict | None = None, codec: str | None = None,
                  agent: str = "python", tolerance: float = 1e-6, max_iterations: int = 500, reference: str | None = None,
                  reference_tag: str | None = None, reference_set: str | None = None, clearance: str = "all") -> dict:
        """WriteTransaction.consensus over every shard (as `labeldb labels consensus CORPUS`): the
        sources' rows merged in id order, the labels one store would get, written as one routed
        label import by the corpus's one writer. Returns the CLI's JSON, counts summed."""
        out = c_void_p()
        options = _options(sources=list(sources), method=method, weights=weights, codec=codec, agent=agent, tolerance=tolerance,
                           max_iterations=max_iterations, reference=reference, reference_tag=reference_tag,
                           reference_set=reference_set, clearance=clearance)
        check(lib.ldb_corpus_consensus(_c(self.path, "the path"), _c(name, "the label set name"), options, ctypes.byref(out)))
        return json.loads(take_string(out))

    def provenance(self, clearance: str = "public") -> dict:
        """Every shard's provenance log as W3C PROV-JSON, one bundle per shard (as `labeldb
        provenance export CORPUS`)."""
        out = c_void_p()
        check(lib.ldb_corpus_provenance(_c(self.path, "the path"), _options(clearance=clearance), ctypes.byref(out)))
        return json.loads(take_string(out))

    def writer(self) -> "CorpusWriter":
        """The corpus's one writer, held open (corpus.lock) for write sessions: see CorpusWriter."""
        return CorpusWriter(self.path)

    def put(self, ids, embeddings, metadata=None, payloads=None, secrecy=None, integrity=None, privilege=None,
            mode: str = "replace", agent: str = "python", clearance: str = "all", provenance: dict | None = None,
            session: dict | str | None = None, shard: int | None = None, check_only: bool = False) -> dict:
        """Stores samples, each in the shard of its id (as WriteTransaction.put): every shard's part
        is checked before any is written, then committed shard by shard, then the manifest.
        Samples carry no versions: if the writer dies between shards, the parts already committed
        are visible, and the same put again (mode "replace") completes it. Returns
        {"inserted", "replaced", "shards"}.

        With `session` (from CorpusWriter.begin) and `shard`, writes only that shard's part of the
        session's sample import (every id must route to it), from any process; check_only=True runs
        every check and writes nothing. Returns {"inserted", "replaced", "shard"}."""
        ids, emb, meta_off, meta_bytes, pay_off, pay_bytes = _put_columns(ids, embeddings, metadata, payloads, self.dimension)
        options = _options(mode=mode, secrecy=_tags(secrecy), integrity=_tags(integrity), privilege=_tags(privilege), agent=agent,
                           clearance=clearance, provenance={str(k): str(v) for k, v in provenance.items()} if provenance else None,
                           **_session_options(session, shard, check_only))
        out = c_void_p()
        check(lib.ldb_corpus_put(_c(self.path, "the path"), _ptr(ids, c_uint64), len(ids), _ptr(emb, c_float), _ptr(meta_off, c_uint64),
                                 _ptr(meta_bytes, c_uint8), _ptr(pay_off, c_uint64), _ptr(pay_bytes, c_uint8), options, ctypes.byref(out)))
        return json.loads(take_string(out))

    def import_labels(self, name: str, ids, soft=None, hard=None, topk_classes=None, topk_probs=None, leftover=None,
                      codec: str | None = None, agent: str = "python", secrecy=None, integrity=None, privilege=None,
                      normalize: bool = False, logits: bool = False, temperature: float | None = None, clearance: str = "all",
                      provenance: dict | None = None, session: dict | str | None = None, shard: int | None = None,
                      check_only: bool = False) -> dict:
        """Imports one new version of label set `name`: each row into the shard of its id, one
        version number in every shard, visible to readers once the manifest records it (a crash
        between shards leaves the previous version in force). Soft ([n, C]), hard ([n]) or
        compact (topk_classes, topk_probs [n, K], leftover [n]) labels, as
        WriteTransaction.import_labels (logits=True: soft holds logits, turned into probabilities
        by softmax(z / temperature) in the engine); `provenance` (text parameters, e.g. the job that produced
        the labels) goes into each shard's provenance record. Returns the version, counts summed
        over the shards.

        With `session` (from CorpusWriter.begin(name)) and `shard`, writes only that shard's part
        of the session's import as its version (every id must route to it), from any process;
        check_only=True runs every check and writes nothing. Returns that shard's version."""
        ids = _as_array(ids, np.uint64, "ids", ndim=1)
        rows = _LabelArrays(len(ids), len(self.classes), soft, hard, None, topk_classes, topk_probs, leftover)
        options = _options(codec=codec, agent=agent, secrecy=_tags(secrecy), integrity=_tags(integrity), privilege=_tags(privilege),
                           normalize=normalize, logits=logits or None, temperature=temperature, clearance=clearance,
                           provenance={str(k): str(v) for k, v in provenance.items()} if provenance else None,
                           **_session_options(session, shard, check_only))
        out = c_void_p()
        check(lib.ldb_corpus_import_labels(
            _c(self.path, "the path"), _c(name, "the label set name"), _ptr(ids, c_uint64), len(ids), _ptr(rows.soft, c_float),
            _ptr(rows.hard, c_int64), rows.k, _ptr(rows.classes, c_int32), _ptr(rows.probs, c_float), _ptr(rows.rest, c_float),
            options, ctypes.byref(out)))
        return json.loads(take_string(out))

    def fit_projector(self, name: str, source: str, rank: int | list[int] | None = None, *,
                      parts: Callable[[int, bytes], bytes] | None = None, **options) -> dict:
        """Fits the next version of projector `name` across the shards, as Store.fit_projector
        fits one store (same options; rank 16 unless given): the rows of every shard in id order,
        XᵀX, XᵀY and the evaluations summed over the shards, the parameters written to every
        shard with each sample's correction in its own shard, visible once the manifest records
        it (corpus.md K-11). Returns the version with the whole fit's figures.

        With `parts`, every pass over a shard's rows is a request `parts(shard, request)` must
        answer with `FitPart(path, shard, clearance).serve(request)` run where the shard is
        (labeldb.ray.fit_projector uses Ray actors; corpus.md K-17); the figures are the same up to BLAS's rounding.
        It may be called from several threads at once."""
        out = c_void_p()
        spec = _options(**{"from": source, "rank": rank}, **options)
        if parts is None:
            check(lib.ldb_corpus_fit_projector(_c(self.path, "the path"), _c(name, "the projector name"), spec, ctypes.byref(out)))
            return json.loads(take_string(out))
        failures: list[BaseException] = []
        # Each thread's last reply, kept until its next call (the library copies it first). Not a
        # threading.local: the library's threads are not Python's, and ctypes drops their Python
        # thread state (and its locals) when the callback returns.
        held: dict[int, ctypes.Array] = {}
        lock = threading.Lock()

        def execute(_context, shard, request, length, reply, reply_length):
            try:
                answer = bytes(parts(int(shard), ctypes.string_at(request, length)))
                buffer = (c_uint8 * max(len(answer), 1)).from_buffer_copy(answer or b"\0")
                with lock:
                    held[threading.get_ident()] = buffer
                reply[0] = ctypes.cast(buffer, POINTER(c_uint8))
                reply_length[0] = len(answer)
                return 0
            except BaseException as error:  # reported after the call, which fails
                failures.append(error)
                return 1

        callback = FIT_EXECUTOR(execute)
        try:
            check(lib.ldb_corpus_fit_projector_parts(_c(self.path, "the path"), _c(name, "the projector name"), spec, callback, None,
                                                     ctypes.byref(out)))
        except LabelDBError as error:
            if failures:
                raise failures[0] from error
            raise
        return json.loads(take_string(out))


class FitPart:
    """One shard's side of a projector fit run elsewhere (corpus.md K-17): `serve` answers the
    requests a `Corpus.fit_projector(..., parts=...)` sends for this shard, reading its rows
    under `clearance`, which must be the fit's (a request under another is refused, as is one
    for another state of the shard). It opens that shard only. It is a read capability at its
    clearance: a request may load any of the fitted rows it sees. Close it after."""

    def __init__(self, path: str | os.PathLike, shard: int, clearance: str = "public"):
        handle = c_void_p()
        check(lib.ldb_fit_part_open(_c(os.fspath(path), "the path"), int(shard), _options(clearance=clearance), ctypes.byref(handle)))
        self._handle = handle

    def serve(self, request: bytes) -> bytes:
        """The reply to one request."""
        if self._handle is None:
            raise BadInput("this FitPart is closed")
        reply, length = POINTER(c_uint8)(), c_size_t()
        check(lib.ldb_fit_part_serve(self._handle, bytes(request), len(request), ctypes.byref(reply), ctypes.byref(length)))
        try:
            return ctypes.string_at(reply, length.value)
        finally:
            lib.ldb_free(reply)

    def close(self) -> None:
        """Closes the shard. Idempotent."""
        if self._handle is not None:
            lib.ldb_fit_part_close(self._handle)
            self._handle = None

    def __enter__(self) -> "FitPart":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _session_options(session, shard, check_only: bool) -> dict:
    """The options of one shard's part of a write session (corpus.md K-13), or none."""
    if session is None:
        if shard is not None or check_only:
            raise BadInput("shard and check_only go with a session (CorpusWriter.begin)")
        return {}
    name = session["session"] if isinstance(session, dict) else session
    if not isinstance(shard, (int, np.integer)) or shard < 0:
        raise BadInput(f"a session write names its shard (an index ≥ 0), not {shard!r}")
    return {"session": str(name), "shard": int(shard), "check": bool(check_only)}


class CorpusWriter:
    """The corpus's one writer held open (it holds corpus.lock until closed), for write sessions
    (corpus.md K-13): other processes write each shard's part of one write at once, and this
    writer commits it. begin() opens a session for a sample import (no name) or one new version
    of label set `name`; each shard's part goes in with Corpus.put / Corpus.import_labels(...,
    session=, shard=), first with check_only=True for every shard (bad input then writes nothing
    anywhere), then for real; commit() records the write in the next manifest. A label version
    shows only once committed; abandon() or close() without a commit leave it invisible (the
    set's next import replaces it). Sample parts, which carry no versions, show once their shard
    commits (corpus.md K-10). Wait for every shard's write to end before abandoning.

    Example::

        with corpus.writer() as w:
            session = w.begin("teacher")
            for check_only in (True, False):
                for shard, (ids, probs) in enumerate(parts):   # one task per shard, anywhere
                    corpus.import_labels("teacher", ids, soft=probs, session=session, shard=shard, check_only=check_only)
            w.commit()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._handle = c_void_p()
        check(lib.ldb_corpus_writer_open(_c(self.path, "the path"), ctypes.byref(self._handle)))

    def __enter__(self) -> "CorpusWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _live(self) -> c_void_p:
        if not self._handle.value:
            raise BadInput("the corpus writer is closed")
        return self._handle

    def begin(self, name: str | None = None) -> dict:
        """Opens a session: {"session", "generation"} and, for label set `name`, its "label_set"
        and the "version" the import takes."""
        out = c_void_p()
        check(lib.ldb_corpus_writer_begin(self._live(), None if name is None else _c(name, "the label set name"), ctypes.byref(out)))
        return json.loads(take_string(out))

    def commit(self) -> dict:
        """Commits the open session in the next manifest generation (a label import needs every
        shard's part written). Returns {"generation", "shards"} and, for labels, the version
        across the shards (counts summed)."""
        out = c_void_p()
        check(lib.ldb_corpus_writer_commit(self._live(), ctypes.byref(out)))
        return json.loads(take_string(out))

    def abandon(self) -> None:
        """Ends the open session without committing it."""
        check(lib.ldb_corpus_writer_abandon(self._live()))

    def close(self) -> None:
        """Abandons any open session and releases the lock."""
        if self._handle.value:
            handle, self._handle = self._handle, c_void_p()
            check(lib.ldb_corpus_writer_close(handle))

    def __del__(self):
        if getattr(self, "_handle", None) is not None and self._handle.value:
            lib.ldb_corpus_writer_close(self._handle)


def create_corpus(path: str | os.PathLike, dimension: int, classes, shards: int, element: str = "f32") -> Corpus:
    """Creates an empty corpus of `shards` stores routed by hash (the directory must be missing or
    empty); samples come in with Corpus.put, labels with Corpus.import_labels."""
    if not isinstance(shards, (int, np.integer)) or shards < 1:
        raise BadInput(f"shards must be a positive integer, not {shards!r}")
    spec = {"dimension": int(dimension), "classes": [str(c) for c in classes], "element": element}
    check(lib.ldb_create_corpus(_c(os.fspath(path), "the path"), json.dumps(spec).encode(), int(shards)))
    return Corpus(path)


def open_corpus(path: str | os.PathLike) -> Corpus:
    """The sharded corpus in directory `path` (its manifest checked)."""
    return Corpus(path)


def is_corpus(path: str | os.PathLike) -> bool:
    """True when `path` is a directory holding a corpus manifest."""
    return os.path.isfile(os.path.join(os.fspath(path), "corpus.json"))
