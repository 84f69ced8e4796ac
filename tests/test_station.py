"""The inspection station: accounts and permissions, CSRF, limits, bad photos, the same verdict
as `predict --json`, review and export-dataset, report digests, a restart after kill -9 with a
real server process, and a real browser on the phone page."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the station needs the serve extra")
from fastapi.testclient import TestClient  # noqa: E402

from longteng.cli import exitcodes  # noqa: E402
from longteng.cli.main import main  # noqa: E402
from longteng.station.accounts import add_user  # noqa: E402
from longteng.station.app import LOGIN_CSRF_COOKIE, create_app  # noqa: E402
from longteng.station.db import Database  # noqa: E402
from longteng.station.service import StationConfig  # noqa: E402
from test_score import picture, png_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "runs" / "test-artifacts"
PASSWORD = "correct horse"


@pytest.fixture
def station(tmp_path, tiny_onnx_model):
    data = tmp_path / "station"
    db = Database(data)
    tokens = {name: add_user(db, name, role, PASSWORD)[1]
              for name, role in (("anna", "officer"), ("ben", "officer"), ("erin", "expert"), ("root", "admin"))}
    app = create_app(StationConfig(model=tiny_onnx_model, data=data, max_upload_bytes=200_000, max_pixels=1_000_000))
    with TestClient(app) as client:
        client.tokens = tokens
        client.data = data
        yield client


def bearer(client, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.tokens[name]}"}


def photo_file(tmp_path: Path, seed: int = 1, size=(96, 72)) -> Path:
    path = tmp_path / f"photo{seed}.jpg"
    picture(seed, size).save(path, quality=92)
    return path


def new_case(client, user: str = "anna", **fields) -> str:
    response = client.post("/api/v1/cases", json=fields, headers=bearer(client, user))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(client, case_id: str, path: Path, name: str = "anna", item: str | None = None):
    data = {} if item is None else {"item": item}
    with open(path, "rb") as handle:
        return client.post(f"/api/v1/cases/{case_id}/photos", files={"photo": (path.name, handle, "image/jpeg")},
                           data=data, headers=bearer(client, name))


def test_every_route_refuses_a_request_without_credentials(station, tmp_path):
    case_id = new_case(station)
    photo_id = upload(station, case_id, photo_file(tmp_path)).json()["photo_id"]
    for method, url in [("get", "/api/v1/cases"), ("post", "/api/v1/cases"), ("get", f"/api/v1/cases/{case_id}"),
                        ("post", f"/api/v1/cases/{case_id}/photos"), ("get", f"/api/v1/photos/{photo_id}/image"),
                        ("get", f"/api/v1/photos/{photo_id}/heatmap"), ("get", "/api/v1/review/queue"),
                        ("post", f"/api/v1/photos/{photo_id}/review"), ("get", f"/cases/{case_id}/report"),
                        ("get", f"/cases/{case_id}/report.pdf"), ("get", f"/cases/{case_id}/report.json"),
                        ("get", "/api/v1/users"), ("post", "/api/v1/users"), ("delete", "/api/v1/users/anna"),
                        ("get", "/admin")]:
        for headers in ({}, {"Authorization": "Bearer 1.wrong"}, {"Authorization": "Bearer nonsense"}):
            assert getattr(station, method)(url, headers=headers).status_code == 401, (method, url, headers)


def test_the_verdict_is_predicts(station, tmp_path, tiny_onnx_model, capsys):
    photo = photo_file(tmp_path, 3)
    case_id = new_case(station, name="box 7", container="MSKU1234565")
    answer = upload(station, case_id, photo, item="phone 1")
    assert answer.status_code == 201
    assert main(["predict", str(photo), "--model", str(tiny_onnx_model), "--json"]) == exitcodes.OK
    expected = json.loads(capsys.readouterr().out.splitlines()[0])
    got = answer.json()
    for key in ("verdict", "product", "confidence", "counterfeit_score", "refer_reason", "unknown", "top_classes", "model_version"):
        assert got[key] == expected[key], key
    case = station.get(f"/api/v1/cases/{case_id}", headers=bearer(station, "anna")).json()
    assert case["name"] == "box 7" and case["container"] == "MSKU1234565"
    assert [i["item"] for i in case["items"]] == ["phone 1"] and case["items"][0]["photos"][0]["photo_id"] == got["photo_id"]
    assert station.get(got["heatmap_url"], headers=bearer(station, "anna")).content[:3] == b"\xff\xd8\xff"


def test_officers_see_only_their_own_cases(station, tmp_path):
    case_id = new_case(station, user="anna")
    assert station.get(f"/api/v1/cases/{case_id}", headers=bearer(station, "ben")).status_code == 403
    assert upload(station, case_id, photo_file(tmp_path), name="ben").status_code == 403
    assert [c["id"] for c in station.get("/api/v1/cases", headers=bearer(station, "ben")).json()] == []
    assert station.get(f"/api/v1/cases/{case_id}", headers=bearer(station, "erin")).status_code == 200
    assert station.post("/api/v1/cases", json={}, headers=bearer(station, "erin")).status_code == 403
    assert station.get("/api/v1/users", headers=bearer(station, "anna")).status_code == 403
    assert {u["name"] for u in station.get("/api/v1/users", headers=bearer(station, "root")).json()} == {"anna", "ben", "erin", "root"}


def _login(client, name: str, password: str = PASSWORD):
    page = client.get("/login")
    token = re.search(r'name=csrf value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"name": name, "password": password, "csrf": token}, follow_redirects=False)


def test_web_sessions_need_the_csrf_token(station):
    assert _login(station, "anna").status_code == 303
    home = station.get("/")
    csrf = re.search(r'data-csrf="([^"]+)"', home.text).group(1)
    assert station.post("/api/v1/cases", json={}).status_code == 403
    assert station.post("/api/v1/cases", json={}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert station.post("/api/v1/cases", json={}, headers={"X-CSRF-Token": csrf}).status_code == 201
    station.cookies.delete(LOGIN_CSRF_COOKIE)
    assert station.post("/login", data={"name": "anna", "password": PASSWORD, "csrf": "x"}).status_code == 403


def test_failed_logins_are_limited_and_audited(station):
    for _ in range(5):
        assert _login(station, "anna", "wrong password").headers["location"] == "/login?failed=1"
    assert _login(station, "anna", PASSWORD).status_code == 429
    actions = [r["action"] for r in Database(station.data).query("SELECT action FROM audit WHERE user = 'anna'")]
    assert actions.count("login.failed") == 5 and "login.throttled" in actions


def test_upload_limits_and_bad_photos_get_a_clear_answer(station, tmp_path):
    case_id = new_case(station)
    cases = {
        "notes.txt": (b"not a photo", 422, "not_an_image"),
        "cut.jpg": (photo_file(tmp_path, 4, (320, 240)).read_bytes()[:300], 422, "truncated"),
        "huge.png": (png_bytes(2000, 1000, b"\x00" * 64), 422, "too_large"),  # 2 MP > the station's 1 MP
        "empty.jpg": (b"", 422, None),
        "big.jpg": (os.urandom(300_000), 413, None),  # over the 200 kB limit
    }
    for name, (data, status, reason) in cases.items():
        response = station.post(f"/api/v1/cases/{case_id}/photos", files={"photo": (name, data, "image/jpeg")},
                                headers=bearer(station, "anna"))
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert body.get("error_reason") == reason if reason else body["error"], name
    assert not list((station.data / "photos").glob("*.tmp")), "refused uploads leave nothing behind"


def test_review_then_export_dataset_round_trip(station, tmp_path):
    case_id = new_case(station)
    photos = [upload(station, case_id, photo_file(tmp_path, seed)).json() for seed in (11, 12, 13)]
    queue = station.get("/api/v1/review/queue", headers=bearer(station, "erin")).json()
    referred = [p["photo_id"] for p in photos if p["verdict"] == "REFER"]
    assert [p["photo_id"] for p in queue] == referred
    assert station.get("/api/v1/review/queue", headers=bearer(station, "anna")).status_code == 403
    for photo, decision in zip(photos, ("COUNTERFEIT", "GENUINE", "COUNTERFEIT")):
        response = station.post(f"/api/v1/photos/{photo['photo_id']}/review", json={"decision": decision, "note": "checked"},
                                headers=bearer(station, "erin"))
        assert response.status_code == 200 and response.json()["review"]["decision"] == decision
    assert station.post(f"/api/v1/photos/{photos[0]['photo_id']}/review", json={"decision": "MAYBE"},
                        headers=bearer(station, "erin")).status_code == 422
    out = tmp_path / "reviewed"
    assert main(["station", "export-dataset", str(out), "--data", str(station.data)]) == exitcodes.OK
    assert main(["data", "check", str(out)]) in (exitcodes.OK, exitcodes.PARTIAL)
    from longteng.data.layout import scan_dataset

    records = scan_dataset(out)
    assert sorted(r.authenticity for r in records) == ["counterfeit", "counterfeit", "genuine"]
    assert {r.case_id for r in records} == {case_id} and all(r.extra["reviewed_by"] == "erin" for r in records)


def test_the_report_digest_changes_when_a_photo_changes(station, tmp_path):
    case_id = new_case(station)
    photo = upload(station, case_id, photo_file(tmp_path, 21)).json()
    headers = bearer(station, "anna")
    first = station.get(f"/cases/{case_id}/report.json", headers=headers).json()
    assert station.get(f"/cases/{case_id}/report.json", headers=headers).json()["digest"] == first["digest"]
    assert first["digest"] in station.get(f"/cases/{case_id}/report", headers=headers).text
    assert station.get(f"/cases/{case_id}/report.pdf", headers=headers).content.startswith(b"%PDF")
    stored = next((station.data / "photos").glob(f"*/{photo['sha256']}*"))
    stored.write_bytes(stored.read_bytes() + b"tampered")
    second = station.get(f"/cases/{case_id}/report.json", headers=headers).json()
    assert second["digest"] != first["digest"]
    assert second["content"]["items"][0]["photos"][0]["intact"] is False


# --- a real server process ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model: Path, data: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "longteng", "serve", "--model", str(model), "--data", str(data), "--port", str(port)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server did not start: {process.stderr.read().decode()}")


@pytest.mark.slow
def test_kill_9_then_restart_loses_no_answered_photo(tmp_path, tiny_onnx_model):
    import httpx

    data = tmp_path / "station"
    token = add_user(Database(data), "anna", "officer", PASSWORD)[1]
    headers = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    server = _start_server(tiny_onnx_model, data, port)
    base = f"http://127.0.0.1:{port}"
    case_id = httpx.post(f"{base}/api/v1/cases", json={}, headers=headers).json()["id"]
    answered: list[dict] = []
    photos = [photo_file(tmp_path, 100 + i) for i in range(24)]

    def client(paths: list[Path]) -> None:
        for path in paths:
            try:
                response = httpx.post(f"{base}/api/v1/cases/{case_id}/photos", headers=headers, timeout=30,
                                      files={"photo": (path.name, path.read_bytes(), "image/jpeg")})
            except httpx.HTTPError:
                return  # the server died under this request: no answer, no promise
            if response.status_code == 201:
                answered.append(response.json())

    threads = [threading.Thread(target=client, args=(photos[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    while len(answered) < 6:
        time.sleep(0.01)
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    for thread in threads:
        thread.join()
    assert 6 <= len(answered) < len(photos), "killed mid-load"
    server = _start_server(tiny_onnx_model, data, port)
    try:
        deadline = time.monotonic() + 60
        while Database(data).pending_photos() and time.monotonic() < deadline:
            time.sleep(0.1)
        case = httpx.get(f"{base}/api/v1/cases/{case_id}", headers=headers).json()
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    stored = {p["photo_id"]: p for item in case["items"] for p in item["photos"]}
    for photo in answered:
        assert stored[photo["photo_id"]]["verdict"] == photo["verdict"]
    assert all(p["status"] == "scored" for p in stored.values()), "photos accepted before the kill are scored at start"
    assert len({p["sha256"] for p in stored.values()}) == len(stored), "no photo stored twice"


# --- a real browser -------------------------------------------------------------------------------


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install installs it where apt-get can)")
def test_an_officer_on_a_phone_logs_in_opens_a_case_and_sees_the_verdict(tmp_path, tiny_onnx_model):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) drives the browser")
    data = tmp_path / "station"
    add_user(Database(data), "anna", "officer", PASSWORD)
    port = _free_port()
    server = _start_server(tiny_onnx_model, data, port)
    photo = photo_file(tmp_path, 31, (640, 480))
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#name", "anna")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.fill("#case-name", "container MSKU1234565")
            page.click("#new-case")
            page.wait_for_url(re.compile(r".*/cases/[0-9a-f]+$"))
            page.set_input_files("#photos", str(photo))
            verdict = page.wait_for_selector("#results [data-verdict]", timeout=60_000)
            assert verdict.get_attribute("data-verdict") in ("GENUINE", "COUNTERFEIT", "REFER")
            page.set_input_files("#photos", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"hello"}])
            error = page.wait_for_selector("#results [data-error]", timeout=60_000)
            assert error.get_attribute("data-error") == "not_an_image"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "station-phone.png"), full_page=True)
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_heatmaps_for_the_phone_page_are_at_most_1600_px(station, tmp_path):
    from PIL import Image

    from longteng.station.scoring import HEATMAP_SIDE

    case_id = new_case(station)
    wide = tmp_path / "wide.jpg"
    picture(41, (2000, 480)).save(wide, quality=40)  # under the fixture's 1 MP and 200 kB
    answer = upload(station, case_id, wide).json()
    heatmap = station.get(answer["heatmap_url"], headers=bearer(station, "anna"))
    import io

    assert Image.open(io.BytesIO(heatmap.content)).size == (HEATMAP_SIDE, 384)


def test_a_removed_account_is_locked_out_at_once(station):
    assert station.get("/api/v1/cases", headers=bearer(station, "ben")).status_code == 200  # token now cached
    assert main(["users", "remove", "ben", "--data", str(station.data)]) == exitcodes.OK
    assert station.get("/api/v1/cases", headers=bearer(station, "ben")).status_code == 401
    assert _login(station, "ben").headers["location"] == "/login?failed=1"


def test_photos_are_stored_under_the_extension_of_their_content(station, tmp_path):
    png = tmp_path / "named-like-a.jpg"
    picture(51).save(png, format="PNG")
    answer = upload(station, new_case(station), png).json()
    (stored,) = (station.data / "photos").glob(f"*/{answer['sha256']}*")
    assert stored.suffix == ".png" and answer["verdict"]


def test_admins_manage_accounts_through_the_api(station):
    admin = bearer(station, "root")
    created = station.post("/api/v1/users", json={"name": "omar", "role": "officer", "password": PASSWORD}, headers=admin)
    assert created.status_code == 201
    omar = {"Authorization": f"Bearer {created.json()['token']}"}
    assert station.post("/api/v1/cases", json={}, headers=omar).status_code == 201
    assert station.post("/api/v1/users", json={"name": "x", "role": "officer", "password": PASSWORD},
                        headers=bearer(station, "anna")).status_code == 403
    assert station.post("/api/v1/users", json={"name": "omar", "role": "officer", "password": PASSWORD},
                        headers=admin).status_code == 422  # exists
    assert station.post("/api/v1/users", json={"name": "weak", "role": "officer", "password": "short"},
                        headers=admin).status_code == 422
    assert station.get("/admin", headers=admin).status_code == 200
    assert station.get("/admin", headers=bearer(station, "erin")).status_code == 403
    assert station.delete("/api/v1/users/root", headers=admin).status_code == 422
    assert station.delete("/api/v1/users/omar", headers=admin).status_code == 200
    assert station.post("/api/v1/cases", json={}, headers=omar).status_code == 401
