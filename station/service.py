"""What the station does, apart from HTTP: cases, photos (stored by content hash), verdicts,
reviews and the permission rules. The web app (``longteng.station.app``) only translates
requests into these calls and their typed errors into status codes."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from longteng.imageio import DEFAULT_MAX_PIXELS, suffix_for_header
from longteng.errors import ConfigError
from longteng.station import accounts
from longteng.station.db import DECISIONS, Database, User, now
from longteng.station.scoring import Scorer, ScoringOptions

DEFAULT_ITEM = "item-1"
MAX_TEXT = 200  # characters of a case name, container number, item name or note


class StationError(Exception):
    """A request the station refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class StationConfig:
    model: Path
    data: Path
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 8
    max_wait_s: float = 0.01


class Station:
    def __init__(self, config: StationConfig) -> None:
        self.config = config
        self.db = Database(config.data)
        self.photo_dir = self.db.dir / "photos"
        self.heatmap_dir = self.db.dir / "heatmaps"
        self.scorer = Scorer(config.model, self.heatmap_dir, ScoringOptions(
            batch_size=config.batch_size, max_wait_s=config.max_wait_s, max_pixels=config.max_pixels,
        ))
        self._scoring_pending = threading.Thread(target=self.score_pending, name="longteng-pending", daemon=True)

    def start(self) -> None:
        """Score, in the background, photos accepted by an earlier run that died before their verdict."""
        self._scoring_pending.start()

    def score_pending(self) -> int:
        done = 0
        for row in self.db.pending_photos():
            self._score(row["id"], self.photo_dir / row["stored"])
            done += 1
        return done

    # --- cases ------------------------------------------------------------------------------

    def create_case(self, user: User, fields: dict[str, Any]) -> dict[str, Any]:
        if user.role not in ("officer", "admin"):
            raise StationError(403, "only officers open cases")
        values = {key: _text(fields.get(key), key) for key in ("name", "container", "notes")}
        unknown = sorted(set(fields) - set(values))
        if unknown:
            raise StationError(422, f"unknown case field(s): {', '.join(unknown)}; allowed: name, container, notes")
        case_id = secrets.token_hex(8)
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO cases (id, name, container, notes, officer_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (case_id, values["name"], values["container"], values["notes"], user.id, now()),
            )
        return self.case(user, case_id)

    def cases(self, user: User) -> list[dict[str, Any]]:
        rows = (self.db.query("SELECT * FROM cases WHERE officer_id = ? ORDER BY created_at DESC", user.id)
                if user.role == "officer" else self.db.query("SELECT * FROM cases ORDER BY created_at DESC"))
        return [self._case_fields(row) for row in rows]

    def case_row(self, user: User, case_id: str) -> sqlite3.Row:
        row = self.db.one("SELECT * FROM cases WHERE id = ?", case_id)
        if row is None:
            raise StationError(404, f"no case {case_id!r}")
        if user.role == "officer" and row["officer_id"] != user.id:
            raise StationError(403, "this case belongs to another officer")
        return row

    def case(self, user: User, case_id: str) -> dict[str, Any]:
        row = self.case_row(user, case_id)
        photos = [self.photo_fields(p) for p in self.db.query("SELECT * FROM photos WHERE case_id = ? ORDER BY id", case_id)]
        items: dict[str, list[dict[str, Any]]] = {}
        for photo in photos:
            items.setdefault(photo["item"], []).append(photo)
        return {**self._case_fields(row), "items": [
            {"item": name, "verdict": _item_verdict(members), "photos": members} for name, members in items.items()
        ]}

    def _case_fields(self, row: sqlite3.Row) -> dict[str, Any]:
        officer = self.db.one("SELECT name FROM users WHERE id = ?", row["officer_id"])
        return {"id": row["id"], "name": row["name"], "container": row["container"], "notes": row["notes"],
                "officer": officer["name"] if officer else None, "created_at": row["created_at"]}

    # --- photos -----------------------------------------------------------------------------

    def add_photo(self, user: User, case_id: str, upload: BinaryIO, filename: str, item: str | None) -> dict[str, Any]:
        case = self.case_row(user, case_id)
        if user.role == "expert" or (user.role == "officer" and case["officer_id"] != user.id):
            raise StationError(403, "only the case's officer adds photos")
        item = _text(item, "item") or DEFAULT_ITEM
        stored, digest, size = self._store(upload)
        with self.db.transaction() as connection:
            existing = connection.execute(
                "SELECT id FROM photos WHERE case_id = ? AND item = ? AND sha256 = ?", (case_id, item, digest)
            ).fetchone()
            if existing is None:
                cursor = connection.execute(
                    "INSERT INTO photos (case_id, item, sha256, stored, filename, size, officer_id, uploaded_at, status) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                    (case_id, item, digest, stored, _text(filename, "filename") or "photo", size, user.id, now()),
                )
                photo_id = int(cursor.lastrowid)
            else:
                photo_id = int(existing["id"])  # the same photo again (a retried upload): one row
        row = self.db.one("SELECT * FROM photos WHERE id = ?", photo_id)
        if row["status"] == "pending":
            self._score(photo_id, self.photo_dir / stored)
            row = self.db.one("SELECT * FROM photos WHERE id = ?", photo_id)
        return self.photo_fields(row)

    def _store(self, upload: BinaryIO) -> tuple[str, str, int]:
        """Copy the upload to photos/<sha256[:2]>/<sha256>, fsynced, within the byte limit."""
        limit = self.config.max_upload_bytes
        digest = hashlib.sha256()
        temporary = self.photo_dir / f"upload-{secrets.token_hex(8)}.tmp"
        size = 0
        head = b""
        try:
            with open(temporary, "wb") as handle:
                while chunk := upload.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise StationError(413, f"photo larger than the station's limit of {limit // (1024 * 1024)} MB")
                    if len(head) < 16:
                        head += chunk[:16]
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if size == 0:
                raise StationError(422, "the photo is empty (0 bytes)")
            name = digest.hexdigest()
            folder = self.photo_dir / name[:2]
            folder.mkdir(exist_ok=True)
            # By content: the loader picks the HEIF opener by extension, and a name can lie.
            stored = f"{name[:2]}/{name}{suffix_for_header(head) or '.bin'}"
            os.replace(temporary, self.photo_dir / stored)
            _fsync_dir(folder)
        finally:
            temporary.unlink(missing_ok=True)
        return stored, name, size

    def _score(self, photo_id: int, path: Path) -> None:
        record, heatmap = self.scorer.score(path)
        self.db.set_result(photo_id, "error" if record.get("error_reason") else "scored", record, heatmap)

    def photo_row(self, user: User, photo_id: int) -> sqlite3.Row:
        row = self.db.one("SELECT * FROM photos WHERE id = ?", photo_id)
        if row is None:
            raise StationError(404, f"no photo {photo_id}")
        self.case_row(user, row["case_id"])  # the permission rule of its case
        return row

    def photo_fields(self, row: sqlite3.Row) -> dict[str, Any]:
        result = json.loads(row["result"]) if row["result"] else {}
        review = self.db.one(
            "SELECT reviews.*, users.name AS expert FROM reviews JOIN users ON users.id = reviews.expert_id "
            "WHERE photo_id = ? ORDER BY reviews.id DESC LIMIT 1", row["id"],
        )
        return {
            **{key: value for key, value in result.items() if key not in ("path", "explain", "kind")},
            "photo_id": row["id"], "case_id": row["case_id"], "item": row["item"], "filename": row["filename"],
            "sha256": row["sha256"], "size": row["size"], "uploaded_at": row["uploaded_at"], "status": row["status"],
            "image_url": f"/api/v1/photos/{row['id']}/image",
            "heatmap_url": f"/api/v1/photos/{row['id']}/heatmap" if row["heatmap"] else None,
            "review": None if review is None else {
                "decision": review["decision"], "note": review["note"], "expert": review["expert"], "at": review["created_at"],
            },
        }

    def photo_file(self, user: User, photo_id: int, kind: str) -> Path:
        row = self.photo_row(user, photo_id)
        if kind == "heatmap":
            if not row["heatmap"]:
                raise StationError(404, "this photo has no heatmap")
            return self.heatmap_dir / row["heatmap"]
        return self.photo_dir / row["stored"]

    # --- review -----------------------------------------------------------------------------

    def review_queue(self, user: User) -> list[dict[str, Any]]:
        _require(user, "expert")
        rows = self.db.query(
            "SELECT * FROM photos WHERE status = 'scored' AND json_extract(result, '$.verdict') = 'REFER' "
            "AND id NOT IN (SELECT photo_id FROM reviews) ORDER BY id"
        )
        return [self.photo_fields(row) for row in rows]

    def review(self, user: User, photo_id: int, decision: str, note: str) -> dict[str, Any]:
        _require(user, "expert")
        row = self.photo_row(user, photo_id)
        if decision not in DECISIONS:
            raise StationError(422, f"decision {decision!r} unknown; allowed: {', '.join(DECISIONS)}")
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO reviews (photo_id, expert_id, decision, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (photo_id, user.id, decision, _text(note, "note") or "", now()),
            )
        return self.photo_fields(self.db.one("SELECT * FROM photos WHERE id = ?", row["id"]))

    def users(self, user: User) -> list[dict[str, Any]]:
        _require(user, "admin")
        return [dict(id=r["id"], name=r["name"], role=r["role"], created_at=r["created_at"])
                for r in self.db.query("SELECT * FROM users ORDER BY id")]

    def add_user(self, user: User, name: str, role: str, password: str) -> tuple[User, str]:
        _require(user, "admin")
        try:
            return accounts.add_user(self.db, name, role, password)
        except ConfigError as exc:
            raise StationError(422, str(exc)) from None

    def remove_user(self, user: User, name: str) -> None:
        _require(user, "admin")
        if name == user.name:
            raise StationError(422, "an admin cannot remove their own account")
        try:
            accounts.remove_user(self.db, name)
        except ConfigError as exc:
            raise StationError(404, str(exc)) from None


def _require(user: User, role: str) -> None:
    if user.role != role and user.role != "admin":
        raise StationError(403, f"needs the {role} role")


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StationError(422, f"{field}: must be text")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise StationError(422, f"{field}: at most {MAX_TEXT} characters")
    return value or None


def _item_verdict(photos: list[dict[str, Any]]) -> str | None:
    """An item is as suspicious as its most suspicious photo (the expert's word wins)."""
    verdicts = [(p["review"] or {}).get("decision") or p.get("verdict") for p in photos]
    for verdict in ("COUNTERFEIT", "REFER", "GENUINE"):
        if verdict in verdicts:
            return verdict
    return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
