"""Accounts, passwords, API tokens and web sessions.

Passwords and API tokens are stored only as scrypt hashes with their own random salt. A token
reads ``<user id>.<secret>``, so the one hash to check is found by id. Web sessions are 256-bit
random values: a SHA-256 of them is stored (nothing slower is needed to protect a value that
cannot be guessed), with the session's CSRF token and its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from longteng.errors import ConfigError
from longteng.station.db import ROLES, Database, User, now, user_of

# scrypt cost: about 50 ms and 16 MB per check on one core (RFC 7914's interactive setting).
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SESSION_SECONDS = 12 * 3600
MIN_PASSWORD_LENGTH = 8


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


def add_user(db: Database, name: str, role: str, password: str) -> tuple[User, str]:
    """Create an account; returns it and its API token (shown once, stored only hashed)."""
    if role not in ROLES:
        raise ConfigError(f"--role {role!r} unknown; allowed: {', '.join(ROLES)}")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"user name {name!r}: use letters, digits, '.', '-' or '_'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    secret = secrets.token_urlsafe(32)
    try:
        with db.transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO users (name, role, password_hash, token_hash, created_at) VALUES (?, ?, ?, '', ?)",
                (name, role, hash_secret(password), now()),
            )
            user_id = int(cursor.lastrowid)
            connection.execute("UPDATE users SET token_hash = ? WHERE id = ?", (hash_secret(secret), user_id))
    except sqlite3.IntegrityError:
        raise ConfigError(f"user {name!r} already exists") from None
    db.audit("cli", "user.add", f"{name} ({role})")
    return User(user_id, name, role), f"{user_id}.{secret}"


def remove_user(db: Database, name: str) -> None:
    """Lock an account out for good (the row stays: cases, photos and reviews name it)."""
    with db.transaction() as connection:
        row = connection.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ConfigError(f"no user {name!r}")
        connection.execute("UPDATE users SET password_hash = '!', token_hash = '!', role = 'removed' WHERE id = ?", (row["id"],))
        connection.execute("DELETE FROM sessions WHERE user_id = ?", (row["id"],))
    db.audit("cli", "user.remove", name)


class Authenticator:
    """Checks tokens, passwords and sessions; remembers tokens it verified (the slow hash once
    per token per server run) and limits failed logins."""

    def __init__(self, db: Database, max_failures: int = 5, window_seconds: float = 300.0) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window = window_seconds
        self._verified: dict[str, int] = {}  # sha256(token) -> user id
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def user_by_token(self, token: str) -> User | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        user_id = self._verified.get(key)
        if user_id is None:
            head, _, secret = token.partition(".")
            row = self.db.one("SELECT * FROM users WHERE id = ?", int(head)) if head.isdigit() else None
            if row is None or not secret or not verify_secret(secret, row["token_hash"]):
                return None
            with self._lock:
                self._verified[key] = row["id"]
            return user_of(row)
        row = self.db.one("SELECT * FROM users WHERE id = ? AND role != 'removed'", user_id)
        return None if row is None else user_of(row)

    def login_allowed(self, remote: str, name: str) -> bool:
        with self._lock:
            failures = self._failures[f"{remote}|{name}"]
            while failures and failures[0] < time.monotonic() - self.window:
                failures.popleft()
            return len(failures) < self.max_failures

    def login(self, remote: str, name: str, password: str) -> User | None:
        row = self.db.one("SELECT * FROM users WHERE name = ?", name)
        if row is not None and verify_secret(password, row["password_hash"]):
            return user_of(row)
        with self._lock:
            self._failures[f"{remote}|{name}"].append(time.monotonic())
        return None

    def open_session(self, user: User) -> tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with self.db.transaction() as connection:
            connection.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            connection.execute("INSERT INTO sessions (token_sha256, user_id, csrf, expires) VALUES (?, ?, ?, ?)",
                               (_sha256(token), user.id, csrf, time.time() + SESSION_SECONDS))
        return token, csrf

    def session(self, token: str) -> tuple[User, str] | None:
        row = self.db.one(
            "SELECT users.*, sessions.csrf AS csrf FROM sessions JOIN users ON users.id = sessions.user_id "
            "WHERE token_sha256 = ? AND expires > ?", _sha256(token), time.time(),
        )
        return None if row is None else (user_of(row), row["csrf"])

    def close_session(self, token: str) -> None:
        with self.db.transaction() as connection:
            connection.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha256(token),))


@dataclass(frozen=True)
class Caller:
    user: User
    csrf: str | None  # the session's CSRF token; None for bearer-token calls (no ambient credentials)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
