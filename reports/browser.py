"""Render a report page to PNG with headless Chromium (for looking at the layout)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
