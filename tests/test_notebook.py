"""examples/backprop.ipynb runs end to end in a Jupyter kernel and shows what it promises.

The notebook is the learner's path (fast.ai's backprop lesson rebuilt on tape);
it is kept without outputs, and both this test and the docs build
(mkdocs-jupyter, ``execute: true``) run it, so what the page shows is what the
code does today.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the dev extra: pip install -e '.[dev]'")
nbclient = pytest.importorskip("nbclient", reason="needs the dev extra: pip install -e '.[dev]'")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "backprop.ipynb"


def outputs(cell) -> tuple[str, str]:
    """All the text a cell printed or returned, and all the HTML/SVG it displayed."""
    text, rich = [], []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            text.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            text.append(out.data.get("text/plain", ""))
            rich.append(out.data.get("text/html", "") + out.data.get("image/svg+xml", ""))
    return "".join(text), "".join(rich)


def test_the_notebook_is_kept_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_the_notebook_runs_and_shows_what_it_promises(tmp_path: Path):
    if shutil.which("dot") is None:
        pytest.skip("the notebook draws diagrams: needs Graphviz's dot (apt-get install graphviz)")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail("no Jupyter kernel named python3: pip install ipykernel (in the dev extra)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    cells = [c for c in nb.cells if c.cell_type == "code"]
    shown = [outputs(c) for c in cells]
    text = "".join(t for t, _ in shown)
    rich = "".join(r for _, r in shown)
    # the hand-written backward and the engine agree on every gradient
    assert text.count("by hand == engine: True") == 5 and "False" not in text
    # the diagram, the ledger (b's gradient summed over the batch), the step-through page
    assert "<svg" in rich and "sum over axis 0" in rich
    assert "→ b" in text and "sum over axis 0 → (2,)" in text
    assert '<iframe srcdoc="' in rich and "step by step" in rich
    assert (
        "dW = Xᵀ @ g   (3, 4) @ (4, 2) → (3, 2)" in rich
    )  # the page's formulas came along (escaped in srcdoc)
    # a Tensor, the ledger and explain display as tables
    assert "<div class='tape-tensor'><b>b1</b>" in rich
    assert rich.count('<div class="tape-table">') >= 2
    # check_graph names the one wrong record of the two-layer network, and its cell
    assert '<div class="tape-check-graph">' in rich and "<b>WRONG</b>" in rich
    assert "[('Linear',\n  0,\n  'cell In[" in text and "opposite sign" in text
    assert "cell In[" in rich and "ipykernel" not in rich  # lines named as Jupyter does
    # gradcheck finds the forgotten sum, then a sign and a transpose, shown as tables
    assert "<code>dZ.sum(0)</code>" in rich and "input 2 &#x27;b&#x27;" in rich
    assert "opposite sign" in rich and "transpose" in rich
    assert shown[-1][0].strip() == "True"  # the fixed layer passes
