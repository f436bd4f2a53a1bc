"""The shipped library needs no Swift toolchain: checked with ldd, and by installing the wheel
into a fresh virtual environment with the toolchain off PATH and LD_LIBRARY_PATH."""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from labeldb import _native

ALLOWED = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "ld-linux-x86-64.so.2",
           "libstdc++.so.6", "libgcc_s.so.1", "liblmdb.so.0", "libopenblas.so.0", "libxxhash.so.0"}


def _shipped() -> Path:
    path = Path(_native._library_path())
    if "LABELDB_LIBRARY" in os.environ:
        pytest.skip("LABELDB_LIBRARY points at a development build; the shipped library is checked by Tools/test")
    return path


def test_the_library_links_no_swift_runtime():
    library = _shipped()
    ldd = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True).stdout
    assert "not found" not in ldd, ldd
    assert "libswift" not in ldd and "/opt/swift" not in ldd, ldd
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line}
    assert needed <= ALLOWED, needed - ALLOWED


def test_the_wheel_installs_and_reads_without_the_toolchain(corpus, tmp_path):
    wheels = sorted(Path(__file__).resolve().parents[2].joinpath("dist").glob("labeldb-*.whl"))
    if not wheels:
        pytest.skip("no wheel in dist/ (Tools/build-python --wheel makes one)")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # No Swift on PATH, no LD_LIBRARY_PATH, and no source tree on PYTHONPATH (pip would take it
    # for an installed labeldb and skip the wheel).
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LABELDB_LIBRARY", "PYTHONPATH")}
    clean["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if "swift" not in p)
    # numpy from PyPI; the labeldb wheel from dist/ only.
    subprocess.run([python, "-m", "pip", "install", "--quiet", "numpy>=1.24"], check=True, env=clean)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheels[-1])], check=True, env=clean)
    script = ("import labeldb, sys; db = labeldb.open(sys.argv[1]); tx = db.read('all'); "
              "b = tx.get_many(tx.ids()[:5], labels='teacher'); print(tx.count(), b.labels['teacher'].top_classes.shape[1])")
    done = subprocess.run([python, "-c", script, corpus["store"]], env=clean, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(corpus["ids"])), "3"]
