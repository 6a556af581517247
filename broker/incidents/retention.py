"""Retention of incidents: a resolved incident is deleted, with its places, event links
and audit rows, `retention.incidents` after it was resolved; audit rows that belong to
no incident go at the same age. Open incidents are never deleted. Chunked like the
place log's purge (`Store.purge`), so ingest is never held up for long."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, select

from vaktpost.broker.config import RetentionSection
from vaktpost.broker.incidents.kinds import State
from vaktpost.broker.incidents.tables import audit_log, incident_events, incident_places, incidents
from vaktpost.broker.store import PURGE_CHUNK, PurgeResult, Store, as_utc


def purge_incidents(store: Store, now: datetime, keep: timedelta, *,
                    cancel: Callable[[], bool] | None = None) -> int:
    """Delete incidents resolved more than `keep` before `now`; returns how many."""
    cut = as_utc(now) - keep
    stop = cancel or (lambda: False)
    i, a = incidents.c, audit_log.c
    old = select(i.id).where(and_(i.state == State.resolved.value, i.resolved_at < cut)).limit(PURGE_CHUNK)
    deleted = 0
    while not stop():
        with store.begin() as tx:
            ids = tx.conn.execute(old).scalars().all()
            if ids:
                tx.conn.execute(delete(audit_log).where(a.incident_id.in_(ids)))
                tx.conn.execute(delete(incident_events).where(incident_events.c.incident_id.in_(ids)))
                tx.conn.execute(delete(incident_places).where(incident_places.c.incident_id.in_(ids)))
                deleted += tx.conn.execute(delete(incidents).where(i.id.in_(ids))).rowcount
        if len(ids) < PURGE_CHUNK:
            break
    if not stop():
        with store.begin() as tx:
            tx.conn.execute(delete(audit_log).where(and_(a.incident_id.is_(None), a.at < cut)))
    return deleted


def purge(store: Store, retention: RetentionSection, now: datetime, *,
          cancel: Callable[[], bool] | None = None) -> PurgeResult:
    """The whole retention purge: the place log's (`Store.purge`), then incidents."""
    result = store.purge(now, retention.snapshots_age, retention.events_age, cancel=cancel)
    return replace(result, incidents=purge_incidents(store, now, retention.incidents_age, cancel=cancel))
