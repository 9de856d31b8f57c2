"""``/docs`` renders in a real browser with no request leaving the box, and shows an
upload button for a media parameter (scripts/docs_screenshot.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="no chromium (apt-get install chromium)"
)
def test_docs_render_offline_with_upload_buttons(tmp_path: Path) -> None:
    pytest.importorskip("playwright")
    out = tmp_path / "docs.png"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "docs_screenshot.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no request left the box" in done.stdout
    assert out.stat().st_size > 10_000
