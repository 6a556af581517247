"""The node's durable outbox: every event waits here until the central consumer
has acknowledged it (docs/delivery.md).

paho keeps unacknowledged messages in memory only and Mosquitto saves its state
periodically, so an event is forgotten here only when the consumer says it is
committed (an `Ack` on the node's acks topic), never on the broker's PUBACK.

One SQLite file in WAL mode holds the rows, the node's event sequence counter and
the drop/failure/expiry counters, and the events the node started and has not
ended (`open_events`, for a restart after a crash; docs/delivery.md). A row is a
message awaiting the consumer's ack: an event, or the snapshot of one (row id
`<event_id>/snapshot`, `vaktpost.contract.topics.snapshot_row_id`); `expire`
bounds how long either may wait. One connection guarded by one lock serves the
pipeline threads (put, next_seq) and the MQTT threads (pending, mark_*, ack).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vaktpost.contract.topics import SNAPSHOT_ROW_SUFFIX

log = logging.getLogger(__name__)

State = Literal["pending", "sent", "failed"]
WhenFull = Literal["drop_oldest", "drop_newest"]

# Rows whose last send lies this far in the future were stamped before the clock
# was set (a Pi without RTC before NTP); treat them as due instead of waiting.
_CLOCK_SLACK = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    event_id     TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   REAL NOT NULL,
    last_sent_at REAL,
    sent_seq     INTEGER,
    fail_reason  TEXT
);
CREATE INDEX IF NOT EXISTS outbox_state_seq ON outbox (state, seq);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- Events counted as dropped, so a refused event's later states (and its snapshot)
-- do not count again; pruned with the outbox's retention.
CREATE TABLE IF NOT EXISTS dropped_events (
    event_id TEXT PRIMARY KEY,
    at       REAL NOT NULL
);
-- Events this node started and has not ended, with their last message: an acked row
-- is gone from `outbox`, so only this table tells a restarted node what to end.
CREATE TABLE IF NOT EXISTS open_events (
    event_id TEXT PRIMARY KEY,
    topic    TEXT NOT NULL,
    payload  BLOB NOT NULL,
    alive_at REAL NOT NULL  -- unix time on the camera's clock it was last known to go on
);
INSERT OR IGNORE INTO meta (key, value) VALUES
    ('event_seq', 0), ('row_seq', 0), ('dropped', 0), ('failed', 0), ('expired', 0);
"""
# A full outbox warns at most this often; the warning says how many events it dropped meanwhile.
DROP_LOG_SECONDS = 60.0
_COLUMNS = "event_id, seq, topic, payload, state, attempts, created_at, last_sent_at, sent_seq, fail_reason"


def event_of(row_id: str) -> str:
    """The event a row belongs to: an event's own row, or its snapshot's (`snapshot_row_id`)."""
    return row_id.removesuffix(SNAPSHOT_ROW_SUFFIX)


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or used."""


def _make_folder(path: Path) -> None:
    """Create the folder of the outbox file `path`; OutboxError in one line if impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = next((p for p in path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise OutboxError(f"outbox {path}: {blocker} is a file, not a directory") from None
        # No permission, a read-only file system.
        raise OutboxError(f"outbox {path}: cannot create its folder: {e.strerror or e}") from None


@dataclass(frozen=True)
class OpenEvent:
    """An event the node started and has not ended: its last message and when it was
    last known to go on."""

    event_id: str
    topic: str
    payload: bytes
    alive_at: float  # unix time


@dataclass(frozen=True)
class Row:
    event_id: str
    seq: int  # outbox write order, renewed by every put: also the version of `payload`
    topic: str
    payload: bytes
    state: State
    attempts: int
    created_at: float  # first put (unix time)
    last_sent_at: float | None
    sent_seq: int | None  # the `seq` (version) last handed to MQTT, None if never sent
    fail_reason: str | None


class Outbox:
    """Bounded, durable, thread-safe queue of events awaiting the consumer's ack.

    `max_events` bounds the rows kept (failed rows included; they are the first to
    make room). `when_full` is SpoolSection.when_full.
    """

    def __init__(self, path: str | Path, max_events: int = 100_000, when_full: WhenFull = "drop_oldest"):
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if when_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"when_full must be drop_oldest or drop_newest, not {when_full!r}")
        self.path = Path(path)
        self.max_events = max_events
        self.when_full: WhenFull = when_full
        self._lock = threading.Lock()
        self._unsaved_drops: set[str] = set()  # events refused because the file could not be written
        self._last_drop_log: float | None = None
        self._drops_since_log = 0
        if self.path.is_dir():
            raise OutboxError(f"outbox {self.path}: is a directory, not a file")
        _make_folder(self.path)
        try:
            self._db = self._open()
        except sqlite3.OperationalError as e:  # permissions, missing directory, locked
            raise OutboxError(f"outbox {self.path}: cannot open: {e}") from None
        except sqlite3.DatabaseError as e:
            # A corrupt file (SD card, power loss) must not stop the node for good:
            # keep it aside for inspection and start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("outbox %s is unreadable (%s); moved to %s, starting a new one", self.path, e, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(Path(f"{aside}{suffix}"))
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so each method is one transaction.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        try:
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise OutboxError(f"outbox {self.path}: the file system does not support WAL mode")
            # FULL: every commit fsyncs the WAL, so a put() or ack() that returned survives
            # a power cut (NORMAL may roll back the last commits). Events are a few a
            # minute, so the fsync per commit is cheap even on an SD card.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ------------------------------------------------------------

    def _tx(self):
        return _Tx(self._db)

    def _bump(self, key: str, by: int = 1) -> int:
        return self._db.execute("UPDATE meta SET value = value + ? WHERE key = ? RETURNING value",
                                (by, key)).fetchone()[0]

    def _meta(self, key: str) -> int:
        return self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    # -- sequence ----------------------------------------------------------------

    def next_seq(self) -> int:
        """The node's next event sequence number (1, 2, …); persisted, so it keeps
        rising across restarts."""
        with self._lock, self._tx():
            return self._bump("event_seq")

    # -- writing -----------------------------------------------------------------

    def put(self, event_id: str, topic: str, payload: bytes, *, running: bool | None = None,
            at: float | None = None) -> bool:
        """Store an event for sending. An existing `event_id` (the same event, a later
        state) gets the new topic and payload and is due again: the newest state is
        what gets sent. Returns False when the event was not stored (full with
        drop_newest, or the file cannot be written).

        `running` True: the message is of an event still going on; it is remembered,
        in the same transaction, among the open events (`open_events`), known alive
        at `at` (unix time, default now) until a message with `running` False (its
        end) comes. None (snapshots): no change."""
        try:
            with self._lock, self._tx():
                if running is not None:
                    self._track_open(event_id, topic, bytes(payload), running, time.time() if at is None else at)
                return self._put(event_id, topic, bytes(payload))
        except sqlite3.OperationalError as e:  # disk full, I/O error: keep the camera running
            with self._lock:
                event = event_of(event_id)
                new = event not in self._unsaved_drops
                self._unsaved_drops.add(event)
            if new:
                log.error("outbox %s: cannot store event %s: %s", self.path, event_id, e)
            return False

    def _put(self, event_id: str, topic: str, payload: bytes) -> bool:
        db = self._db
        if self._unsaved_drops:  # the file is writable again: count what it could not take
            self._count_drops(sorted(self._unsaved_drops))
            self._unsaved_drops.clear()
        if db.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)).fetchone():
            db.execute("UPDATE outbox SET topic = ?, payload = ?, seq = ?, state = 'pending', fail_reason = NULL "
                       "WHERE event_id = ?", (topic, payload, self._bump("row_seq"), event_id))
            return True
        excess = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_events + 1
        if excess > 0:
            # Failed rows are kept only for inspection and already counted: they go first.
            excess -= db.execute(
                "DELETE FROM outbox WHERE event_id IN "
                "(SELECT event_id FROM outbox WHERE state = 'failed' ORDER BY seq LIMIT ?)", (excess,)).rowcount
        if excess > 0:
            if self.when_full == "drop_newest":
                self._count_drops([event_id])
                return False
            gone = [r[0] for r in db.execute(
                "DELETE FROM outbox WHERE event_id IN "
                "(SELECT event_id FROM outbox WHERE state != 'failed' ORDER BY seq LIMIT ?) RETURNING event_id",
                (excess,))]
            self._count_drops(gone)
        db.execute("INSERT INTO outbox (event_id, seq, topic, payload, state, created_at) "
                   "VALUES (?, ?, ?, ?, 'pending', ?)",
                   (event_id, self._bump("row_seq"), topic, payload, time.time()))
        return True

    def _track_open(self, event_id: str, topic: str, payload: bytes, running: bool, at: float) -> None:
        # Kept whether or not the outbox has room for the row: an earlier state of the
        # event may have reached the centre, which then needs its end all the same.
        if running:
            self._db.execute("INSERT INTO open_events VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET "
                             "topic = excluded.topic, payload = excluded.payload, "
                             "alive_at = MAX(alive_at, excluded.alive_at)", (event_id, topic, payload, at))
        else:
            self._db.execute("DELETE FROM open_events WHERE event_id = ?", (event_id,))

    def alive(self, topic: str, at: float) -> int:
        """The open events published on `topic` (one camera's) are known to go on at
        `at` (unix time on that camera's clock). Returns the events touched."""
        with self._lock, self._tx():
            return self._db.execute("UPDATE open_events SET alive_at = ? WHERE topic = ? AND alive_at < ?",
                                    (at, topic, at)).rowcount

    def open_events(self) -> list[OpenEvent]:
        """The events started and not ended, oldest first: after a crash, what the node
        must end (edge/node.py does at start)."""
        with self._lock:
            cur = self._db.execute("SELECT event_id, topic, payload, alive_at FROM open_events ORDER BY event_id")
            return [OpenEvent(*r) for r in cur]

    def forget_open(self, event_id: str) -> None:
        """Drop an open event that cannot be ended (its message no longer parses)."""
        with self._lock, self._tx():
            self._db.execute("DELETE FROM open_events WHERE event_id = ?", (event_id,))

    def _count_drops(self, row_ids: Iterable[str]) -> None:
        """Count the events of these rows as dropped, each event once however many of its
        states or rows were lost; warn at most every DROP_LOG_SECONDS."""
        now = time.time()
        new = sum(self._db.execute("INSERT OR IGNORE INTO dropped_events VALUES (?, ?)", (event_of(r), now)).rowcount
                  for r in row_ids)
        if not new:
            return
        total = self._bump("dropped", new)
        self._drops_since_log += new
        if self._last_drop_log is None or now - self._last_drop_log >= DROP_LOG_SECONDS:
            log.warning("outbox full (%d rows, %s): %d event(s) dropped since the last warning, %d in total",
                        self.max_events, self.when_full, self._drops_since_log, total)
            self._last_drop_log, self._drops_since_log = now, 0

    def mark_sent(self, event_id: str, seq: int | None = None) -> bool:
        """Record that the row (in version `seq`, default: the current one) was handed
        to MQTT. A row replaced meanwhile by put() stays pending. True if updated."""
        with self._lock, self._tx():
            return self._db.execute(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, last_sent_at = ?, sent_seq = seq "
                "WHERE event_id = ? AND state != 'failed' AND (? IS NULL OR seq = ?)",
                (time.time(), event_id, seq, seq)).rowcount > 0

    def mark_failed(self, event_id: str, reason: str, seq: int | None = None) -> bool:
        """The broker refused the row (version `seq`, default current): keep it for
        inspection, never resend it, count it. True if a row changed to failed."""
        with self._lock, self._tx():
            changed = self._db.execute(
                "UPDATE outbox SET state = 'failed', fail_reason = ? "
                "WHERE event_id = ? AND state != 'failed' AND (? IS NULL OR seq = ?)",
                (reason, event_id, seq, seq)).rowcount > 0
            if changed:
                self._bump("failed")
        return changed

    def ack(self, event_ids: Iterable[str]) -> int:
        """The consumer committed these events: delete them. Only rows whose current
        version has been sent are deleted; a row replaced after its last send stays
        so the newer state still goes out. Returns the number deleted."""
        ids = list(dict.fromkeys(event_ids))
        deleted = 0
        with self._lock, self._tx():
            for i in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                deleted += self._db.execute(
                    f"DELETE FROM outbox WHERE event_id IN ({marks}) AND state != 'failed' AND sent_seq = seq",
                    chunk).rowcount
        return deleted

    def reset_inflight(self, exclude: Collection[str] = ()) -> int:
        """After a (re)connect: every sent-but-unacknowledged row is due again, except
        `exclude` (rows paho itself still retransmits). Returns rows reset."""
        with self._lock, self._tx():
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS _keep (event_id TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM _keep")
            self._db.executemany("INSERT OR IGNORE INTO _keep VALUES (?)", ((e,) for e in exclude))
            return self._db.execute(
                "UPDATE outbox SET state = 'pending' WHERE state = 'sent' "
                "AND event_id NOT IN (SELECT event_id FROM _keep)").rowcount

    def expire(self, max_age_seconds: float) -> int:
        """Retention: delete rows first stored more than `max_age_seconds` ago and
        never acknowledged (events and snapshots alike). Those awaiting delivery are
        counted in the persisted `expired` counter and their number is returned;
        failed rows that old go too, uncounted (already counted as failed)."""
        if max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be positive")
        cutoff = time.time() - max_age_seconds
        with self._lock, self._tx():
            gone = [r[0] for r in self._db.execute(
                "DELETE FROM outbox WHERE created_at < ? AND state != 'failed' RETURNING event_id", (cutoff,))]
            failed = self._db.execute("DELETE FROM outbox WHERE created_at < ? AND state = 'failed'",
                                      (cutoff,)).rowcount
            total = self._bump("expired", len(gone)) if gone else self._meta("expired")
            self._db.execute("DELETE FROM dropped_events WHERE at < ?", (cutoff,))
        if gone or failed:
            log.warning("outbox retention: %d unacknowledged row(s) older than %.0f s deleted (%s%s; "
                        "%d expired in total)%s", len(gone), max_age_seconds, ", ".join(gone[:5]),
                        ", …" if len(gone) > 5 else "", total,
                        f", and {failed} failed row(s)" if failed else "")
        return len(gone)

    def purge_failed(self, older_than: float) -> int:
        """Delete failed rows first stored more than `older_than` seconds ago."""
        with self._lock, self._tx():
            return self._db.execute("DELETE FROM outbox WHERE state = 'failed' AND created_at < ?",
                                    (time.time() - older_than,)).rowcount

    # -- reading -----------------------------------------------------------------

    def pending(self, limit: int = 100, *, resend_after: float | None = None,
                resend_max: float | None = None) -> list[Row]:
        """Rows to send, oldest first: pending rows and sent rows not yet acknowledged.

        With `resend_after`, a sent row is included only once its last send is that
        many seconds old; with `resend_max` too, the wait doubles with every attempt
        up to `resend_max`, so a consumer that is down for hours is not flooded."""
        now = time.time()
        args: tuple[float, ...] = ()
        if resend_after is None:
            where = "state != 'failed'"
        else:
            cap = resend_after if resend_max is None else max(resend_max, resend_after)
            where = ("state = 'pending' OR (state = 'sent' AND (last_sent_at IS NULL "
                     "OR last_sent_at <= ? - MIN(? * (1 << MIN(MAX(attempts - 1, 0), 30)), ?) "
                     "OR last_sent_at > ?))")
            args = (now, resend_after, cap, now + _CLOCK_SLACK)
        with self._lock:
            cur = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE {where} ORDER BY seq LIMIT ?",
                                   (*args, limit))
            return [Row(*r) for r in cur]

    def rows(self, state: State | None = None, limit: int = 1000) -> list[Row]:
        """Rows for inspection (e.g. the failed ones), oldest first."""
        with self._lock:
            cur = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE (? IS NULL OR state = ?) ORDER BY seq LIMIT ?",
                (state, state, limit))
            return [Row(*r) for r in cur]

    def get(self, event_id: str) -> Row | None:
        with self._lock:
            r = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE event_id = ?", (event_id,)).fetchone()
        return Row(*r) if r else None

    def depth(self) -> int:
        """Events not yet acknowledged (failed rows not included)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE state != 'failed'").fetchone()[0]

    def counters(self) -> dict[str, int]:
        """depth: unacknowledged rows; dropped: events lost to a full outbox (or an
        unwritable file) since the outbox was created; failed: publishes the broker
        refused since then; expired: unacknowledged rows deleted by `expire` since
        then. For the heartbeat."""
        with self._lock:
            depth = self._db.execute("SELECT COUNT(*) FROM outbox WHERE state != 'failed'").fetchone()[0]
            return {"depth": depth, "dropped": self._meta("dropped") + len(self._unsaved_drops),
                    "failed": self._meta("failed"), "expired": self._meta("expired")}


class _Tx:
    """BEGIN IMMEDIATE … COMMIT, ROLLBACK on error (the write lock is taken up front,
    so a transaction never fails half-way on a lock upgrade)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            self._db.execute("ROLLBACK")
