"""The header is the ABI: a C program compiled against include/labeldb.h uses the shipped library,
and the ctypes declarations of the Python package lay the structs out exactly as C does."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from labeldb import _native

HEADER_DIR = Path(__file__).resolve().parents[2] / "Sources" / "CLabelDB" / "include"

PROGRAM = r"""
#include <stddef.h>
#include <stdio.h>
#include "labeldb.h"
int main(int argc, char **argv) {
    printf("%zu %zu %zu %zu %zu %zu\n", sizeof(ldb_batch), offsetof(ldb_batch, label_columns),
           offsetof(ldb_batch, found_count), offsetof(ldb_batch, taint_json), sizeof(ldb_label_columns), sizeof(ldb_regen_columns));
    ldb_store *store = NULL; ldb_txn *txn = NULL; uint64_t count = 0;
    if (ldb_open(argv[1], 0, &store) != LDB_OK) { printf("open: %s\n", ldb_last_error()); return 1; }
    if (ldb_txn_begin(store, "all", 0, &txn) != LDB_OK) { printf("begin: %s\n", ldb_last_error()); return 1; }
    if (ldb_count(txn, &count) != LDB_OK) return 1;
    uint64_t id = 1; ldb_batch batch = {0}; uint8_t found = 7; batch.found = &found;
    int rc = ldb_get_many(txn, &id, 1, &batch);
    int bad = ldb_get_many(txn, &id, 1, NULL);      /* a NULL batch: an error, not a crash */
    ldb_txn *other = NULL;
    printf("%llu %d %d %u %d %s\n", (unsigned long long)count, rc, bad, found, ldb_txn_begin(store, "secrecy=a;;", 0, &other),
           ldb_last_error()[0] ? "message" : "none");
    ldb_txn_abort(txn);
    return ldb_close(store);
}
"""


def test_a_c_program_against_the_header(corpus, tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    library = Path(_native._library_path())
    (tmp_path / "main.c").write_text(PROGRAM)
    (tmp_path / "liblabeldb.so").symlink_to(library)
    subprocess.run(["cc", "-O1", "-I", str(HEADER_DIR), "-o", str(tmp_path / "main"), str(tmp_path / "main.c"),
                    "-L", str(tmp_path), "-llabeldb", f"-Wl,-rpath,{tmp_path}"], check=True)
    done = subprocess.run([str(tmp_path / "main"), corpus["store"]], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    sizes, outcome = done.stdout.splitlines()
    size, label_columns, found_count, taint_json, label_size, regen_size = map(int, sizes.split())
    b = _native.BatchStruct
    assert size == ctypes.sizeof(b)
    assert (label_columns, found_count, taint_json) == (b.label_columns.offset, b.found_count.offset, b.taint_json.offset)
    assert (label_size, regen_size) == (ctypes.sizeof(_native.LabelColumns), ctypes.sizeof(_native.RegenColumns))
    count, rc, bad, found, begin, message = outcome.split()
    assert int(count) == len(corpus["ids"]) and rc == "0" and found == "0"  # id 1 is not in the corpus
    assert bad == "2" and begin == "2" and message == "message"
