"""report.html as a browser sees it: every chart decodes, nothing on the page errors, and a
full-page screenshot is left in build/test-artifacts/ for people to look at.

Needs Debian's headless Chromium (`apt-get install --no-install-recommends chromium`).
Without it these tests skip, unless DEPLOYBENCH_REQUIRE_BROWSER=1 (CI sets it), which
makes a missing browser a failure.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.render import render_run_dir
from tests.browser import WINDOW, BrowserUnavailable, Chromium

pytestmark = pytest.mark.browser

REQUIRE_ENV = "DEPLOYBENCH_REQUIRE_BROWSER"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "digits-4targets.json"
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
PNG = b"\x89PNG\r\n\x1a\n"
IMG_TAG = re.compile(r"<img\b", re.IGNORECASE)
DATA_URI = re.compile(r'src="data:image/png;base64,([^"]+)"')


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    try:
        with Chromium() as chromium:
            yield chromium
    except BrowserUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1: the browser tests must run)")
        pytest.skip(f"{exc}; set {REQUIRE_ENV}=1 to make this a failure")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html of a real run: the four deployments of `digits` measured by `make demo`
    (tests/fixtures/runs/digits-4targets.json), rendered by this deploybench."""
    out = tmp_path_factory.mktemp("run")
    shutil.copy(FIXTURE, out / "run.json")
    return render_run_dir(out).html


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data.startswith(PNG), "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_every_chart_loads_without_errors_and_page_is_captured(
        browser: Chromium, report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tags = len(IMG_TAG.findall(report.read_text()))
    assert tags >= 2, "the report should hold at least two charts"

    page = browser.open(report.as_uri())

    assert page.errors == ()
    assert len(page.images) == tags
    assert page.broken == ()
    assert len(page.loaded) == tags

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.write_bytes(page.screenshot)
    with capsys.disabled():
        print(f"\nscreenshot of report.html: {shot}")
    assert shot.stat().st_size > 0
    # The whole page, not just the first screenful.
    assert png_size(shot.read_bytes()) == page.size
    assert page.size[1] > WINDOW[1]


def test_a_corrupted_chart_is_reported_as_not_loading(
        browser: Chromium, report: Path, tmp_path: Path) -> None:
    html = report.read_text()
    payloads = DATA_URI.findall(html)
    assert len(payloads) >= 2
    # A chart cut short after its header: still starts like a PNG, but cannot be decoded.
    truncated = base64.b64encode(base64.b64decode(payloads[1])[:64]).decode()
    broken = tmp_path / "report.html"
    broken.write_text(html.replace(payloads[1], truncated, 1))

    page = browser.open(broken.as_uri())

    assert len(page.images) == len(payloads)
    assert [img.index for img in page.broken] == [1]
    assert len(page.loaded) == len(payloads) - 1


def test_script_and_console_errors_are_reported(browser: Chromium, tmp_path: Path) -> None:
    page_path = tmp_path / "errors.html"
    page_path.write_text(
        "<!DOCTYPE html><html><body><p>text</p>"
        '<img src="missing.png" alt="a file that is not there">'
        "<script>console.error('drawn wrong'); null.boom;</script></body></html>"
    )

    page = browser.open(page_path.as_uri())

    assert len(page.errors) == 3, page.errors
    assert any("drawn wrong" in line for line in page.errors)
    assert any("uncaught exception" in line and "boom" in line for line in page.errors)
    assert any("ERR_FILE_NOT_FOUND" in line and "missing.png" in line for line in page.errors)
    assert [img.alt for img in page.broken] == ["a file that is not there"]
