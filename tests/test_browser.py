"""The step-through page in a real headless browser (Debian's chromium + chromedriver, Selenium).

Skips cleanly when chromium, its driver, the selenium package or Graphviz is
missing. Set TAPE_SCREENSHOTS=DIR to keep the screenshots for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import tape

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync "
    "--window-size=1400,900"
).split()

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(DRIVER is None, reason="chromedriver not installed (chromium-driver)"),
    pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed"),
]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    keep = os.environ.get("TAPE_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.read_bytes().startswith(b"\x89PNG")
    return path


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def frame_text(driver) -> tuple[str, str, str]:
    from selenium.webdriver.common.by import By

    title = driver.find_element(By.ID, "frame-title").text
    body = driver.find_element(By.ID, "frame-body").text
    table = driver.find_element(By.ID, "frame-table").text
    return title, body, table


def svg_text(driver, element_id: str) -> str:
    return driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).querySelectorAll('text'))"
        ".map(t => t.textContent).join(' | ');",
        element_id,
    )


def classes_of(driver, selector: str, name: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".filter(e => e.classList.contains(arguments[1])).map(e => e.id);",
        selector,
        name,
    )


def test_step_through_the_fan_out_example(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    x = tape.tensor([3.0], requires_grad=True, name="x")
    y = (x * x + x).sum()
    page = tape.render_steps(y, tmp_path / "fanout.html")
    browser.get(page.resolve().as_uri())

    title, body, _ = frame_text(browser)
    assert title.startswith("Start: backward from")
    assert "with the seed 1, the gradient of the output with respect to itself" in body
    counter = browser.find_element(By.ID, "counter").text
    assert counter == "Start: 3 steps to go"
    assert browser.find_element(By.ID, "prev").get_attribute("disabled")

    seen = [title]
    body_el = browser.find_element(By.TAG_NAME, "body")
    for _ in range(4):
        body_el.send_keys(Keys.ARROW_RIGHT)
        seen.append(frame_text(browser)[0])
        counter = browser.find_element(By.ID, "counter").text
        assert seen[-1].startswith(counter) or seen[-1].startswith("Done")  # one counter
    assert seen[1].startswith("Step 1 of 3: VJP of sum#")
    assert seen[2].startswith("Step 2 of 3: VJP of add#")
    assert seen[3].startswith("Step 3 of 3: VJP of mul#")
    assert seen[4] == "Done: every leaf has its total gradient"
    assert browser.find_element(By.ID, "next").get_attribute("disabled")
    body_el.send_keys(Keys.ARROW_RIGHT)  # past the end: stays on the last frame
    assert browser.find_element(By.ID, "counter").text == "Done: 3 of 3 steps"

    # Back to the mul frame with the button: x collects its 2nd and 3rd contributions.
    browser.find_element(By.ID, "prev").click()
    title, body, table = frame_text(browser)
    assert title.startswith("Step 3 of 3: VJP of mul#")
    assert "x 0 [3] [1] [4] += (2nd of 3 uses)" in table
    assert "x 1 [3] [4] [7] += (3rd of 3 uses)" in table
    assert "x is used 3 times" in body
    active = classes_of(browser, "g.node", "active")
    assert len(active) == 1 and "mul #" in svg_text(browser, active[0])
    assert len(classes_of(browser, "g.edge", "flow")) == 2  # the two edges from x into mul
    x_ids = classes_of(browser, "g.node", "updated")
    assert len(x_ids) == 1 and "grad [7]" in svg_text(browser, x_ids[0])
    screenshot(browser, tmp_path, "fanout_mul_frame")

    # Home jumps to the start; there x's gradient is not computed yet.
    body_el.send_keys(Keys.HOME)
    assert browser.find_element(By.ID, "counter").text == "Start: 3 steps to go"
    assert "grad: not computed yet" in svg_text(browser, x_ids[0])
    browser.find_element(By.ID, "last").click()
    assert frame_text(browser)[2].endswith("x [7] the sum of 3 contributions")
    assert console_errors(browser) == []


def test_step_through_the_seed_network(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    rng = np.random.default_rng(0)
    X = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="X")
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="W")
    b = tape.tensor(rng.standard_normal(2), requires_grad=True, name="b")
    y = tape.tensor(rng.standard_normal((4, 2)), name="y")
    loss = (((X @ W + b).relu() - y) ** 2).mean()
    loss.name = "loss"
    page = tape.render_steps(loss, tmp_path / "seed.html")
    browser.get(page.resolve().as_uri())
    assert browser.find_element(By.ID, "counter").text == "Start: 6 steps to go"  # script ran
    body_el = browser.find_element(By.TAG_NAME, "body")
    titles = [frame_text(browser)[0]]
    tables = [frame_text(browser)[2]]
    for _ in range(20):  # bounded: a broken page must fail, not hang
        if browser.find_element(By.ID, "next").get_attribute("disabled") is not None:
            break
        body_el.send_keys(Keys.ARROW_RIGHT)
        title, _, table = frame_text(browser)
        titles.append(title)
        tables.append(table)
        counter = browser.find_element(By.ID, "counter").text
        assert title.startswith(counter) or counter.startswith("Done")  # one counter
        if "VJP of matmul#" in title:  # the formula with this record's shapes
            formula = browser.find_element(By.ID, "frame-formula").text
            assert "dX = g @ Wᵀ   (4, 2) @ (2, 3) → (4, 3)" in formula
            assert "dW = Xᵀ @ g   (3, 4) @ (4, 2) → (3, 2)" in formula
            assert "recorded at tests/test_browser.py:" in frame_text(browser)[1] or (
                "recorded at test_browser.py:" in frame_text(browser)[1]
            )
            screenshot(browser, tmp_path, "seed_matmul_frame")
        if "VJP of add#" in title:
            _, body, _ = frame_text(browser)
            assert "sum over axis 0 → (2,)" in body  # b was broadcast over the 4 rows
            screenshot(browser, tmp_path, "seed_add_frame")
    ops = [t.split("VJP of ")[1].split("#")[0] for t in titles[1:-1]]
    assert ops == ["mean", "pow", "sub", "relu", "add", "matmul"]  # newest record first
    assert titles[-1] == "Done: every leaf has its total gradient"
    loss.backward()  # the page touched no .grad; the engine's own pass must agree with it
    final = tables[-1]
    fmt = tape.viz.format_array
    assert f"b {fmt(b.grad)}" in final
    for t in (X, W):  # matrices: one row per line in the table
        assert all(fmt(row) in final for row in t.grad), t.name
    screenshot(browser, tmp_path, "seed_done")
    assert console_errors(browser) == []


def test_the_inline_page_steps_without_scrolling_the_notebook(browser, tmp_path):
    """show_steps in a tall host page (as in Jupyter): stepping scrolls the frame, not the host."""
    from selenium.webdriver.common.by import By

    rng = np.random.default_rng(0)
    h = tape.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="h")
    for i in range(12):  # a tall graph: the active node leaves the frame's view
        h = (h * 1.5).tanh() if i % 2 else h + 0.5
    shown = tape.show_steps(h.sum(), height=400)
    host = tmp_path / "host.html"
    filler = "<p>notebook cell</p>" * 40
    host.write_text(
        f"<!DOCTYPE html><html><body>{filler}<div id='cell'>{shown._repr_html_()}</div>"
        f"{filler}</body></html>",
        encoding="utf-8",
    )
    browser.get(host.resolve().as_uri())
    frame = browser.find_element(By.TAG_NAME, "iframe")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", frame)
    before = browser.execute_script("return window.scrollY;")
    browser.switch_to.frame(frame)
    try:
        assert browser.find_element(By.ID, "counter").text == "Start: 19 steps to go"
        for _ in range(20):
            browser.find_element(By.ID, "next").click()
        assert browser.find_element(By.ID, "counter").text == "Done: 19 of 19 steps"
        browser.find_element(By.ID, "first").click()
        inner = browser.execute_script("return window.scrollY;")
        assert console_errors(browser) == []
    finally:
        browser.switch_to.default_content()
    assert browser.execute_script("return window.scrollY;") == before  # the host did not move
    assert inner >= 0
    screenshot(browser, tmp_path, "inline_host")


def test_in_a_narrow_column_the_explanation_sits_above_the_picture(browser, tmp_path):
    """A docs column or half-width notebook: the panel on top, the picture at full width."""
    from selenium.webdriver.common.by import By

    rng = np.random.default_rng(0)
    W = tape.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="W")
    loss = (np.ones((4, 3)) @ W).relu().mean()
    host = tmp_path / "narrow.html"
    host.write_text(
        "<!DOCTYPE html><html><body><div style='width: 600px'>"
        f"{tape.show_steps(loss, height=700)._repr_html_()}</div></body></html>",
        encoding="utf-8",
    )
    browser.get(host.resolve().as_uri())
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        assert "narrow" in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
        # at the top of the frame (stepping scrolls it, and the panel is sticky)
        panel_bottom, graph_top, graph_width = browser.execute_script(
            "window.scrollTo(0, 0);"
            "var p = document.getElementById('panel').getBoundingClientRect(),"
            "    g = document.getElementById('graph').getBoundingClientRect();"
            "return [p.bottom, g.top, g.width];"
        )
        assert panel_bottom <= graph_top + 1  # the explanation first
        assert graph_width > 500  # the picture gets the whole width
        browser.find_element(By.ID, "last").click()
        assert console_errors(browser) == []
    finally:
        browser.switch_to.default_content()
    screenshot(browser, tmp_path, "narrow_column")
