"""labeldb.torch with a real DataLoader: worker processes under fork and spawn, ranks."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

import labeldb  # noqa: E402
from labeldb.torch import Dataset, IterableDataset, collate  # noqa: E402


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_map_style_dataset_yields_every_sample_once_with_two_workers(corpus, context):
    ds = Dataset(corpus["store"], labels=["teacher", "gold"], clearance="all", soft="compact")
    loader = DataLoader(ds, batch_size=32, num_workers=2, multiprocessing_context=context, collate_fn=collate)
    seen, rows = [], 0
    for batch in loader:
        seen.extend(batch["id"].tolist())
        assert batch["embedding"].dtype == torch.float32 and batch["embedding"].shape[1] == 8
        assert batch["teacher.top_classes"].shape[1] == 3
        rows += len(batch["id"])
    assert sorted(seen) == sorted(int(i) for i in corpus["ids"])
    assert rows == len(corpus["ids"])
    # Values match a direct read.
    order = np.argsort(corpus["ids"])
    first = ds[0]
    np.testing.assert_array_equal(first["embedding"], corpus["emb"][order[0]])
    assert first["gold.hard"] == int(corpus["hard"][order[0]])


def test_default_collate_works_too(corpus):
    ds = Dataset(corpus["store"], labels=["gold"], clearance="all")
    batch = next(iter(DataLoader(ds, batch_size=16)))
    assert batch["embedding"].shape == (16, 8) and batch["gold.hard"].shape == (16,)


def test_the_public_clearance_hides_the_secret_sample(corpus):
    ds = Dataset(corpus["store"], clearance="public")
    assert len(ds) == len(corpus["ids"]) - 1
    assert corpus["secret"] not in ds.ids.tolist()


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterable_dataset_splits_ranks_and_workers_without_overlap(corpus, drop_last):
    n, world = len(corpus["ids"]), 3
    per_rank = []
    for rank in range(world):
        ds = IterableDataset(corpus["store"], clearance="all", batch_size=16, seed=5, rank=rank, world_size=world,
                             drop_last=drop_last, buffer_size=20)
        ds.set_epoch(1)
        loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="fork", collate_fn=collate)
        per_rank.append([i for b in loader for i in b["id"].tolist()])
    counts = {len(r) for r in per_rank}
    assert len(counts) == 1  # equal per rank, as DistributedSampler
    everything = [i for r in per_rank for i in r]
    if drop_last:
        assert len(everything) == (n // world) * world and len(set(everything)) == len(everything)
    else:
        assert set(everything) == {int(i) for i in corpus["ids"]}
        assert len(everything) == -(-n // world) * world  # padded by repeating from the start


def test_iterable_dataset_shuffles_per_seed_and_epoch(corpus):
    def order(seed, epoch):
        ds = IterableDataset(corpus["store"], clearance="all", batch_size=16, seed=seed, buffer_size=50)
        ds.set_epoch(epoch)
        return [r["id"] for r in ds]
    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and order(1, 0) != order(2, 0)
    assert sorted(order(1, 0)) == sorted(int(i) for i in corpus["ids"])


def test_a_tiny_model_trains_on_the_store(corpus):
    """The Tools/train-example.py loop in miniature: the loss falls."""
    ds = Dataset(corpus["store"], labels=["teacher"], clearance="all", soft="dense")
    loader = DataLoader(ds, batch_size=50, shuffle=True, collate_fn=collate)
    model = torch.nn.Linear(8, 6)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        for batch in loader:
            logp = torch.log_softmax(model(batch["embedding"]), dim=1)
            loss = -(batch["teacher.soft"] * logp).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_views_option_replays_the_epochs_view_with_its_crop(tmp_path, context):
    """Issue 14: Dataset(views=SET) gives each sample the view epoch E replays (index E mod n in
    view-number order) with its crop, flip and seed, through worker processes."""
    n = 40
    store = labeldb.create(tmp_path / "views", 4, ["a", "b", "c"])
    ids = np.arange(1, n + 1, dtype=np.uint64)
    with store.write() as tx:
        tx.put(ids, np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32))
        # Sample i has (i % 3) + 1 views numbered 10, 20, 30; view v's crop starts at v / 100.
        rows = [(int(i), v) for i in ids for v in (10, 20, 30)[: int(i) % 3 + 1]]
        tx.import_labels("fkd", hard=[v // 10 - 1 for _, v in rows], ids=[i for i, _ in rows],
                         views={"view": [v for _, v in rows], "crop": [[v / 100, 0, 0.5 + v / 100, 1] for _, v in rows],
                                "flip": [v == 20 for _, v in rows], "seed": [i * 1000 + v for i, v in rows]})
    store.close()
    ds = Dataset(tmp_path / "views", views="fkd", soft="dense")
    for epoch in (0, 1, 2, 5):
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=16, num_workers=2, multiprocessing_context=context, collate_fn=collate)
        for batch in loader:
            for k, sid in enumerate(batch["id"].tolist()):
                count = sid % 3 + 1
                v = (10, 20, 30)[epoch % count]
                assert batch["fkd.view"][k].item() == v
                assert batch["fkd.seed"][k].item() == sid * 1000 + v
                assert batch["fkd.flip"][k].item() == (v == 20)
                assert batch["fkd.crop"][k].tolist() == pytest.approx([v / 100, 0, 0.5 + v / 100, 1])
                assert batch["fkd.hard"][k].item() == v // 10 - 1
                assert batch["fkd.soft"][k].sum().item() == 0  # a hard-only set: no soft label, as get_many
