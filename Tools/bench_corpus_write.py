"""Issue 16's write measurement (Tools/bench-corpus): one new label set version of every sample
of the 8-shard corpus (the teacher's 100-class distributions), written
  - by Corpus.import_labels in one process (the corpus's one writer: every shard checked, then
    committed one after another), and
  - by LabelDBDatasink from a Ray dataset of 8 blocks, with 1 and 2 CPUs (write tasks stage each
    shard's part; one task per shard checks it, then one per shard writes it; K-13).
Every write is checked: the corpus then holds the version, with every row."""
import os
import sys
import time

import numpy as np
import pyarrow as pa
import ray

import labeldb
import labeldb.ray as ldray

work = sys.argv[1]
corpus = os.path.join(work, "corpus")
ids = np.load(os.path.join(work, "data", "ids.npy"))
probs = np.load(os.path.join(work, "data", "teacher.npy"), mmap_mode="r")
rows = len(ids)


def written(name, version):
    manifest = labeldb.open_corpus(corpus).manifest
    assert manifest["label_sets"][name] == version, manifest["label_sets"]


def best(write, repeats=2):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        write()
        times.append(time.perf_counter() - t)
    return min(times)


version = {"w": 0}


def in_process():
    labeldb.open_corpus(corpus).import_labels("w", ids, soft=np.asarray(probs), agent="bench", clearance="all")
    version["w"] += 1
    written("w", version["w"])


single = best(in_process)
print(f"label import in one process (one writer, shard after shard): {rows / single:,.0f} rows/s ({single:.2f} s, {rows:,} rows × 100 classes)")
table = pa.table({"id": pa.array(ids), "probs": pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(probs).reshape(-1)), 100)})
for cpus in (1, 2):
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    name = f"sink{cpus}"
    version[name] = 0

    def sink():
        ds = ray.data.from_arrow(table).repartition(8)
        ds.write_datasink(ldray.LabelDBDatasink(corpus, name, soft_column="probs", agent="bench", clearance="all"))
        version[name] += 1
        written(name, version[name])

    seconds = best(sink)
    print(f"LabelDBDatasink, {cpus} CPU (a writer per shard): {rows / seconds:,.0f} rows/s ({seconds:.2f} s) = {single / seconds:.2f}× one process")
    ray.shutdown()
