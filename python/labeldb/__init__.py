"""LabelDB from Python: the Swift engine behind its C API.

    import labeldb
    db = labeldb.open("corpus")                     # read-only by default
    with db.read(clearance="all") as tx:            # one snapshot
        s = tx.get(42)                              # a Sample
        b = tx.get_many(ids, labels=["teacher"])    # a Batch of numpy columns
        t = tx.query("label(teacher).top1 = 'cat'", labels="teacher").to_arrow()
    corpus = labeldb.open_corpus("sharded")        # a sharded corpus: one store per shard
    shard = corpus.open_shard(0)                    # pinned to the manifest's versions

Errors are labeldb.Error: NotFound (1), BadInput (2) with Refused under it, StoreError (3).
"""
from ._corpus import Corpus, CorpusWriter, FitPart, create_corpus, open_corpus
from ._errors import BadInput, Error, NotFound, Refused, StoreError
from ._native import lib as _lib
from ._store import (Batch, KNNResult, LabelColumns, QueryResult, RegenColumns, Sample, Store, Transaction, Views,
                     WriteTransaction, create, open)

__version__ = "0.1.0"
engine_version: str = _lib.ldb_version().decode()


def import_parquet(store: Store, path: str, clearance: str = "all", **options) -> dict:
    """Imports a Parquet file with columns id, embedding and optionally metadata (JSON strings)
    and payload (binary) into `store` in one write transaction (needs pyarrow)."""
    from ._arrow import import_parquet as run
    return run(store, path, clearance=clearance, **options)


__all__ = ["open", "create", "open_corpus", "create_corpus", "Corpus", "CorpusWriter", "FitPart", "import_parquet", "Store", "Transaction", "WriteTransaction", "Sample", "Batch",
           "LabelColumns", "RegenColumns", "QueryResult", "KNNResult", "Views", "Error", "NotFound", "BadInput", "Refused",
           "StoreError", "engine_version"]
