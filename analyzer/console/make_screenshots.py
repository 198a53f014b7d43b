"""Screenshots of every console page for the README: `python -m analyzer.console.make_screenshots --data DIR`.

Serves the dataset (the demo's: `make demo` writes demo-data/) on a free loopback port, opens each page in
headless Chromium (analyzer/console/browser.py) and writes analyzer/console/screenshots/<page>.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn

from analyzer.api import create_app
from analyzer.console.browser import launch

OUT = Path(__file__).resolve().parent / "screenshots"
BUDGETS = Path("deploy/budgets/budgets.yaml")  # the demo agents' budgets (make screenshots runs at the top)
WIDTH, HEIGHT = 1440, 1000


def most_expensive_task(data: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "tasks", "--top", "1", "--format", "json", "--data", str(data)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)[0]["task_id"]


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("demo-data"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--budgets", type=Path, default=BUDGETS)
    args = parser.parse_args(argv)
    task = most_expensive_task(args.data)
    # port 0: the kernel picks a free port as it binds; read back once started
    app = create_app(args.data, budgets_file=args.budgets)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise SystemExit("the console did not start within 30 s")
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    pages = {
        "overview": "/?every=hour",
        "tasks": "/tasks",
        "task": f"/tasks/{task[:16]}",
        "agents": "/agents",
        "gpu": "/gpu",
        "prices": "/prices",
        "budgets": "/budgets",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            for name, path in pages.items():
                if name == "task":  # with one call's attributes open
                    page.goto(base + path)
                    link = page.locator("a.span-link").first.get_attribute("href")
                    path = f"{path}{link}"
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                for chart in page.locator("div.chart").all():
                    chart.locator(".main-svg").first.wait_for()
                target = args.out / f"{name}.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"{target} ({base}{path})")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
