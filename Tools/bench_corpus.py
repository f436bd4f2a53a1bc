"""Issue 16's measurements on a store and the 8-shard corpus split from it (Tools/bench-corpus):
a Ray Data read against one process reading the store, and kNN on the corpus against the store."""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import labeldb
import labeldb.ray as ldray

work = sys.argv[1]
store, corpus = os.path.join(work, "store"), os.path.join(work, "corpus")
cli = os.environ["LABELDB_CLI"]
labels = dict(labels=["teacher"], probs=True, clearance="all", columns=["embedding"])


def best(f, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


# One process reading the store: what every read task does, for the whole store.
source = ldray.LabelDBDatasource(store, **labels)
rows = sum(len(x) for x in source.ids)
(task,) = source.get_read_tasks(1)
baseline, n = best(lambda: sum(t.num_rows for t in task()))
assert n == rows
print(f"one store, one process: {rows / baseline:,.0f} rows/s ({baseline:.2f} s, {rows:,} rows, embedding + teacher probs)")

import pyarrow as pa  # noqa: E402
import ray  # noqa: E402
from ray.data.block import BlockMetadata  # noqa: E402
from ray.data.datasource import Datasource, ReadTask  # noqa: E402


class ZerosDatasource(Datasource):
    """The control: 8 tasks yielding Arrow blocks of the same shape (id, a 128-float embedding,
    a 100-float probs column, 4,096 rows each) made in the task, with no store behind them: what
    Ray itself costs for these bytes on this machine."""

    def estimate_inmemory_data_size(self):
        return rows * (8 + 4 * 128 + 4 * 100)

    def get_read_tasks(self, parallelism, **kwargs):
        def read(n):
            def go():
                for start in range(0, n, 4096):
                    m = min(4096, n - start)
                    yield pa.table({"id": pa.array(np.arange(m, dtype=np.uint64)),
                                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(m * 128, np.float32)), 128),
                                    "teacher.probs": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(m * 100, np.float32)), 100)})
            return go
        parts = [rows // 8 + (1 if i < rows % 8 else 0) for i in range(8)]
        return [ReadTask(read(n), BlockMetadata(num_rows=n, size_bytes=None, input_files=None, exec_stats=None)) for n in parts]


@ray.remote
def run_task(task):
    """A read task run as a plain Ray task, its rows counted in the worker: no Ray Data pipeline."""
    start = time.perf_counter()
    return sum(t.num_rows for t in task()), time.perf_counter() - start


results = {"rows": rows, "store_rows_per_s": rows / baseline}
for cpus in (1, 2):
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    tasks = ldray.LabelDBDatasource(corpus, **labels).get_read_tasks(8)
    ray.get(run_task.remote(tasks[0]))
    plain, done = best(lambda: ray.get([run_task.remote(t) for t in tasks]))
    assert sum(d[0] for d in done) == rows
    results[f"ray_{cpus}cpu_plain_tasks_rows_per_s"] = rows / plain
    print(f"the 8 read tasks as plain Ray tasks, {cpus} CPU: {rows / plain:,.0f} rows/s ({plain:.2f} s) = {baseline / plain:.2f}× one process")
    ldray.read_labeldb(corpus, **labels).materialize()  # warm the workers
    seconds, count = best(lambda: ldray.read_labeldb(corpus, **labels).materialize().count())
    assert count == rows
    control, _ = best(lambda: ray.data.read_datasource(ZerosDatasource()).materialize().count())
    results[f"ray_{cpus}cpu_rows_per_s"] = rows / seconds
    results[f"ray_{cpus}cpu_control_rows_per_s"] = rows / control
    print(f"Ray read of the 8-shard corpus, {cpus} CPU: {rows / seconds:,.0f} rows/s ({seconds:.2f} s) = {baseline / seconds:.2f}× one process; "
          f"Ray's own ceiling for these blocks (no store): {rows / control:,.0f} rows/s, so the read reaches {control / seconds:.2f}× of it")
    ray.shutdown()

# kNN through the release CLI: 64 queries, k = 10.
queries = np.load(os.path.join(work, "data", "embeddings.npy"), mmap_mode="r")[:64] + 0.01
np.save(os.path.join(work, "q.npy"), np.ascontiguousarray(queries, np.float32))


def knn(path, *extra):
    done = subprocess.run([cli, "knn", path, "--query", os.path.join(work, "q.npy"), "--k", "10", "--clearance", "all",
                           "--format", "json", *extra], capture_output=True, text=True, check=True)
    return done.stdout


for extra, name in (((), "kNN"), (("--labels", "teacher"), "kNN labels (permissive)")):
    single, a = best(lambda: knn(store, *extra))
    sharded, b = best(lambda: knn(corpus, *extra))
    assert a == b, f"{name}: the corpus's answer differs from the store's"
    results[f"{name}_store_s"], results[f"{name}_corpus_s"] = single, sharded
    print(f"{name}, 64 queries: store {single:.3f} s, 8-shard corpus {sharded:.3f} s = {sharded / single:.2f}× (answers equal)")
print(json.dumps(results))
