"""Fixtures: a small store written through the CLI (so Python answers can be compared with it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def cli_path() -> str:
    """The labeldb binary Tools/test built (LABELDB_CLI overrides)."""
    path = os.environ.get("LABELDB_CLI") or str(REPO / ".build" / "debug" / "labeldb")
    if not Path(path).exists():
        pytest.skip(f"the labeldb CLI is not built ({path})")
    return path


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([cli_path(), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"labeldb {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def cli_json_lines(*args: str) -> list:
    return [json.loads(line) for line in cli(*args, "--format", "json").stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    """A store of 200 samples (8-d, 6 classes) with a soft set (topk:3:f16), a hard set, a secret
    sample, and the arrays it was built from; built with the CLI."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    n, d, c = 200, 8, 6
    ids = rng.choice(10_000, size=n, replace=False).astype(np.uint64)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    logits = rng.normal(size=(n, c)) * 2
    soft = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    hard = rng.integers(0, c, size=n)
    classes = [f"class{i}" for i in range(c)]
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    np.save(root / "ids.npy", ids)
    np.save(root / "emb.npy", emb)
    np.save(root / "soft.npy", soft)
    np.save(root / "hard.npy", hard.astype(np.int64))
    meta = [{"i": int(i), "split": "train" if i % 5 else "val"} for i in range(n)]
    meta[3]["taint"] = {"secrecy": ["pii"]}
    (root / "meta.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    (root / "payloads.jsonl").write_text("\n".join(json.dumps({"base64": __import__("base64").b64encode(bytes([i % 256]) * (i % 7)).decode()}) for i in range(n)) + "\n")
    store = root / "store"
    cli("init", str(store), "--dim", str(d), "--classes", str(root / "classes.txt"))
    cli("import", str(store), "--embeddings", str(root / "emb.npy"), "--ids", str(root / "ids.npy"),
        "--meta", str(root / "meta.jsonl"), "--payloads", str(root / "payloads.jsonl"))
    cli("labels", "import", str(store), "teacher", "--soft", str(root / "soft.npy"), "--ids", str(root / "ids.npy"),
        "--codec", "topk:3:f16", "--clearance", "all")
    cli("labels", "import", str(store), "gold", "--hard", str(root / "hard.npy"), "--ids", str(root / "ids.npy"), "--clearance", "all")
    return {"root": root, "store": str(store), "ids": ids, "emb": emb, "soft": soft, "hard": hard, "meta": meta,
            "classes": classes, "secret": int(ids[3])}


@pytest.fixture
def copy(corpus, tmp_path) -> str:
    """A private copy of the corpus store, for tests that write."""
    target = tmp_path / "store"
    shutil.copytree(corpus["store"], target)
    return str(target)
