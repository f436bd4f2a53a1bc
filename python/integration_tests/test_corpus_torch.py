"""labeldb.torch over a sharded corpus: shards opened lazily in each worker, runs dealt to ranks
and workers without overlap or loss, deterministic per seed and epoch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from conftest import cli  # noqa: E402
from labeldb.torch import Dataset, IterableDataset, collate  # noqa: E402


@pytest.fixture(scope="module")
def sharded(corpus, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sharded") / "corpus"
    cli("shard", corpus["store"], str(path), "--shards", "5", "--clearance", "all")
    return str(path)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_map_style_dataset_over_a_corpus_equals_the_store(corpus, sharded, context):
    whole = Dataset(corpus["store"], labels=["teacher", "gold"], clearance="all", soft="dense")
    parts = Dataset(sharded, labels=["teacher", "gold"], clearance="all", soft="dense")
    np.testing.assert_array_equal(whole.ids, parts.ids)
    loader = DataLoader(parts, batch_size=32, num_workers=2, multiprocessing_context=context, collate_fn=collate)
    got = {int(i): (e, s, h) for b in loader for i, e, s, h in zip(b["id"].tolist(), b["embedding"], b["teacher.soft"], b["gold.hard"])}
    assert len(got) == len(whole)
    for index in range(0, len(whole), 17):
        row = whole[index]
        e, s, h = got[int(row["id"])]
        np.testing.assert_array_equal(e.numpy(), row["embedding"])
        np.testing.assert_array_equal(s.numpy(), row["teacher.soft"])
        assert int(h) == row["gold.hard"]


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterable_dataset_deals_shard_runs_to_ranks_and_workers(corpus, sharded, drop_last):
    n, world = len(corpus["ids"]), 3

    def run(epoch):
        per_rank = []
        for rank in range(world):
            ds = IterableDataset(sharded, clearance="all", batch_size=16, seed=5, rank=rank, world_size=world,
                                 drop_last=drop_last, buffer_size=20)
            ds.set_epoch(epoch)
            loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="fork", collate_fn=collate)
            per_rank.append([i for b in loader for i in b["id"].tolist()])
        return per_rank

    per_rank = run(1)
    assert len({len(r) for r in per_rank}) == 1  # equal per rank, as DistributedSampler
    everything = [i for r in per_rank for i in r]
    if drop_last:
        assert len(set(everything)) == len(everything)  # no overlap
    else:
        assert set(everything) == {int(i) for i in corpus["ids"]}  # no loss
    assert run(1) == per_rank  # deterministic per seed and epoch
    assert run(2) != per_rank


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterable_dataset_with_more_ranks_than_runs(corpus, sharded, drop_last):
    """Few rows, big runs, many ranks: each rank still gets its share, as DistributedSampler."""
    n, world = len(corpus["ids"]), 8
    per_rank = []
    for rank in range(world):
        ds = IterableDataset(sharded, clearance="all", batch_size=256, rank=rank, world_size=world, drop_last=drop_last, shuffle=False)
        per_rank.append([int(r["id"]) for r in ds])
    assert {len(r) for r in per_rank} == {n // world if drop_last else -(-n // world)}
    everything = [i for r in per_rank for i in r]
    if drop_last:
        assert len(set(everything)) == len(everything)
    else:
        assert set(everything) == {int(i) for i in corpus["ids"]}
