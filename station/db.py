"""The station's state: one SQLite database (WAL) beside the photos it names.

Every write is one short transaction, so a ``kill -9`` leaves either the whole change or none
of it. A photo row is inserted (status ``pending``) after its file is on disk and before the
answer is sent; scoring then sets its result. At start the station scores what is pending.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from longteng.errors import ConfigError

ROLES = ("officer", "expert", "admin")
DECISIONS = ("GENUINE", "COUNTERFEIT")
DB_NAME = "station.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, role TEXT NOT NULL,
    password_hash TEXT NOT NULL, token_hash TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL, expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY, name TEXT, container TEXT, notes TEXT,
    officer_id INTEGER NOT NULL REFERENCES users(id), created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases(id), item TEXT NOT NULL,
    sha256 TEXT NOT NULL, stored TEXT NOT NULL, filename TEXT NOT NULL, size INTEGER NOT NULL,
    officer_id INTEGER NOT NULL REFERENCES users(id), uploaded_at TEXT NOT NULL,
    status TEXT NOT NULL, result TEXT, heatmap TEXT, scored_at TEXT,
    UNIQUE (case_id, item, sha256)
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY, photo_id INTEGER NOT NULL REFERENCES photos(id),
    expert_id INTEGER NOT NULL REFERENCES users(id), decision TEXT NOT NULL, note TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, user TEXT, action TEXT NOT NULL,
    target TEXT, remote TEXT
);
"""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str


class Database:
    """Thread-safe access (one connection per thread) to DIR/station.sqlite3."""

    def __init__(self, data_dir: Path | str) -> None:
        self.dir = Path(data_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "photos").mkdir(exist_ok=True)
            (self.dir / "heatmaps").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--data {self.dir}: cannot create the station folder ({exc.strerror or exc})") from None
        self.path = self.dir / DB_NAME
        self._local = threading.local()
        try:
            self.connection().executescript(_SCHEMA)  # executescript commits by itself
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: not a usable station database ({exc})") from None

    def connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise ConfigError(f"{self.path}: cannot open the station database ({exc})") from None
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # an answered upload survives a power cut
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return self.connection().execute(sql, args).fetchall()

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        return self.connection().execute(sql, args).fetchone()

    # --- audit ------------------------------------------------------------------------------

    def audit(self, user: User | str | None, action: str, target: str = "", remote: str = "") -> None:
        name = user.name if isinstance(user, User) else user
        with self.transaction() as db:
            db.execute("INSERT INTO audit (at, user, action, target, remote) VALUES (?, ?, ?, ?, ?)",
                       (now(), name, action, target, remote))

    # --- photos -----------------------------------------------------------------------------

    def pending_photos(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM photos WHERE status = 'pending' ORDER BY id")

    def set_result(self, photo_id: int, status: str, result: dict[str, Any], heatmap: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE photos SET status = ?, result = ?, heatmap = ?, scored_at = ? WHERE id = ?",
                       (status, json.dumps(result, sort_keys=True), heatmap, now(), photo_id))


def user_of(row: sqlite3.Row) -> User:
    return User(row["id"], row["name"], row["role"])
