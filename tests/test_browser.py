"""The page in a real headless Chromium (pytest-playwright; conftest.py supplies /usr/bin/chromium).

Waits are on elements, never on "networkidle" (the page keeps an event stream open). Timeouts
only stop a hung test; nothing asserts how long anything took.

Screenshots: the Train tab after a finished run is saved to $PLAYGROUND_SCREENSHOT_DIR (or the
test's tmp_path); with PLAYGROUND_SCREENSHOT set it is also written to assets/screenshot.png for
the README.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from core.config import ModelConfig
from core.figures import TRAIN_COLOR, VAL_COLOR
from page import files

pytestmark = pytest.mark.browser

ASSETS = Path(__file__).resolve().parent.parent / "assets"
WAIT = 30_000  # ms; generous, for a 2-core machine shared with other work
TRAIN_WAIT = 120_000


def markdown(page: Page, elem_id: str):
    """A gr.Markdown's own text, without the progress overlay drawn over it during a run."""
    return page.locator(f"#{elem_id} [data-testid='markdown']")


def edit_cell(page: Page, row: int, col: int, value: str) -> None:
    cell = page.locator(f'#layers-df [data-testid="cell-{row}-{col}"]')
    cell.dblclick()
    editor = cell.locator("textarea")
    editor.fill(value)
    editor.press("Enter")
    expect(cell).to_contain_text(value)


def set_number(page: Page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(str(value))
    box.press("Tab")  # commit, as a visitor leaving the field does
    expect(box).to_have_value(str(value))


def train_points(page: Page) -> int:
    """How many points the live train-loss curve has drawn (0 before a run)."""
    return page.locator("#loss-plot .js-plotly-plot").evaluate(
        """e => { const t = (e._fullData || []).find(d => d.name === "train loss (per step)");
                  return t ? t._length : 0; }""")


def wait_until(condition, timeout_s: float, what: str):
    """Poll `condition()` until it is truthy; past the deadline, fail naming `what`."""
    end = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def pixel_colors(png: Path) -> Counter:
    """How many pixels of a screenshot have each color, as '#RRGGBB'."""
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)  # (H * W, 3)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    return Counter({"#{:02X}{:02X}{:02X}".format(*color): int(n) for color, n in zip(colors, counts)})


def total_parameters(page: Page) -> int:
    text = markdown(page, "param-total").inner_text()
    match = re.search(r"([\d,]+) parameters", text)
    assert match, text
    return int(match.group(1).replace(",", ""))


def open_app(page: Page, app_url: str) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(app_url, wait_until="domcontentloaded")
    expect(page.locator("#layers-df")).to_be_visible(timeout=WAIT)  # the Build tab opens first
    expect(markdown(page, "param-total")).to_contain_text("parameters", timeout=WAIT)


def sort_params(ffs, d_models=(48, 48, 48), heads=(3, 3, 3)) -> int:
    """What the page should show for the default sort task (vocabulary of 3 digits)."""
    return ModelConfig(3, list(d_models), list(ffs), list(heads)).num_parameters()


def test_build_tab_edits_counts_and_errors(page: Page, app_url):
    open_app(page, app_url)
    default = sort_params([192, 192, 192])
    expect(markdown(page, "param-total")).to_contain_text(f"{default:,} parameters")

    # A narrower feed-forward in layer 1: the total follows the edit.
    edit_cell(page, 0, 1, "96")
    narrower = sort_params([96, 192, 192])
    expect(markdown(page, "param-total")).to_contain_text(f"{narrower:,} parameters", timeout=WAIT)
    expect(markdown(page, "build-msg")).to_contain_text("valid model")
    assert total_parameters(page) == narrower != default

    # d_model 50 with 3 heads: a readable message, and the last valid count stays on the page.
    edit_cell(page, 0, 0, "50")
    expect(markdown(page, "build-msg")).to_contain_text("not divisible by nhead 3", timeout=WAIT)
    expect(markdown(page, "build-msg")).to_contain_text("is still shown")
    assert total_parameters(page) == narrower

    # A width change that divides: a projection appears in the parts table.
    edit_cell(page, 0, 0, "96")
    expect(markdown(page, "build-msg")).to_contain_text("valid model", timeout=WAIT)
    expect(markdown(page, "param-total")).to_contain_text("between layers 1 and 2")
    expect(page.locator("#param-table")).to_contain_text("projection 96 -> 48")
    assert total_parameters(page) == sort_params([96, 192, 192], d_models=(96, 48, 48))

    # The Mask tab draws its heatmap.
    page.locator("#tab-mask-button").click()
    expect(page.locator("#mask-plot .js-plotly-plot")).to_be_visible(timeout=WAIT)
    heatmap = page.locator("#mask-plot .js-plotly-plot .heatmaplayer image")
    expect(heatmap.first).to_be_attached(timeout=WAIT)


def test_train_stop_and_sample(page: Page, app_url, tmp_path):
    open_app(page, app_url)
    page.locator("#tab-train-button").click()
    expect(page.locator("#train-btn")).to_be_visible(timeout=WAIT)
    status = markdown(page, "train-status")

    # A short run to the end: the page as the README shows it.
    set_number(page, "epochs", 4)
    set_number(page, "train-size", 512)
    set_number(page, "val-size", 64)
    page.locator("#train-btn").click()
    expect(status).to_contain_text("Done", timeout=TRAIN_WAIT)
    expect(status).to_contain_text("trained 4 epochs")
    # The figure is drawn a moment after the status text of the same update arrives.
    wait_until(lambda: train_points(page) == 4 * 512 // 64, 30, "all 32 steps on the curve")
    expect(page.locator("#loss-plot .js-plotly-plot .legend")).to_contain_text("validation loss")
    shot_dir = Path(os.environ.get("PLAYGROUND_SCREENSHOT_DIR") or tmp_path)
    shot_dir.mkdir(parents=True, exist_ok=True)
    page.locator("#loss-plot").screenshot(path=str(shot_dir / "loss-plot.png"))
    drawn = pixel_colors(shot_dir / "loss-plot.png")
    for name, color in (("training", TRAIN_COLOR), ("validation", VAL_COLOR)):
        assert drawn[color] > 50, f"the {name} curve's color is barely on the screen: {drawn[color]} pixels"
    if os.environ.get("PLAYGROUND_SCREENSHOT"):
        page.screenshot(path=str(ASSETS / "screenshot.png"))

    # A long run: watch the curve grow, then Stop it.
    set_number(page, "epochs", 200)
    set_number(page, "train-size", 2000)
    page.locator("#train-btn").click()
    expect(status).not_to_contain_text("Done", timeout=WAIT)
    first = wait_until(lambda: train_points(page), 60, "the first points of the new run")
    wait_until(lambda: train_points(page) > first, 60, "the loss curve to grow")
    page.locator("#stop-btn").click()
    expect(status).to_contain_text("Stopped", timeout=TRAIN_WAIT)
    best_epoch = int(re.search(r"best model from epoch (\d+)", status.inner_text()).group(1))

    # The Sample tab offers held-out prompts of the best model and samples from it.
    page.locator("#tab-sample-button").click()
    expect(markdown(page, "sample-info")).to_contain_text(f"epoch {best_epoch}", timeout=WAIT)
    prompt = page.locator("#prompt textarea")
    expect(prompt).to_have_value(re.compile(r"^[012]{6}$"), timeout=WAIT)
    page.locator("#sample-btn").click()
    output = markdown(page, "sample-output")
    expect(output).to_contain_text(f"from the best model (epoch {best_epoch}", timeout=WAIT)
    expect(output).to_contain_text(prompt.input_value())


def pick_lesson(page: Page, name: str) -> None:
    page.locator("#lesson input").click()
    page.get_by_role("option", name=name, exact=True).click()
    expect(markdown(page, "lesson-notice")).to_contain_text(f"{name}.", timeout=WAIT)


def table_cells(text: str, label: str) -> list[str]:
    """The cells after `label` in a rendered table's row, as inner_text gives it (tab-separated)."""
    row = next(line for line in text.splitlines() if line.startswith(label))
    return [cell.strip() for cell in row.split("\t")[1:]]


def test_lesson_why_the_mask_end_to_end(page: Page, app_url):
    """Without the mask, lower validation loss and near-zero exact match; the causality check moves
    earlier positions; with the mask again, exactly zero before the edit."""
    open_app(page, app_url)
    pick_lesson(page, "Why the mask")
    page.locator("#tab-train-button").click()
    causal = page.locator("#causal input")
    expect(causal).not_to_be_checked(timeout=WAIT)
    status = markdown(page, "train-status")
    page.locator("#train-btn").click()
    expect(status).to_contain_text("train once with the mask to compare", timeout=TRAIN_WAIT)

    page.locator("#tab-inside-button").click()
    page.locator("#causality-btn").click()
    check = markdown(page, "causality-text")
    expect(check).to_contain_text("positions before 2 moved", timeout=WAIT)

    page.locator("#tab-train-button").click()
    causal.check()
    page.locator("#train-btn").click()
    expect(status).not_to_contain_text("train once with the mask to compare", timeout=TRAIN_WAIT)
    expect(status).to_contain_text("Done", timeout=TRAIN_WAIT)
    text = status.inner_text()
    (with_loss, without_loss), (with_match, without_match) = (
        table_cells(text, "validation loss"), table_cells(text, "held-out exact match"))
    assert float(without_loss) < float(with_loss), text
    assert float(without_match.rstrip("%")) < 30 < 90 < float(with_match.rstrip("%")), text

    page.locator("#tab-inside-button").click()
    page.locator("#causality-btn").click()
    expect(check).to_contain_text("moved by exactly 0", timeout=WAIT)
    expect(check).to_contain_text("0: 0 · 1: 0 · 2: ")


def test_lesson_why_keep_the_best_model_end_to_end(page: Page, app_url):
    """A run that overfits: the validation curve turns up after the best epoch (shaded), and the
    kept model beats the last one on validation loss and held-out exact match."""
    open_app(page, app_url)
    pick_lesson(page, "Why keep the best model")
    page.locator("#tab-train-button").click()
    expect(page.locator("#epochs input")).to_have_value("150", timeout=WAIT)
    page.locator("#train-btn").click()
    status = markdown(page, "train-status")
    expect(status).to_contain_text("trained 150 epochs", timeout=TRAIN_WAIT)
    best_epoch = int(re.search(r"best model from epoch (\d+)", status.inner_text()).group(1))
    assert best_epoch < 150
    shading = page.locator("#loss-plot .js-plotly-plot").evaluate(
        "e => (e.layout.shapes || []).map(s => [s.x0, s.x1])")
    assert shading == [[best_epoch, 150]]

    page.locator("#tab-sample-button").click()
    expect(markdown(page, "sample-info")).to_contain_text(f"epoch {best_epoch}", timeout=WAIT)
    page.locator("#compare-btn").click()
    compare = page.locator("#compare-output")
    expect(compare).to_contain_text("last model", timeout=WAIT)
    text = compare.inner_text()
    assert table_cells(text, "epoch") == [str(best_epoch), "150"], text
    (best_loss, last_loss), (best_match, last_match) = (
        table_cells(text, "validation loss"), table_cells(text, "held-out exact match"))
    assert float(best_loss) < float(last_loss), text
    assert float(best_match.rstrip("%")) > float(last_match.rstrip("%")), text


def test_the_runs_table_overlays_two_runs(page: Page, app_url):
    open_app(page, app_url)
    page.locator("#tab-train-button").click()
    status = markdown(page, "train-status")
    set_number(page, "epochs", 2)
    set_number(page, "train-size", 256)
    for seed in (1, 2):
        set_number(page, "seed", seed)
        page.locator("#train-btn").click()
        # the table gains this run's row once it has finished
        expect(page.locator("#runs-table")).to_contain_text(f"seed {seed}", timeout=TRAIN_WAIT)
        expect(status).to_contain_text("Done")
    for name in ("run 1", "run 2"):
        expect(page.locator("#runs-table")).to_contain_text(name)
    names = wait_until(lambda: page.locator("#runs-plot .js-plotly-plot").evaluate(
        "e => (e._fullData || []).map(d => d.name)"), 30, "the runs plot")
    assert {"run 1: validation", "run 2: validation"} <= set(names), names


def test_a_copied_link_restores_the_setup_and_a_teachers_link_locks_and_hides(page: Page, app_url, browser):
    open_app(page, app_url)
    edit_cell(page, 0, 1, "96")
    page.locator("#tab-train-button").click()
    page.locator("#task input").click()
    page.get_by_role("option", name="reverse", exact=True).click()
    for elem_id, value in (("epochs", 7), ("seed", 5), ("train-size", 512)):
        set_number(page, elem_id, value)
    page.locator("#causal input").uncheck()
    page.locator("#share-btn").click()
    link = page.locator("#share-link textarea")
    expect(link).to_have_value(re.compile(r"^http.*\?layers=48x96x3%2C48x192x3%2C48x192x3&"), timeout=WAIT)
    url = link.input_value()

    fresh = browser.new_context().new_page()  # another visitor: nothing shared but the link
    fresh.set_viewport_size({"width": 1280, "height": 900})
    fresh.goto(url, wait_until="domcontentloaded")
    expect(fresh.locator('#layers-df [data-testid="cell-0-1"]')).to_contain_text("96", timeout=WAIT)
    fresh.locator("#tab-train-button").click()
    expect(fresh.locator("#epochs input")).to_have_value("7", timeout=WAIT)
    expect(fresh.locator("#seed input")).to_have_value("5")
    expect(fresh.locator("#train-size input")).to_have_value("512")
    expect(fresh.locator("#task input")).to_have_value("reverse")
    expect(fresh.locator("#causal input")).not_to_be_checked()

    locked = fresh.context.new_page()
    locked.goto(url + "&lock=epochs&hide=lr&max_epochs=50&seed=oops", wait_until="domcontentloaded")
    notice = markdown(locked, "link-notice")
    expect(notice).to_contain_text("teacher's link", timeout=WAIT)
    expect(notice).to_contain_text("locked: epochs")
    expect(notice).to_contain_text("seed must be a whole number")  # named, and kept at its default
    expect(notice).not_to_contain_text("new tokens")  # a setting is not a limit
    locked.locator("#tab-train-button").click()
    expect(locked.locator("#epochs input")).to_be_disabled(timeout=WAIT)
    expect(locked.locator("#lr")).to_be_hidden()
    expect(locked.locator("#seed input")).to_have_value("0")


def test_saved_files_are_replaced_then_removed_when_the_visitor_leaves(browser, app_url, monkeypatch):
    """Save twice and export: one file of each kind at a time, and none once the page is closed."""
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.5")  # the server reads it as the page connects
    before = set(files.FILES_ROOT.glob("*")) if files.FILES_ROOT.exists() else set()
    context = browser.new_context()
    visitor = context.new_page()
    open_app(visitor, app_url)
    visitor.locator("#tab-train-button").click()
    set_number(visitor, "epochs", 1)
    set_number(visitor, "train-size", 256)
    visitor.locator("#train-btn").click()
    expect(markdown(visitor, "train-status")).to_contain_text("Done", timeout=TRAIN_WAIT)
    visitor.locator("#tab-sample-button").click()
    for button, shown in (("#save-btn", "#checkpoint-file"), ("#save-btn", "#checkpoint-file"),
                          ("#export-btn", "#code-file")):
        visitor.locator(button).click()
        expect(visitor.locator(shown)).to_contain_text(".safetensors" if "save" in button else "model.py",
                                                        timeout=WAIT)
    (folder,) = wait_until(lambda: set(files.FILES_ROOT.glob("*")) - before, 30, "this visitor's folder")

    def kept() -> list[str]:
        return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    # the code file's label names model.py too, so the page may show it before the export is written
    wait_until(lambda: "code/model.py" in kept(), 30, "the exported code")
    assert len(kept()) == 2 and kept()[0].startswith("checkpoint/"), kept()
    context.close()  # the visitor leaves: the heartbeat ends and the page's unload event runs
    wait_until(lambda: not folder.exists(), 30, "the visitor's files to be removed")
