"""Issue 16's distributed-fit measurement (Tools/bench-corpus --ray-fit): one projector fit of the
8-shard corpus's teacher, run
  - by Corpus.fit_projector (every shard's passes on a thread of the writer's process, K-11), and
  - by labeldb.ray.fit_projector with 2 CPUs (every shard's passes in a Ray actor of its own,
    K-17: only sums, figures, corrections and minibatches cross to the driver),
with the same options, alternated, twice each (the best kept). The two fits' figures are checked
equal up to BLAS's rounding (its blocking follows how many threads each process runs), and the
relative differences printed."""
import os
import sys
import time

import ray

import labeldb
import labeldb.ray as ldray

corpus = os.path.join(sys.argv[1], "corpus")
options = dict(rank=32, holdout=0.05, max_steps=int(sys.argv[2]) if len(sys.argv) > 2 else 400, max_kl=0.05, clearance="all")
keys = ("samples", "train_rows", "train_mean_kl", "holdout_mean_kl", "closed_form_mean_kl", "corrections", "steps")
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
best = {"threads": float("inf"), "ray": float("inf")}
figures = {}
for round in range(2):
    for how in ("threads", "ray"):
        name = f"{how}{round}"
        t = time.perf_counter()
        if how == "threads":
            version = labeldb.open_corpus(corpus).fit_projector(name, "teacher", **options)
        else:
            version = ldray.fit_projector(corpus, name, "teacher", **options)
        took = time.perf_counter() - t
        best[how] = min(best[how], took)
        figures[how] = {key: version[key] for key in keys}
        print(f"fit {how} round {round + 1}: {took:.2f} s", flush=True)
a, b = figures["threads"], figures["ray"]
assert all(a[key] == b[key] for key in ("samples", "train_rows", "steps")), figures
assert abs(a["corrections"] - b["corrections"]) <= 2, figures
for key in ("train_mean_kl", "holdout_mean_kl", "closed_form_mean_kl"):
    difference = abs(a[key] - b[key]) / abs(a[key])
    assert difference < 1e-5, (key, figures)
    print(f"{key}: threads {a[key]:.9g}, Ray {b[key]:.9g} (relative difference {difference:.1e})")
print(f"corrections: threads {a['corrections']}, Ray {b['corrections']}")
print(f"best: threads {best['threads']:.2f} s, Ray actors {best['ray']:.2f} s ({best['ray'] / best['threads']:.2f}x)")
ray.shutdown()
