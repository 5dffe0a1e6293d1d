"""The what-if report opens in headless Chromium and its plots render.

Debian's `chromium` takes a screenshot of the report; the screenshot must show
the page (not a blank or an error page) with both configurations' colours
drawn, which only the inline PNG plots carry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from pipeline.bench.history import write_history
from pipeline.whatif_html import COLOURS
from tests.timeline import SHARED, require_ci_part

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GRAPH = SHARED / "data" / "service-graphs" / "sock_shop.csv"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and allowed (root)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], env=env,
                       capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        require_ci_part("Debian's chromium is not installed (apt-get install chromium)")
    return found


def screenshot(browser: str, page: Path, out: Path, size: str = "1280,1600") -> None:
    """Render a local page in headless Chromium and save what it shows."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
                                 f"--window-size={size}", page.resolve().as_uri()],
                                capture_output=True, text=True, timeout=180)
    assert out.exists(), f"no screenshot; chromium said:\n{result.stderr[-2000:]}"


def _share_near(image: np.ndarray, colour: str, tolerance: float = 0.08) -> float:
    rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return float(np.mean(np.all(np.abs(image[:, :, :3] - rgb) < tolerance, axis=2)))


def test_the_whatif_report_renders_with_its_plots_in_headless_chromium(tmp_path):
    if not GRAPH.exists():
        require_ci_part(f"the shared service graphs are not beside the repository ({GRAPH})")
    browser = chromium()
    history = tmp_path / "history.ndjson"
    write_history(GRAPH, 2000, 1, history)
    (tmp_path / "current.yaml").write_text("incidents: {gap: 1m}\n")
    (tmp_path / "proposed.yaml").write_text("incidents: {gap: 20m, link_depth: 2}\n")
    report = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", "whatif", "--history", str(history),
                           "--graph", str(GRAPH), "--current", str(tmp_path / "current.yaml"),
                           "--proposed", str(tmp_path / "proposed.yaml"), "--out", str(report)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    shot = tmp_path / "report.png"
    screenshot(browser, report, shot)
    image = imread(shot)
    assert image.shape[1] == 1280
    assert np.mean(np.all(image[:, :, :3] > 0.97, axis=2)) < 0.95  # not a blank page
    assert _share_near(image, COLOURS[0]) > 0.002  # the current configuration's pages, drawn
    assert _share_near(image, COLOURS[1]) > 0.002  # and the proposed one's
