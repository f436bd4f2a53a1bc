"""The README's Python block runs and prints what its comment says."""
import contextlib
import io
import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"## In Python\n\n```python\n(.*?)```", text, re.S).group(1)
    expected = re.search(r"# (3 \{.*)$", block, re.M).group(1)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    assert out.getvalue().strip() == expected
    assert os.path.isdir(tmp_path / "corpus")
