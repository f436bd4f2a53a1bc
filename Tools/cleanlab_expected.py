"""Writes the confident-learning fixtures of `labels issues` (issue 13): synthetic corpora with
planted label flips, and what cleanlab 2.9.0's `find_label_issues` flags on them.

Run by `Tools/cleanlab-expected` (which makes a venv with cleanlab 2.9.0); the files it writes
under Tests/LabelDBTests/Fixtures/cleanlab/ are committed, and `LabelIssueTests` checks
`labels issues` against them. Also usable as a library: `corpus(...)` and `expected(...)`.
"""

import json
import pathlib
import sys

import numpy as np

FILTERS = {"prune-by-noise-rate": "prune_by_noise_rate", "prune-by-class": "prune_by_class", "both": "both"}

# name: (samples, classes, flip rate, model strength, seed). Mixed shapes: few and many classes
# (argsort paths differ past 16 elements), imbalanced priors, a class no sample is given.
CASES = {
    "small": (400, 4, 0.2, 3.0, 1),
    "medium": (1500, 12, 0.15, 3.5, 2),
    "wide": (500, 40, 0.1, 4.0, 3),
    "coarse": (600, 6, 0.2, 2.5, 4, True),
}


def coarsen(given, probs):
    """Probabilities in steps of 1/16 (many equal values, as coarse codecs make them), rows
    that cannot be repaired dropped."""
    probs = np.round(probs * 16) / 16
    probs[:, 0] += 1 - probs.sum(axis=1)
    keep = probs[:, 0] >= 0
    return given[keep], probs[keep].astype(np.float32), keep


def corpus(n, classes, flip, strength, seed, coarse=False):
    """Given labels (int32), predicted probabilities (float32 rows summing to 1 within f32
    rounding) and the planted-flip mask, seeded."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(classes, 2.0))
    prior[-1] = 0  # the last class is never true: no sample is given it unless flipped to it
    prior /= prior.sum()
    truth = rng.choice(classes, size=n, p=prior)
    flipped = rng.random(n) < flip
    # Asymmetric noise: a flip goes to one of the next two classes, never the last (which so no
    # sample is given: its threshold is cleanlab's 2).
    given = np.where(flipped, (truth + 1 + rng.integers(0, 2, n)) % classes, truth).astype(np.int32)
    given[given == classes - 1] = 0
    flipped &= given != truth
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), truth] += strength
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    if coarse:
        given, probs, keep = coarsen(given, probs)
        flipped = flipped[keep]
    return given, probs, flipped


def counts(given, probs):
    """cleanlab's thresholds and calibrated confident joint (as LabelDB reports them)."""
    from cleanlab.count import compute_confident_joint, get_confident_thresholds

    p = probs.astype(np.float64)
    return get_confident_thresholds(given, p).tolist(), compute_confident_joint(given, p).tolist()


def expected(given, probs, stable=False):
    """cleanlab's flagged indices per filter, ranked by self-confidence. numpy's default
    argsort orders equal values arbitrarily (SIMD sorts); `stable` makes it stable for the call,
    which is the order LabelDB documents (equal values: the smaller index first)."""
    from cleanlab.filter import find_label_issues

    if stable:
        argsort = np.argsort
        np.argsort = lambda a, *args, **kwargs: argsort(a, kind="stable")
        try:
            return expected(given, probs)
        finally:
            np.argsort = argsort

    # float64 of the stored float32 values: LabelDB computes in double from the same floats.
    p = probs.astype(np.float64)
    return {
        name: find_label_issues(given, p, filter_by=filter_by, return_indices_ranked_by="self_confidence", n_jobs=1).tolist()
        for name, filter_by in FILTERS.items()
    }


def main(out):
    import cleanlab

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"cleanlab": cleanlab.__version__, "numpy": np.__version__, "cases": {}}
    for name, case in CASES.items():
        given, probs, flipped = corpus(*case)
        np.save(out / f"{name}-given.npy", given)
        np.save(out / f"{name}-probs.npy", probs)
        np.save(out / f"{name}-flipped.npy", flipped.astype(np.uint8))
        flagged, default = expected(given, probs, stable=True), expected(given, probs)
        planted = set(np.flatnonzero(flipped).tolist())
        quality = {}
        for f, ids in flagged.items():
            hit = len(planted & set(ids))
            quality[f] = {"flagged": len(ids), "precision": hit / max(len(ids), 1), "recall": hit / max(len(planted), 1)}
        thresholds, joint = counts(given, probs)
        summary["cases"][name] = {"samples": len(given), "classes": case[1], "planted": len(planted), "expected": flagged,
                                  "thresholds": thresholds, "confident_joint": joint,
                                  "default_argsort_agrees": {f: default[f] == flagged[f] for f in FILTERS}, "quality": quality}
        print(name, {f: q for f, q in quality.items()})
    (out / "expected.json").write_text(json.dumps(summary, indent=1) + "\n")


def compare(trials, cli):
    """Random corpora through `labeldb labels issues` and cleanlab: prints every difference."""
    import os
    import subprocess
    import tempfile

    rng = np.random.default_rng(2026)
    mismatches = tie_ordered = 0
    for trial in range(trials):
        n, classes = int(rng.integers(20, 1500)), int(rng.integers(3, 60))  # the last class is never given: two at least remain
        case = (n, classes, float(rng.uniform(0, 0.4)), float(rng.uniform(0.5, 5)), int(rng.integers(1 << 30)))
        given, probs, _ = corpus(*case)
        if rng.random() < 0.3:
            given, probs, _ = coarsen(given, probs)
        with tempfile.TemporaryDirectory() as d:
            store = os.path.join(d, "s")
            np.save(os.path.join(d, "e.npy"), np.zeros((len(given), 2), np.float32))
            np.save(os.path.join(d, "g.npy"), given)
            np.save(os.path.join(d, "p.npy"), probs)
            pathlib.Path(d, "c.txt").write_text("".join(f"k{i}\n" for i in range(classes)))
            run = lambda *a: subprocess.run([cli, *a], check=True, capture_output=True, text=True).stdout
            run("init", store, "--dim", "2", "--classes", os.path.join(d, "c.txt"))
            run("import", store, "--embeddings", os.path.join(d, "e.npy"))
            run("labels", "import", store, "given", "--hard", os.path.join(d, "g.npy"))
            run("labels", "import", store, "probs", "--soft", os.path.join(d, "p.npy"), "--codec", "dense:f32")
            want, stable = expected(given, probs), expected(given, probs, stable=True)
            for name, ids in stable.items():
                out = run("labels", "issues", store, "--given", "given", "--probs", "probs", "--filter", name, "--format", "json")
                got = [json.loads(line)["id"] for line in out.splitlines()]
                if got != ids:
                    mismatches += 1
                    print(f"trial {trial} {case} {name}: set {'equal' if set(got) == set(ids) else 'differs'}; "
                          f"only labeldb {sorted(set(got) - set(ids))[:10]}, only cleanlab {sorted(set(ids) - set(got))[:10]}")
                tie_ordered += got != want[name]
    print(f"{trials} corpora × {len(FILTERS)} filters: {mismatches} differ from cleanlab with a stable argsort; "
          f"{tie_ordered} from cleanlab with numpy's default argsort (which orders equal values arbitrarily)")
    return mismatches


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        sys.exit(1 if compare(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ".build/debug/labeldb") else 0)
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/LabelDBTests/Fixtures/cleanlab")
