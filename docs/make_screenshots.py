"""Regenerate docs/station-phone.png and docs/station-review.png: a real station, a real
headless Chromium (Debian's) in a 390 px phone viewport, generated photos.

    .venv/bin/python docs/make_screenshots.py --model bench/results/quality_bar/medium-1600-run/model.onnx
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse"


def main() -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    from longteng.station.accounts import add_user
    from longteng.station.db import Database

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/model.onnx")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "longteng", "data", "synth", str(root / "photos"), "--images", "12",
                        "--size", "1600x1200", "--seed", "5", "--workers", "2"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        db = Database(root / "station")
        add_user(db, "anna", "officer", PASSWORD)
        add_user(db, "erin", "expert", PASSWORD)
        server = subprocess.Popen([sys.executable, "-m", "longteng", "serve", "--model", str(args.model), "--data",
                                   str(root / "station"), "--port", "8765"], cwd=ROOT, start_new_session=True)
        try:
            for _ in range(300):
                try:
                    httpx.get("http://127.0.0.1:8765/login")
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            rows = [r for r in csv.DictReader(open(root / "photos/manifest.csv")) if r["product"] == "smartphone"][:3]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
                page.goto("http://127.0.0.1:8765/")
                page.fill("#name", "anna")
                page.fill("#password", PASSWORD)
                page.click("#login")
                page.fill("#case-name", "Box 14, container MSKU1234565")
                page.click("#new-case")
                page.wait_for_url(re.compile(r".*/cases/.*"))
                page.fill("#item", "phone 1")
                page.set_input_files("#photos", [str(root / "photos" / r["path"]) for r in rows])
                page.wait_for_function("document.querySelectorAll('#results [data-verdict]').length >= 3", timeout=120_000)
                page.screenshot(path=str(ROOT / "docs/station-phone.png"))
                expert = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
                expert.goto("http://127.0.0.1:8765/login")
                expert.fill("#name", "erin")
                expert.fill("#password", PASSWORD)
                expert.click("#login")
                expert.wait_for_url(re.compile(r".*/review"))
                expert.screenshot(path=str(ROOT / "docs/station-review.png"))
                browser.close()
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


if __name__ == "__main__":
    main()
