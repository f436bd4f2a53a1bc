"""PyTorch datasets over a store or a sharded corpus (labeldb shard): a corpus's shards are
opened lazily, each pinned to the manifest's committed label-set and projector versions.

Both open the store lazily, in the process that reads (an LMDB environment must not cross
fork()), so they work with DataLoader(num_workers > 0) under "fork" and "spawn" alike.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import numpy as np

try:
    import torch
    from torch.utils.data import Dataset as _Dataset, IterableDataset as _IterableDataset, get_worker_info
except ImportError as error:  # pragma: no cover
    raise ImportError("labeldb.torch needs torch (pip install torch)") from error

from . import _corpus, _store


class _Lazy:
    """A store — or each shard of a sharded corpus — opened on first use in the current process,
    again after a fork."""

    def __init__(self, path: str, pin: dict | None = None):
        self.path, self._stores, self._pid = path, {}, None
        self.corpus = _corpus.Corpus(path) if _corpus.is_corpus(path) else None
        # The label-set versions of the manifest read at construction: shards opened later, in
        # workers, read the same versions even if an import commits in between.
        self.pin = pin if pin is not None else (self.corpus.pin if self.corpus else None)

    def __getstate__(self):
        return {"path": self.path, "pin": self.pin}  # a handle never crosses a process boundary

    def __setstate__(self, state):
        self.__init__(state["path"], state.get("pin"))

    def get(self, shard: int = 0) -> _store.Store:
        if self._pid != os.getpid():
            self._stores, self._pid = {}, os.getpid()
        if shard not in self._stores:
            self._stores[shard] = self.corpus.open_shard(shard, pin=self.pin) if self.corpus else _store.open(self.path)
        return self._stores[shard]

    @property
    def shard_count(self) -> int:
        return len(self.corpus) if self.corpus else 1

    def shard_ids(self, clearance: str, where: str | None = None) -> list[np.ndarray]:
        """Each shard's ids (matching `where`), ascending, read once at construction."""
        out = []
        for shard in range(self.shard_count):
            store = self.corpus.open_shard(shard, pin=self.pin) if self.corpus else _store.open(self.path)
            try:
                with store.read(clearance) as tx:
                    out.append(tx.query(where).ids if where else tx.ids())
            finally:
                store.close()
        return out


def _read_rows(store, ids, dataset) -> list[dict]:
    """The rows of `ids` from one store (or shard), with the dataset's labels, projectors and views."""
    with store.read(dataset.clearance) as tx:
        batch = tx.get_many(ids, labels=dataset.labels, regen=dataset.regen, soft=dataset.soft, topk=dataset.topk,
                            metadata=False, payloads=False, taints=False)
        replayed = tx.views(ids, dataset.views, epoch=dataset.epoch, soft=dataset.soft, topk=dataset.topk) if dataset.views else None
    rows = _rows(batch, dataset.labels, dataset.regen)
    if replayed is not None:
        _add_views(rows, replayed, dataset.views)
    return rows


def _rows(batch, labels, regen) -> list[dict]:
    """Per-sample dicts of numpy arrays, so the default collate works. Ids are 0-d uint64 arrays:
    ids at or above 2**63 do not fit torch's int64, and collate makes them a uint64 tensor."""
    out = []
    for i in range(len(batch.ids)):
        row = {"id": batch.ids[i:i + 1].reshape(()), "embedding": batch.embeddings[i]}
        for name, cols in batch.labels.items():
            row[f"{name}.hard"] = int(cols.hard[i])
            if cols.dense is not None:
                row[f"{name}.soft"] = cols.dense[i]
            if cols.top_classes is not None:
                row[f"{name}.top_classes"] = cols.top_classes[i]
                row[f"{name}.top_probabilities"] = cols.top_probabilities[i]
        for name, cols in batch.regen.items():
            row[f"{name}.regen"] = cols.probabilities[i]
        out.append(row)
    return out


def _add_views(rows: list[dict], views, name: str) -> None:
    """Adds each row's replayed view (Transaction.views with an epoch: at most one per sample):
    NAME.view (-1 when the sample has no view label), NAME.crop [x0, y0, x1, y1], NAME.flip,
    NAME.epoch, NAME.seed, NAME.hard and the soft label (NAME.soft, or NAME.top_classes and
    NAME.top_probabilities), so the training loop applies the crop the teacher saw."""
    c = views.dense.shape[1] if views.dense is not None else 0
    k = views.top_classes.shape[1] if views.top_classes is not None else 0
    for i, row in enumerate(rows):
        j = int(views.offsets[i])
        has = views.offsets[i + 1] > j
        row[f"{name}.view"] = int(views.view[j]) if has else -1
        row[f"{name}.crop"] = views.crop[j] if has else np.zeros(4, np.float32)
        row[f"{name}.flip"] = bool(views.flip[j]) if has else False
        row[f"{name}.epoch"] = int(views.epoch[j]) if has else 0
        row[f"{name}.seed"] = int(views.seed[j]) if has else 0
        row[f"{name}.hard"] = int(views.hard[j]) if has else -1
        if views.dense is not None:
            row[f"{name}.soft"] = views.dense[j] if has else np.zeros(c, np.float32)
        if views.top_classes is not None:
            row[f"{name}.top_classes"] = views.top_classes[j] if has else np.full(k, -1, np.int32)
            row[f"{name}.top_probabilities"] = views.top_probabilities[j] if has else np.zeros(k, np.float32)


def collate(rows: list[dict]) -> dict:
    """Stacks per-sample dicts into tensors: one np.stack per column, then a zero-copy from_numpy."""
    first = rows[0]
    result = {}
    for key, value in first.items():
        column = [r[key] for r in rows]
        if isinstance(value, np.ndarray):
            result[key] = torch.from_numpy(np.stack(column))
        elif isinstance(value, (int, float)):
            result[key] = torch.tensor(column)
        else:
            result[key] = column
    return result


class Dataset(_Dataset):
    """Map-style: index i is the i-th id in ascending order as of construction.

    `__getitems__` reads a whole batch in one engine call. Options: labels (label set names),
    regen (projector names), soft ("dense" or "compact"), topk, clearance, transform (applied to
    each row dict), views (a per-view label set: each row gets the view the current epoch
    replays — index epoch mod n of the sample's n views — with its crop, flip, seed and label;
    call set_epoch(e) before each epoch; with persistent_workers the workers keep the epoch they
    were started with, so create the DataLoader per epoch).
    """

    def __init__(self, path: str, labels: Sequence[str] = (), regen: Sequence[str] = (), clearance: str = "public",
                 soft: str = "dense", topk: int | None = None, transform: Callable | None = None, views: str | None = None):
        self._lazy = _Lazy(os.fspath(path))
        self.labels, self.regen, self.clearance = list(labels), list(regen), clearance
        self.soft, self.topk, self.transform = soft, topk, transform
        self.views, self.epoch = views, 0
        per_shard = self._lazy.shard_ids(clearance)
        # A corpus's ids in one ascending order, each with its shard.
        self.ids = np.concatenate(per_shard) if per_shard else np.zeros(0, np.uint64)
        self.shards = np.concatenate([np.full(len(x), i, np.int32) for i, x in enumerate(per_shard)]) if per_shard else np.zeros(0, np.int32)
        order = np.argsort(self.ids, kind="stable")
        self.ids, self.shards = self.ids[order], self.shards[order]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        indices = np.asarray(indices, dtype=np.int64)
        ids, shards = self.ids[indices], self.shards[indices]
        rows: list = [None] * len(ids)
        for shard in np.unique(shards):
            at = np.nonzero(shards == shard)[0]
            for position, row in zip(at, _read_rows(self._lazy.get(int(shard)), ids[at], self)):
                rows[position] = row
        return [self.transform(r) for r in rows] if self.transform else rows

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose views rows replay (views option)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]


class IterableDataset(_IterableDataset):
    """Streams the rows of a query, split across DataLoader workers and distributed ranks without
    overlap, shuffled per (seed, epoch): the ids are cut into shards, shard order is shuffled, and
    rows pass through a bounded shuffle buffer.

    Every rank yields the same number of rows, as DistributedSampler does: with drop_last the
    total is cut to a multiple of world size, otherwise the last ranks repeat rows from the start.
    Over a sharded corpus the work is split by shard: runs of up to batch_size ids within one
    shard are shuffled per (seed, epoch) and laid end to end; each rank takes a contiguous slice
    (evened out as above) and deals its runs to its workers, so each worker opens only the shards
    it reads.
    Call set_epoch(e) before each epoch. With views (a per-view label set), each row carries the
    view epoch e replays, as in Dataset.
    """

    def __init__(self, path: str, where: str | None = None, labels: Sequence[str] = (), regen: Sequence[str] = (),
                 clearance: str = "public", soft: str = "dense", topk: int | None = None, batch_size: int = 256,
                 shuffle: bool = True, seed: int = 0, buffer_size: int = 4096, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None, transform: Callable | None = None,
                 views: str | None = None):
        self._lazy = _Lazy(os.fspath(path))
        self.views = views
        self.where, self.labels, self.regen, self.clearance = where, list(labels), list(regen), clearance
        self.soft, self.topk, self.batch_size = soft, topk, batch_size
        self.shuffle, self.seed, self.buffer_size, self.drop_last = shuffle, seed, buffer_size, drop_last
        self.transform, self.epoch = transform, 0
        if rank is None or world_size is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
            else:
                rank, world_size = 0, 1
        self.rank, self.world_size = rank, world_size
        self.shard_ids = self._lazy.shard_ids(clearance, where)
        self.ids = self.shard_ids[0] if self._lazy.corpus is None else np.sort(np.concatenate(self.shard_ids))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_ids(self) -> np.ndarray:
        ids = self.ids
        if self.shuffle:
            # Shard order shuffled per (seed, epoch): ids stay in id-ordered runs for locality.
            rng = np.random.default_rng([self.seed, self.epoch])
            shards = np.array_split(ids, max(1, math.ceil(len(ids) / self.batch_size)))
            ids = np.concatenate([shards[i] for i in rng.permutation(len(shards))]) if shards else ids
        n, w = len(ids), self.world_size
        per_rank = n // w if self.drop_last else math.ceil(n / w)
        total = per_rank * w
        if total > n:  # pad by repeating from the start
            ids = np.concatenate([ids, ids[: total - n]])
        return ids[self.rank:total:w]

    def _rank_units(self) -> list[tuple[int, np.ndarray]]:
        """This rank's work in a sharded corpus, as (shard, ids) runs: runs of up to batch_size
        ids within one shard are shuffled per (seed, epoch) and laid end to end; each rank takes
        one contiguous slice of that sequence, cut to equal lengths as DistributedSampler does
        (drop_last: the total cut to a multiple of world size; otherwise the sequence's first
        rows repeated to fill the last slices), so no row is lost or read twice beyond that,
        and a rank reads whole runs, each from one shard, except at its slice's two ends."""
        runs = [(shard, ids[i:i + self.batch_size]) for shard, ids in enumerate(self.shard_ids)
                for i in range(0, len(ids), self.batch_size)]
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(runs))
            runs = [runs[i] for i in order]
        ids = np.concatenate([r[1] for r in runs]) if runs else np.zeros(0, np.uint64)
        shards = np.concatenate([np.full(len(r[1]), r[0], np.int32) for r in runs]) if runs else np.zeros(0, np.int32)
        n, w = len(ids), self.world_size
        per_rank = n // w if self.drop_last else math.ceil(n / w)
        total = per_rank * w
        if total > n:  # pad by repeating from the start
            repeat = np.resize(np.arange(n), total - n) if n else np.zeros(0, np.int64)
            ids, shards = np.concatenate([ids, ids[repeat]]), np.concatenate([shards, shards[repeat]])
        ids, shards = ids[self.rank * per_rank:(self.rank + 1) * per_rank], shards[self.rank * per_rank:(self.rank + 1) * per_rank]
        # Back into runs: one shard each, at most batch_size long.
        out, start = [], 0
        for end in list(np.flatnonzero(np.diff(shards)) + 1) + [len(ids)]:
            for i in range(start, end, self.batch_size):
                out.append((int(shards[start]), ids[i:min(i + self.batch_size, end)]))
            start = end
        return out

    def _worker_units(self, info) -> list[tuple[int, np.ndarray]]:
        """The (shard, ids) runs this worker reads: its share of its rank's."""
        if self._lazy.corpus is None:
            ids = self._rank_ids()
            if info is not None:
                ids = ids[info.id::info.num_workers]
            return [(0, ids[i:i + self.batch_size]) for i in range(0, len(ids), self.batch_size)]
        units = self._rank_units()
        return units[info.id::info.num_workers] if info is not None else units

    def __iter__(self):
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, info.id if info else 0])
        buffer: list[dict] = []
        for shard, ids in self._worker_units(info):
            rows = _read_rows(self._lazy.get(shard), ids, self)
            for row in rows:
                if not self.shuffle:
                    yield self.transform(row) if self.transform else row
                    continue
                buffer.append(row)
                if len(buffer) >= self.buffer_size:
                    j = int(rng.integers(len(buffer)))
                    buffer[j], buffer[-1] = buffer[-1], buffer[j]
                    item = buffer.pop()
                    yield self.transform(item) if self.transform else item
        rng.shuffle(buffer)
        for item in buffer:
            yield self.transform(item) if self.transform else item
