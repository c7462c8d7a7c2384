"""Headless Chromium on a report page: a PNG screenshot to look at, and the measured layout
(page, image and table widths) that tests check."""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .load import ReportError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The first Chromium-like executable on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 6000,
               timeout: float = 120.0) -> Path:
    """Screenshot ``html`` (a file) into ``png`` at ``width`` × ``height`` pixels; returns
    ``png``. Raises :class:`ReportError` when no Chromium is installed or it fails."""
    browser = find_browser()
    if browser is None:
        raise ReportError(f"no headless browser found (tried {', '.join(BROWSERS)}); "
                          "install one, e.g. `apt-get install -y chromium`")
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.exists():
        raise ReportError(f"{html} not found")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
           "--disable-dev-shm-usage", f"--screenshot={png}", f"--window-size={width},{height}",
           html.as_uri()]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ReportError(f"{browser} did not finish the screenshot of {html} in "
                          f"{timeout:.0f} s") from exc
    if not png.exists():
        raise ReportError(f"{browser} wrote no screenshot of {html}: {proc.stderr[-500:]}")
    return png


_MEASURE = """<script>window.addEventListener("load", function () {
  var page = document.documentElement.clientWidth, out = [];
  document.querySelectorAll("img").forEach(function (img) {
    var box = img.getBoundingClientRect(), parent = img.parentElement.getBoundingClientRect();
    out.push({alt: img.alt.slice(0, 80), natural: img.naturalWidth, shown: box.width,
              left: box.left, right: box.right, container: parent.width});
  });
  var tables = [];
  document.querySelectorAll("table[id]").forEach(function (table) {
    var box = table.getBoundingClientRect(), wrap = table.parentElement;
    tables.push({id: table.id, width: box.width, left: box.left, right: box.right,
                 container: wrap.clientWidth, scroll: wrap.scrollWidth});
  });
  var pre = document.createElement("pre");
  pre.id = "spikebench-layout";
  pre.textContent = JSON.stringify({page: page, scroll: document.documentElement.scrollWidth,
                                    images: out, tables: tables});
  document.body.appendChild(pre);
});</script>"""


def measure_layout(html: Path, width: int = 1400, height: int = 2000,
                   timeout: float = 120.0) -> dict[str, Any]:
    """Lay ``html`` out in headless Chromium at ``width`` pixels and return the page width
    (``page``), the scrollable width (``scroll``; larger means a horizontal scroll bar) and,
    per image, its natural and shown width and its left / right edge (``images``), per table
    with an ``id``, its width, left / right edge, and its wrapper's visible and scrollable
    width (``tables``: ``scroll > container`` means the table is clipped and scrolls). Raises
    :class:`ReportError` when no Chromium is installed or it fails."""
    browser = find_browser()
    if browser is None:
        raise ReportError(f"no headless browser found (tried {', '.join(BROWSERS)})")
    html = Path(html).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / html.name
        probe.write_text(html.read_text().replace("</body>", _MEASURE + "</body>", 1))
        cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               "--disable-dev-shm-usage", "--virtual-time-budget=5000",
               f"--window-size={width},{height}", "--dump-dom", probe.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise ReportError(f"{browser} did not lay out {html} in {timeout:.0f} s") from exc
    found = re.search(r'<pre id="spikebench-layout">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        raise ReportError(f"{browser} returned no layout of {html}: {proc.stderr[-500:]}")
    return json.loads(htmllib.unescape(found.group(1)))
