"""Benchmark of the inspection station (`longteng serve`), a real server process over HTTP.

Not a test. Synthesizes photos with `longteng data synth` (fictional items) into a temporary
folder, starts the station, and measures:

* **latency, warm**: one photo at a time from upload to verdict, p50/p95 over N photos, for
  640x480 photos (bar: p95 <= 400 ms) and 4000x3000 JPEGs (bar: p95 <= 1 s);
* **load**: 8 concurrent clients uploading 200 640x480 photos in all: throughput against
  `longteng score` on the same photos in the same run (bar: >= 0.8 of it), errors, lost
  photos, p95 latency;
* **kill -9 under load, restart**: every photo that got an answer is in the database with
  the same verdict after the restart, none is stored twice, none is left pending.

Usage (prints a Markdown table, writes JSON to bench/results/):

    .venv/bin/python bench/bench_station.py --model runs/demo/model.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LONGTENG = [sys.executable, "-m", "longteng"]
PASSWORD = "bench password"


def synth(out: Path, images: int, size: str, seed: int) -> list[Path]:
    subprocess.run([*LONGTENG, "data", "synth", str(out), "--images", str(images), "--size", size, "--seed", str(seed),
                    "--workers", "2"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return sorted(out.rglob("*.jpg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: Path, data: Path, port: int) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen([*LONGTENG, "serve", "--model", str(model), "--data", str(data), "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the station did not start")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def upload(client, base: str, case_id: str, path: Path) -> tuple[float, dict | None]:
    started = time.perf_counter()
    response = client.post(f"{base}/api/v1/cases/{case_id}/photos", timeout=120,
                           files={"photo": (path.name, path.read_bytes(), "image/jpeg")})
    elapsed = time.perf_counter() - started
    return elapsed, response.json() if response.status_code == 201 else None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/model.onnx")
    parser.add_argument("--latency-photos", type=int, default=20)
    parser.add_argument("--load-photos", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    from longteng.station.accounts import add_user
    from longteng.station.db import Database

    results: dict = {"model": str(args.model)}
    with tempfile.TemporaryDirectory(prefix="bench-station-") as tmp:
        tmp = Path(tmp)
        small = synth(tmp / "small", max(args.load_photos, args.latency_photos), "640x480", 71)
        phone = synth(tmp / "phone", args.latency_photos, "4000x3000", 72)
        data = tmp / "station"
        token = add_user(Database(data), "bench", "officer", PASSWORD)[1]
        headers = {"Authorization": f"Bearer {token}"}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start(args.model, data, port)
        try:
            with httpx.Client(headers=headers) as client:
                case_id = client.post(f"{base}/api/v1/cases", json={"name": "bench"}).json()["id"]
                upload(client, base, case_id, small[-1])  # warm-up: first inference, first heatmap
                for name, photos in (("640x480", small[: args.latency_photos]), ("4000x3000", phone)):
                    times = [upload(client, base, case_id, p)[0] for p in photos]
                    results[f"latency_{name}"] = {"p50_ms": 1000 * percentile(times, 50), "p95_ms": 1000 * percentile(times, 95),
                                                  "n": len(times)}

            # Load: a fresh case, every client its share of the photos.
            load = small[: args.load_photos]
            with httpx.Client(headers=headers) as client:
                load_case = client.post(f"{base}/api/v1/cases", json={"name": "load"}).json()["id"]
            latencies: list[float] = []
            errors: list[str] = []

            def run_client(paths: list[Path]) -> None:
                with httpx.Client(headers=headers) as client:
                    for path in paths:
                        try:
                            elapsed, answer = upload(client, base, load_case, path)
                        except httpx.HTTPError as exc:
                            errors.append(str(exc))
                            continue
                        latencies.append(elapsed)
                        if answer is None:
                            errors.append(path.name)

            started = time.perf_counter()
            threads = [threading.Thread(target=run_client, args=(load[i :: args.clients],)) for i in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            station_seconds = time.perf_counter() - started
        finally:
            stop(server)
        stored = sqlite3.connect(data / "station.sqlite3").execute(
            "SELECT COUNT(*) FROM photos WHERE case_id = ? AND status = 'scored'", (load_case,)).fetchone()[0]

        listing = tmp / "load.txt"
        listing.write_text("".join(f"{p}\n" for p in load))
        started = time.perf_counter()
        subprocess.run([*LONGTENG, "score", "--from-list", str(listing), "--model", str(args.model), "--out",
                        str(tmp / "score.jsonl"), "--no-progress"], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        score_seconds = time.perf_counter() - started
        results["load"] = {
            "photos": len(load), "clients": args.clients, "errors": len(errors), "stored_and_scored": stored,
            "station_images_per_s": len(load) / station_seconds, "score_images_per_s": len(load) / score_seconds,
            "ratio_to_score": score_seconds / station_seconds, "p95_ms": 1000 * percentile(latencies, 95),
        }

        # kill -9 under load, then restart.
        data2 = tmp / "station2"
        token2 = add_user(Database(data2), "bench", "officer", PASSWORD)[1]
        headers2 = {"Authorization": f"Bearer {token2}"}
        server = start(args.model, data2, port)
        with httpx.Client(headers=headers2) as client:
            crash_case = client.post(f"{base}/api/v1/cases", json={}).json()["id"]
        answered: list[dict] = []

        def crash_client(paths: list[Path]) -> None:
            with httpx.Client(headers=headers2) as client:
                for path in paths:
                    try:
                        _, answer = upload(client, base, crash_case, path)
                    except httpx.HTTPError:
                        return
                    if answer is not None:
                        answered.append(answer)

        threads = [threading.Thread(target=crash_client, args=(load[i :: args.clients],)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        while len(answered) < len(load) // 3:
            time.sleep(0.01)
        stop(server)
        for thread in threads:
            thread.join()
        server = start(args.model, data2, port)
        try:
            deadline = time.monotonic() + 300
            while Database(data2).pending_photos() and time.monotonic() < deadline:
                time.sleep(0.2)
            with httpx.Client(headers=headers2) as client:
                case = client.get(f"{base}/api/v1/cases/{crash_case}").json()
        finally:
            stop(server)
        after = {p["photo_id"]: p for item in case["items"] for p in item["photos"]}
        results["kill9"] = {
            "answered_before_kill": len(answered),
            "answered_missing_after_restart": sum(a["photo_id"] not in after for a in answered),
            "verdict_changed": sum(after.get(a["photo_id"], {}).get("verdict") != a["verdict"] for a in answered),
            "stored_photos": len(after), "duplicated": len(after) - len({p["sha256"] for p in after.values()}),
            "left_pending": sum(p["status"] == "pending" for p in after.values()),
        }

    out = ROOT / "bench/results" / f"station-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print("| measure | value | bar |\n|---|---|---|")
    for name, bar in (("640x480", 400), ("4000x3000", 1000)):
        r = results[f"latency_{name}"]
        print(f"| upload to verdict {name}, warm, p50 / p95 | {r['p50_ms']:.0f} / {r['p95_ms']:.0f} ms | p95 <= {bar} ms |")
    r = results["load"]
    print(f"| {r['clients']} clients, {r['photos']} photos: station / score | {r['station_images_per_s']:.1f} / "
          f"{r['score_images_per_s']:.1f} img/s = {r['ratio_to_score']:.2f} | >= 0.8 |")
    print(f"| load: errors, stored, p95 | {r['errors']}, {r['stored_and_scored']}/{r['photos']}, {r['p95_ms']:.0f} ms | 0 errors, all stored |")
    k = results["kill9"]
    print(f"| kill -9 under load, restart | {k['answered_before_kill']} answered; missing {k['answered_missing_after_restart']}, "
          f"changed {k['verdict_changed']}, duplicated {k['duplicated']}, pending {k['left_pending']} | all 0 |")
    print(f"(json: {out})")


if __name__ == "__main__":
    main()
