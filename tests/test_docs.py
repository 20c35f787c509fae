"""Every ```python block in docs/*.md and README.md runs, page by page, so they cannot drift.

Blocks of one page share a namespace and run in order, in a scratch directory
(pages write pictures). Fragments that cannot run alone are fenced ```py.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = DOCS.parent / "README.md"  # a new user's first page: its code runs too
PAGES = sorted(
    p for p in [*DOCS.glob("*.md"), README] if "```python" in p.read_text(encoding="utf-8")
)


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
    # a picture the page shows and its code draws is the one the code draws today
    shown = set(re.findall(r"\]\(img/([\w.]+\.svg)\)", page.read_text(encoding="utf-8")))
    for drawn in sorted(tmp_path.glob("*.svg")):
        if drawn.name in shown:
            committed = (DOCS / "img" / drawn.name).read_text("utf-8")
            assert svg_texts(drawn.read_text("utf-8")) == svg_texts(committed), (
                f"{page.name}: img/{drawn.name} shows other labels or numbers than the "
                "page's code draws; make the page's code and docs/img/make_pictures.py agree"
            )


# ---- printed output on the pages is the code's output -----------------------------------
#
# A ```text block right after `<!-- output: SOURCE -->` is what SOURCE prints, and this
# test runs SOURCE in a fresh process (record numbers start where a user's script starts)
# and compares. SOURCE is a script (`examples/why_accumulate.py`: the block is a run of
# lines of its output, at any indentation), `above`: the page's python blocks since the
# last `## ` heading, compiled as `example.py` in one namespace holding `np` and `tape`
# (the block is what the last of them prints), or `page`: the same with every python block
# of the page up to the marker.

ROOT = DOCS.parent
OUTPUT = re.compile(r"^<!-- output: (?P<source>\S+) -->\n```text\n(?P<text>.*?)^```", re.S | re.M)
RUN_BLOCKS = """
import json, sys
import numpy as np
import tape
namespace = {"np": np, "tape": tape, "__name__": "__main__"}
blocks = json.loads(sys.stdin.read())
for i, block in enumerate(blocks):
    if i == len(blocks) - 1:
        print("\\0", end="", flush=True)
    exec(compile(block, "example.py", "exec"), namespace)
"""
MARKED = sorted(p for p in DOCS.glob("*.md") if "<!-- output: " in p.read_text(encoding="utf-8"))


def python_blocks_above(page: str, end: int, whole_page: bool = False) -> list[str]:
    section = page[:end] if whole_page else page[:end].rpartition("\n## ")[2]
    return re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)


def printed(source: str, page: str, end: int, cwd: Path) -> str:
    if source in ("above", "page"):
        blocks = python_blocks_above(page, end, whole_page=source == "page")
        assert blocks, f"an `<!-- output: {source} -->` block needs a python block before it"
        command, stdin = [sys.executable, "-c", RUN_BLOCKS], json.dumps(blocks)
    else:
        command, stdin = [sys.executable, str(ROOT / source)], ""
    done = subprocess.run(
        command, input=stdin, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{source} failed:\n{done.stderr}"
    return done.stdout.rpartition("\0")[2]


def contains_lines(output: str, text: str) -> bool:
    """Whether ``text``'s lines are a run of ``output``'s lines, all at one indentation."""
    want = text.rstrip("\n").splitlines()
    have = [line.rstrip() for line in output.splitlines()]
    for i, line in enumerate(have):
        if line.strip() == want[0].strip():
            indent = line[: len(line) - len(line.lstrip())]
            if have[i : i + len(want)] == [(indent + w).rstrip() if w else "" for w in want]:
                return True
    return False


@pytest.mark.parametrize("page", MARKED, ids=lambda p: p.name)
def test_printed_output_on_the_page_is_what_the_code_prints(page: Path, tmp_path: Path) -> None:
    text = page.read_text(encoding="utf-8")
    marks = list(OUTPUT.finditer(text))
    assert marks, f"{page.name}: an output marker must be followed by a ```text block"
    for mark in marks:
        output = printed(mark["source"], text, mark.start(), tmp_path)
        assert contains_lines(output, mark["text"]), (
            f"{page.name}: the block after <!-- output: {mark['source']} --> is not what "
            f"the code prints; it prints:\n{output}"
        )


def test_the_teaching_pages_have_pictures_drawn_by_the_script() -> None:
    script = (DOCS / "img" / "make_pictures.py").read_text(encoding="utf-8")
    drawn = set(re.findall(r'"(\w+\.svg)"', script))
    for name in ("concepts.md", "linear-layer.md", "why-accumulate.md"):
        pictures = re.findall(r"!\[[^\]]*\]\(img/([\w.]+)\)", (DOCS / name).read_text("utf-8"))
        assert pictures, f"{name} has no picture"
        assert set(pictures) <= drawn, f"{name}: {set(pictures) - drawn} not drawn by the script"


def svg_texts(svg: str) -> list[str]:
    return sorted(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def test_the_pictures_show_what_the_code_computes_today(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("redrawing the pictures needs Graphviz's dot (apt-get install graphviz)")
    script = DOCS / "img" / "make_pictures.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--no-screenshot"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # the text of each picture (labels, numbers), not its layout, which Graphviz versions vary
    for drawn in sorted(tmp_path.glob("*.svg")):
        committed = DOCS / "img" / drawn.name
        assert committed.exists(), f"run python {script.relative_to(ROOT)} and commit {drawn.name}"
        assert svg_texts(drawn.read_text("utf-8")) == svg_texts(committed.read_text("utf-8")), (
            f"docs/img/{drawn.name} is out of date: run python docs/img/make_pictures.py"
        )


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_each_source_link_finds_its_one_line(page: Path) -> None:
    """The docs build's check, without building: a link's text names exactly one line."""
    pytest.importorskip("mkdocs")  # the hook raises mkdocs' error; docs extras only
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import source_links
    finally:
        sys.path.pop(0)
    for match in source_links.LINK.finditer(page.read_text(encoding="utf-8")):
        if match["text"]:
            assert match["path"] in source_links.SOURCES, match[0]
            source_links.find_line(match["path"], match["text"], page.name)
