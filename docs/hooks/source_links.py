"""MkDocs hook: link prose to the exact line of code that computes a formula.

Pages write a link whose target is a file of the repository, relative to
``docs/`` (so the link opens the file where the markdown is read as it is,
on GitHub), and whose title is a piece of that file's text::

    [dW = Xᵀ dZ](../tape/ops.py "return x.swapaxes(-1, -2) @ g")

At build time the hook finds the one line containing that text, and points
the link at that line of a generated, highlighted copy of the file
(``source/tape/ops.py/#L-123``, highlighted by the ``:target`` rule in
``docs/stylesheets/extra.css``). When the code changes so that the text is no
longer found, or is found twice, the build fails: the docs cannot silently
point at the wrong line.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/hooks/ is two levels down
SOURCES = (
    "tape/autodiff.py",
    "tape/function.py",
    "tape/nn.py",
    "tape/ops.py",
    "tape/optim.py",
    "tape/record.py",
)
LINK = re.compile(r"\]\(\.\./(?P<path>tape/[\w./-]+)(?: \"(?P<text>[^\"]+)\")?\)")


def _page(path: str) -> str:
    return f"source/{path}.md"


def find_line(path: str, text: str, where: str) -> int:
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if text in line]
    if len(hits) != 1:
        found = "not found" if not hits else f"found on lines {hits}; make the text unique"
        raise PluginError(f"{where}: source link text {text!r} in {path}: {found}")
    return hits[0]


def on_files(files: Files, config: Any) -> Files:
    """Add one page per linked source file: the file's text, highlighted, a name per line."""
    formatter = HtmlFormatter(linenos="inline", linespans="L", cssclass="highlight")
    for path in SOURCES:
        code = (ROOT / path).read_text(encoding="utf-8")
        body = highlight(code, PythonLexer(), formatter)
        content = (
            f"# `{path}`\n\n"
            "The repository's file as it was when this site was built; "
            "links from the other pages land on a line of it.\n\n"
            f'<div class="source-file" markdown="0">\n{body}\n</div>\n'
        )
        files.append(File.generated(config, _page(path), content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Rewrite ``(../PATH "TEXT")`` links into links to the line holding TEXT."""
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        path, text = match["path"], match["text"]
        if path not in SOURCES:
            raise PluginError(
                f"{page.file.src_uri}: source link to {path}, which is not in SOURCES of "
                "docs/hooks/source_links.py"
            )
        target = posixpath.relpath(_page(path), here or ".")
        if text is None:
            return f']({target} "{path}")'
        line = find_line(path, text, page.file.src_uri)
        return f']({target}#L-{line} "{path}, line {line}")'

    return LINK.sub(rewrite, markdown)
