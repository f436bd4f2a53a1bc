"""`labeldb export --npz` read back by numpy itself (cli.md, export), against the arrays the corpus
was built from: the archive is what `numpy.load` expects, and every member agrees with the store."""
from __future__ import annotations

import base64
import json
import zipfile

import numpy as np

from conftest import cli


def test_export_npz_holds_every_column_as_numpy_reads_it(corpus, tmp_path):
    out = tmp_path / "all.npz"
    done = cli("export", corpus["store"], "--npz", str(out), "--labels", "teacher,gold", "--clearance", "all",
               "--where", "meta.split = 'train'")
    assert zipfile.ZipFile(out).testzip() is None                     # every member's CRC-32 checks
    z = np.load(out)
    keep = [i for i, m in enumerate(corpus["meta"]) if m["split"] == "train"]
    order = sorted(keep, key=lambda i: int(corpus["ids"][i]))
    assert done.stdout.strip() == f"exported {len(order)} samples"
    assert set(z.files) == {"ids", "embeddings", "metadata", "metadata_offsets", "payloads", "payloads_offsets",
                            "labels/teacher", "labels/gold"}
    assert z["ids"].dtype == np.uint64 and z["ids"].tolist() == [int(corpus["ids"][i]) for i in order]
    np.testing.assert_array_equal(z["embeddings"], corpus["emb"][order])
    offsets, blob = z["metadata_offsets"], z["metadata"].tobytes()
    for row, i in enumerate(order):
        expected = dict(corpus["meta"][i])
        if "taint" in expected:
            expected["taint"] = {"integrity": [], **expected["taint"]}
        assert json.loads(blob[offsets[row]:offsets[row + 1]]) == expected   # the secret row keeps its taint member
    p_off, p_blob = z["payloads_offsets"], z["payloads"].tobytes()
    for row, i in enumerate(order):
        assert p_blob[p_off[row]:p_off[row + 1]] == bytes([i % 256]) * (i % 7)
    assert z["labels/gold"].dtype == np.int32
    assert z["labels/gold"].tolist() == [int(corpus["hard"][i]) for i in order]
    teacher = z["labels/teacher"]
    assert teacher.dtype == np.float32 and teacher.shape == (len(order), len(corpus["classes"]))
    assert (teacher.argmax(1) == corpus["soft"][order].argmax(1)).mean() > 0.95   # topk:3:f16 keeps the top class


def test_export_npz_of_an_empty_selection_is_a_valid_archive(corpus, tmp_path):
    out = tmp_path / "none.npz"
    cli("export", corpus["store"], "--npz", str(out), "--where", "id > 99999999")
    z = np.load(out)
    assert z["ids"].shape == (0,) and z["embeddings"].shape == (0, 8) and z["metadata_offsets"].tolist() == [0]
