"""Local accounts of the inbox and their login sessions, in the place log's database.

Passwords are hashed with argon2id (argon2-cffi, its default parameters); a session is a
random token in a cookie, stored only as its SHA-256, so a copy of the database
cannot be used to log in. Removing a user ends their sessions. The tables have their
own MetaData: the consumer does not need them, `Accounts.create_tables()` makes them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import JSON, Column, ForeignKey, MetaData, String, Table, delete, select
from sqlalchemy.engine import Engine

from vaktpost.broker.store import UtcDateTime, as_utc

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
MIN_PASSWORD_LENGTH = 8
_NAME_MAX = 64

metadata = MetaData()

users = Table(
    "inbox_users",
    metadata,
    Column("name", String(_NAME_MAX), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("districts", JSON, nullable=False),  # list of district names; [] for admins
    Column("password_hash", String(256), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

sessions = Table(
    "inbox_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_name", String(_NAME_MAX), ForeignKey("inbox_users.name", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
)


class AccountError(ValueError):
    """A user cannot be added or removed; the message says why in one line."""


@dataclass(frozen=True)
class Account:
    """Who is logged in; all that pages and scopes need to know about a user."""

    name: str
    role: Role
    districts: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str, what: str = "user name") -> None:
    if not name or len(name) > _NAME_MAX or not name.isprintable() or name.strip() != name:
        raise AccountError(f"{what} must be 1-{_NAME_MAX} printable characters without surrounding spaces")


def check_scope(role: str, districts: list[str]) -> None:
    """The role and districts rules, shared by users and API tokens."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "admin" and districts:
        raise AccountError("an admin sees every district: give no --district")
    if role != "admin" and not districts:
        raise AccountError(f"an {role} sees only their districts: give at least one --district")


def check_new_user(name: str, role: str, districts: list[str], password: str) -> None:
    """The rules for a new account; AccountError naming the first one broken."""
    check_name(name)
    check_scope(role, districts)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")


class Accounts:
    """Users and sessions in the database behind `engine`."""

    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        # Verified when the user is unknown, so that a wrong name costs as long as a wrong password.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    def create_tables(self) -> None:
        metadata.create_all(self.engine)

    # --- users -------------------------------------------------------------------

    def add(self, name: str, role: str, districts: list[str], password: str, *, now: datetime) -> Account:
        check_new_user(name, role, districts, password)
        with self.engine.begin() as conn:
            if conn.execute(select(users.c.name).where(users.c.name == name)).first() is not None:
                raise AccountError(f"user {name!r} exists (remove it first to change it)")
            conn.execute(users.insert().values(
                name=name, role=role, districts=sorted(set(districts)),
                password_hash=self.hasher.hash(password), created_at=now))
        return self.get(name) or Account(name, "viewer", frozenset())  # just written: always found

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.user_name == name))
            if conn.execute(delete(users).where(users.c.name == name)).rowcount == 0:
                raise AccountError(f"no user {name!r}")

    def get(self, name: str) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users.c.role, users.c.districts).where(users.c.name == name)).first()
        return None if row is None else Account(name, row.role, frozenset(row.districts))

    def list(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users.c.name, users.c.role, users.c.districts).order_by(users.c.name))
            return [Account(r.name, r.role, frozenset(r.districts)) for r in rows]

    def verify_password(self, name: str, password: str) -> Account | None:
        """The account if `password` is its password; None otherwise (unknown user included)."""
        with self.engine.connect() as conn:
            stored = conn.execute(select(users.c.password_hash).where(users.c.name == name)).scalar()
        try:
            self.hasher.verify(stored or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if stored is None:
            return None
        if self.hasher.check_needs_rehash(stored):  # argon2 parameters raised since the hash was made
            with self.engine.begin() as conn:
                conn.execute(users.update().where(users.c.name == name)
                             .values(password_hash=self.hasher.hash(password)))
        return self.get(name)

    # --- sessions ----------------------------------------------------------------

    def start_session(self, name: str, *, now: datetime, lifetime: timedelta) -> str:
        """A new session of `name`; returns the token for the cookie (stored only hashed)."""
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at <= now))  # keeps the table small
            conn.execute(sessions.insert().values(token_sha256=_digest(token), user_name=name,
                                                  created_at=now, expires_at=now + lifetime))
        return token

    def session_account(self, token: str, *, now: datetime) -> Account | None:
        q = select(sessions.c.user_name, sessions.c.expires_at).where(sessions.c.token_sha256 == _digest(token))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None or as_utc(row.expires_at) <= now:
            return None
        return self.get(row.user_name)

    def end_session(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.token_sha256 == _digest(token)))
