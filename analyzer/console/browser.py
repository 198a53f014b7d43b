"""Headless Chromium for the console's browser tests and screenshots: Debian's chromium (`make browser`)
driven by Playwright (its bundled driver; never `playwright install`, which downloads a browser build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
# headless, and nothing that reaches beyond loopback (updates, sync, component downloads)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")  # fmt: skip


def launch(playwright: Any) -> Any:
    """A Playwright Browser on Debian's chromium (a clear error when it is missing: `make browser`)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(FLAGS))
