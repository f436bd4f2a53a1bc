"""Runs verify in a child process: a damaged page structure can crash LMDB, not the caller."""
from __future__ import annotations

import json
import subprocess
import sys

_CHILD = (
    "import json, sys, labeldb\n"
    "db = labeldb.open(sys.argv[1])\n"
    "print(json.dumps(db.verify(sys.argv[2], in_process=True)))\n"
)


def in_child(path: str, clearance: str) -> dict:
    from ._errors import from_code
    done = subprocess.run([sys.executable, "-c", _CHILD, path, clearance], capture_output=True, text=True)
    if done.returncode == 0:
        return json.loads(done.stdout)
    if done.returncode < 0:
        return {"ok": False, "samples_checked": 0, "blocks_checked": 0, "records_checked": 0,
                "problems": [{"table": "*", "key": "*", "detail": f"the walk crashed inside LMDB (signal {-done.returncode}): "
                              "the store's page structure is damaged; restore a backup"}]}
    # The child raised: re-raise the same class with its message.
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "verify failed"
    name, _, message = last.partition(": ")
    code = {"labeldb._errors.NotFound": 1, "labeldb._errors.Refused": 2, "labeldb._errors.BadInput": 2}.get(name, 3)
    raise from_code(code, message or last, refused=name.endswith("Refused"))
