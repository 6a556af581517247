"""API tokens: one per client program (an alarm centre, a report script), each with a role
and districts like a user (docs/inbox.md, "API").

A token is `vp_` + 32 random bytes (URL-safe base64); the prefix makes a leaked one easy
to recognise (secret scanners, logs). It is shown once when made and stored only as its
SHA-256: with 256 random bits a fast hash is enough, and a copy of the database cannot be
used to call the API. A token acts as the `Account` "token:NAME", so the scope rules and
the audit log treat it like a person.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Column, MetaData, String, Table, delete, select, update
from sqlalchemy.engine import Engine

from vaktpost.broker.inbox.accounts import Account, AccountError, Role, check_name, check_scope
from vaktpost.broker.store import UtcDateTime, as_utc

PREFIX = "vp_"
ACCOUNT_PREFIX = "token:"
# `last_used_at` is written at most this often per token: a busy client would otherwise
# make every read request a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)

metadata = MetaData()

api_tokens = Table(
    "inbox_api_tokens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("districts", JSON, nullable=False),  # as for users: [] for admins
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_used_at", UtcDateTime()),
)


@dataclass(frozen=True)
class TokenInfo:
    """A token as `vaktpost tokens list` shows it (never the token itself)."""

    name: str
    role: Role
    districts: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_new_token(name: str, role: str, districts: list[str]) -> None:
    """The rules for a new token (those of users, less the password); AccountError."""
    check_name(name, "token name")
    check_scope(role, districts)


class Tokens:
    """The API tokens in the database behind `engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        metadata.create_all(self.engine)

    def add(self, name: str, role: str, districts: list[str], *, now: datetime) -> str:
        """Make token `name`; returns the token, which is not stored and cannot be shown again."""
        check_new_token(name, role, districts)
        token = PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if conn.execute(select(api_tokens.c.name).where(api_tokens.c.name == name)).first() is not None:
                raise AccountError(f"token {name!r} exists (remove it first to replace it)")
            conn.execute(api_tokens.insert().values(name=name, role=role, districts=sorted(set(districts)),
                                                    token_sha256=_digest(token), created_at=now))
        return token

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(delete(api_tokens).where(api_tokens.c.name == name)).rowcount == 0:
                raise AccountError(f"no token {name!r}")

    def list(self) -> list[TokenInfo]:
        t = api_tokens.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.name, t.role, t.districts, t.created_at, t.last_used_at).order_by(t.name))
            return [TokenInfo(r.name, r.role, frozenset(r.districts), r.created_at, r.last_used_at) for r in rows]

    def authenticate(self, token: str, *, now: datetime) -> Account | None:
        """The account "token:NAME" of `token`, or None; notes when it was used."""
        if not token.startswith(PREFIX):
            return None
        t = api_tokens.c
        digest = _digest(token)
        with self.engine.connect() as conn:
            row = conn.execute(select(t.name, t.role, t.districts, t.last_used_at)
                               .where(t.token_sha256 == digest)).first()
        if row is None:
            return None
        if row.last_used_at is None or as_utc(row.last_used_at) <= now - LAST_USED_RESOLUTION:
            with self.engine.begin() as conn:
                conn.execute(update(api_tokens).where(t.token_sha256 == digest).values(last_used_at=now))
        return Account(ACCOUNT_PREFIX + row.name, row.role, frozenset(row.districts))
