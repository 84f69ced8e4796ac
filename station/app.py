"""The inspection station's web app (FastAPI on uvicorn): pages for officers' phones and
experts, and the same as a JSON API for scripts (OpenAPI page at /docs).

Every request needs a valid session cookie (web login) or ``Authorization: Bearer TOKEN``;
requests that change something with a session cookie also need the session's CSRF token
(``X-CSRF-Token`` header or ``csrf`` form field). Every action is written to the audit log.
"""

from __future__ import annotations

import hmac
import json
import secrets
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from longteng.station import pages
from longteng.station.accounts import SESSION_SECONDS, Authenticator, Caller
from longteng.station.report import case_report, report_html, report_pdf
from longteng.station.service import Station, StationConfig, StationError

SESSION_COOKIE = "longteng_session"  # noqa: S105 - a cookie name, not a secret
LOGIN_CSRF_COOKIE = "longteng_login_csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def create_app(config: StationConfig) -> FastAPI:
    station = Station(config)
    auth = Authenticator(station.db)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        station.start()
        yield

    # The interactive /docs page loads its scripts from a CDN, which a site network may not
    # reach: the schema is served as JSON, and README documents the API.
    app = FastAPI(title="longteng inspection station", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/api/v1/openapi.json")
    app.state.station = station

    def remote(request: Request) -> str:
        return request.client.host if request.client else ""

    def caller(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            user = auth.user_by_token(header[7:].strip())
            if user is None:
                raise StationError(401, "invalid API token")
            return Caller(user, None)
        cookie = request.cookies.get(SESSION_COOKIE)
        found = auth.session(cookie) if cookie else None
        if found is None:
            raise StationError(401, "log in first (or send Authorization: Bearer TOKEN)")
        user, csrf = found
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not (sent and hmac.compare_digest(sent, csrf)):
                raise StationError(403, "missing or wrong CSRF token")
        return Caller(user, csrf)

    @app.exception_handler(StationError)
    async def station_error(request: Request, exc: StationError) -> Response:
        if exc.status == 401 and "text/html" in request.headers.get("accept", "") and request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    # --- the API ------------------------------------------------------------------------------

    @app.post("/api/v1/cases", status_code=201)
    async def create_case(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        body = await request.body()
        fields = {}
        if body.strip():
            try:
                fields = json.loads(body)
            except ValueError:
                raise StationError(422, "the body must be a JSON object") from None
            if not isinstance(fields, dict):
                raise StationError(422, "the body must be a JSON object")
        case = station.create_case(who.user, fields)
        station.db.audit(who.user, "case.create", case["id"], remote(request))
        return case

    @app.get("/api/v1/cases")
    def list_cases(who: Caller = Depends(caller)) -> list[dict[str, Any]]:
        return station.cases(who.user)

    @app.get("/api/v1/cases/{case_id}")
    def get_case(case_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        case = station.case(who.user, case_id)
        station.db.audit(who.user, "case.read", case_id, remote(request))
        return case

    @app.post("/api/v1/cases/{case_id}/photos", status_code=201)
    def add_photo(case_id: str, request: Request, photo: UploadFile = File(...), item: str | None = Form(None),
                  who: Caller = Depends(caller)) -> Response:
        fields = station.add_photo(who.user, case_id, photo.file, photo.filename or "photo", item)
        station.db.audit(who.user, "photo.add", f"{case_id}/{fields['photo_id']}", remote(request))
        status = 422 if fields.get("error_reason") else 201
        return JSONResponse(fields, status_code=status)

    @app.get("/api/v1/photos/{photo_id}/image")
    def photo_image(photo_id: int, who: Caller = Depends(caller)) -> FileResponse:
        return FileResponse(station.photo_file(who.user, photo_id, "image"), media_type="image/jpeg")

    @app.get("/api/v1/photos/{photo_id}/heatmap")
    def photo_heatmap(photo_id: int, who: Caller = Depends(caller)) -> FileResponse:
        return FileResponse(station.photo_file(who.user, photo_id, "heatmap"), media_type="image/jpeg")

    @app.get("/api/v1/review/queue")
    def review_queue(who: Caller = Depends(caller)) -> list[dict[str, Any]]:
        return station.review_queue(who.user)

    @app.post("/api/v1/photos/{photo_id}/review")
    async def review(photo_id: int, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise StationError(422, "the body must be JSON: {\"decision\": ..., \"note\": ...}") from None
        if not isinstance(body, dict):
            raise StationError(422, "the body must be a JSON object")
        fields = station.review(who.user, photo_id, body.get("decision", ""), body.get("note") or "")
        station.db.audit(who.user, f"review.{fields['review']['decision']}", str(photo_id), remote(request))
        return fields

    @app.get("/api/v1/users")
    def users(who: Caller = Depends(caller)) -> list[dict[str, Any]]:
        return station.users(who.user)

    @app.post("/api/v1/users", status_code=201)
    async def create_user(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Admins: {"name", "role", "password"} -> the account and its API token (shown once)."""
        try:
            body = await request.json()
        except ValueError:
            raise StationError(422, 'the body must be JSON: {"name": ..., "role": ..., "password": ...}') from None
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("name", "role", "password")):
            raise StationError(422, 'the body must be JSON: {"name": ..., "role": ..., "password": ...}')
        created, token = station.add_user(who.user, body["name"], body["role"], body["password"])
        station.db.audit(who.user, "user.add", f"{created.name} ({created.role})", remote(request))
        return {"id": created.id, "name": created.name, "role": created.role, "token": token}

    @app.delete("/api/v1/users/{name}")
    def delete_user(name: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        station.remove_user(who.user, name)
        station.db.audit(who.user, "user.remove", name, remote(request))
        return {"removed": name}

    # --- evidence reports -----------------------------------------------------------------------

    @app.get("/cases/{case_id}/report", response_class=HTMLResponse)
    def report(case_id: str, request: Request, who: Caller = Depends(caller)) -> str:
        station.db.audit(who.user, "report.html", case_id, remote(request))
        return report_html(case_report(station, who.user, case_id))

    @app.get("/cases/{case_id}/report.json")
    def report_json(case_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        return case_report(station, who.user, case_id)

    @app.get("/cases/{case_id}/report.pdf")
    def report_as_pdf(case_id: str, request: Request, who: Caller = Depends(caller)) -> Response:
        station.db.audit(who.user, "report.pdf", case_id, remote(request))
        data = report_pdf(station, case_report(station, who.user, case_id))
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="case-{case_id}.pdf"'})

    # --- pages ----------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, failed: int = 0) -> Response:
        token = secrets.token_urlsafe(16)
        response = HTMLResponse(pages.login(token, failed=bool(failed)))
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.post("/login")
    def login(request: Request, name: str = Form(...), password: str = Form(...), csrf: str = Form("")) -> Response:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not (csrf and expected and hmac.compare_digest(csrf, expected)):
            raise StationError(403, "missing or wrong CSRF token (reload the login page)")
        where = remote(request)
        if not auth.login_allowed(where, name):
            station.db.audit(name, "login.throttled", "", where)
            raise StationError(429, "too many failed logins; wait a few minutes")
        user = auth.login(where, name, password)
        if user is None:
            station.db.audit(name, "login.failed", "", where)
            return RedirectResponse("/login?failed=1", status_code=303)
        token, _ = auth.open_session(user)
        station.db.audit(user, "login", "", where)
        response = RedirectResponse("/review" if user.role == "expert" else "/", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", max_age=SESSION_SECONDS,
                            secure=request.url.scheme == "https")
        return response

    @app.post("/logout")
    def logout(request: Request, who: Caller = Depends(caller)) -> Response:
        auth.close_session(request.cookies.get(SESSION_COOKIE, ""))
        station.db.audit(who.user, "logout", "", remote(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(who: Caller = Depends(caller)) -> str:
        return pages.home(who.user, who.csrf or "", station.cases(who.user))

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    def case_page(case_id: str, who: Caller = Depends(caller)) -> str:
        return pages.case(who.user, who.csrf or "", station.case(who.user, case_id))

    @app.get("/review", response_class=HTMLResponse)
    def review_page(who: Caller = Depends(caller)) -> str:
        return pages.review(who.user, who.csrf or "", station.review_queue(who.user))

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(who: Caller = Depends(caller)) -> str:
        return pages.admin(who.user, who.csrf or "", station.users(who.user))

    @app.get("/static/station.js")
    def script() -> Response:
        return Response(pages.SCRIPT, media_type="text/javascript")

    return app


def serve(config: StationConfig, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


__all__ = ["create_app", "serve", "StationConfig"]
