"""Regenerate the pictures of the docs: `python docs/img/make_pictures.py [OUT_DIR]`.

Every diagram on the teaching pages (concepts, linear-layer, why-accumulate)
and on docs/diagrams.md is drawn here from code, so its numbers are the
engine's; tests/test_docs.py redraws them and compares their text with the
committed files. Needs Graphviz's `dot` for the diagrams, and Debian's
chromium with chromium-driver plus the selenium package for the screenshot of
the step-through page (skipped, with a note, when they are missing;
`--no-screenshot` skips it always).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

import tape
from tape.cli import seed_network as seed_network_parts

HERE = Path(__file__).resolve().parent


def seed_network() -> tape.Tensor:
    """X(4×3) → Linear(3→2) → ReLU → MSE, as in `tape demo`."""
    return seed_network_parts(0)["loss"]


def diagrams(folder: Path = HERE) -> list[Path]:
    written = []
    loss = seed_network()
    written.append(tape.render(loss, folder / "seed_before.svg", legend=True))
    loss.backward()
    written.append(tape.render(loss, folder / "seed_after.svg", show_data=True))

    # docs/concepts.md: its running example, as the page builds it (X and y need no gradient)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3))
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="W")
    b = tape.tensor(np.zeros(2), requires_grad=True, name="b")
    y = rng.standard_normal((4, 2))
    loss = ((X @ W + b).relu() - y).pow(2).mean()
    loss.name = "loss"
    written.append(tape.render(loss, folder / "concepts_tape.svg", show_grad=False))
    loss.backward()
    written.append(tape.render(loss, folder / "concepts_walk.svg"))

    # docs/why-accumulate.md: y = x·x + 3x at x = 2, as in examples/why_accumulate.py
    x = tape.tensor(2.0, requires_grad=True, name="x")
    square, triple = x * x, 3 * x
    square.name, triple.name = "x*x", "3*x"
    y = square + triple
    y.name = "y"
    y.backward()
    written.append(tape.render(y, folder / "why_accumulate.svg", show_data=True))

    x = tape.tensor([3.0], requires_grad=True, name="x")
    y = x * x + x
    y.name = "y"
    y.backward(np.ones(1))
    written.append(tape.render(y, folder / "fanout.svg", show_data=True))

    x = tape.tensor(np.arange(12.0).reshape(4, 3) / 10, requires_grad=True, name="x")
    b = tape.tensor([1.0, 2.0, 3.0], requires_grad=True, name="b")
    out = (x + b).sum()
    out.name = "out"
    out.backward()
    written.append(tape.render(out, folder / "broadcast.svg", show_data=True))

    rng = np.random.default_rng(1)
    x = tape.tensor(rng.standard_normal((8, 4)), name="x")
    params = {}
    h = x
    for i, (n_in, n_out) in enumerate([(4, 16), (16, 16), (16, 1)], 1):
        W = tape.tensor(rng.standard_normal((n_in, n_out)) / 4, requires_grad=True, name=f"W{i}")
        c = tape.tensor(np.zeros(n_out), requires_grad=True, name=f"b{i}")
        params[W.name], params[c.name] = W, c
        with tape.scope(f"layer{i}"):
            h = h @ W + c
            h = h.tanh() if i < 3 else h
        h.name = f"h{i}"
    loss = (h**2).mean()
    loss.name = "loss"
    loss.backward()
    written.append(tape.render(loss, folder / "collapsed.svg", collapse=True, hide_constants=True))
    return written


def screenshot() -> Path | None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
    except ImportError:
        chromium = None
    if not (chromium and driver):
        print("skipped steps.png: needs chromium, chromium-driver and selenium", file=sys.stderr)
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    flags = (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--window-size=1400,860 --hide-scrollbars"
    )
    for flag in flags.split():
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as tmp:
        options.add_argument(f"--user-data-dir={tmp}")
        page = Path(tmp) / "backward.html"
        # A fresh thread has a fresh tape, so the record numbers start at 0 as in a script.
        worker = threading.Thread(target=lambda: tape.render_steps(seed_network(), page))
        worker.start()
        worker.join()
        browser = webdriver.Chrome(service=Service(driver), options=options)
        try:
            browser.get(page.as_uri())
            body = browser.find_element(By.TAG_NAME, "body")
            for _ in range(5):  # mean, pow, sub, relu, add: the frame where b's sum shows
                body.send_keys(Keys.ARROW_RIGHT)
            path = HERE / "steps.png"
            browser.save_screenshot(str(path))
        finally:
            browser.quit()
    return path


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-screenshot"]
    out = Path(args[0]) if args else HERE
    shots = [] if "--no-screenshot" in sys.argv or out != HERE else [screenshot()]
    for path in [*diagrams(out), *shots]:
        if path is not None:
            print(
                f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
            )
