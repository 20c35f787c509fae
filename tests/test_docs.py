"""Every ```python block in docs/*.md runs, page by page, so the docs cannot drift.

Blocks of one page share a namespace and run in order, in a scratch directory
(pages write pictures). Fragments that cannot run alone are fenced ```py.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_code_on_the_page_runs(page: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib").use("Agg")  # a page may plot; never open a window
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    namespace: dict = {"__name__": f"docs.{page.stem}"}
    if shutil.which("dot") is None and re.search(r"\.(svg|png|pdf)\b", "".join(blocks)):
        pytest.skip("the page renders pictures: needs Graphviz's dot (apt-get install graphviz)")
    for i, block in enumerate(blocks):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, f"{page.name}, block {i + 1}", "exec"), namespace)
