"""Register, change, list and remove measures. Plain functions over a `Store` (its
tables made by `tables.create_tables`); the
inbox's pages check who may see and change what (`can_see`, `can_change`) with the
same district rules as incidents: a measure is seen through any of its places and
changed only by an admin or an operator of every one of its places' districts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.inbox.scope import sees_district
from vaktpost.broker.measures.tables import measure_places, measures
from vaktpost.broker.store import Store, as_utc, places, utcnow

MAX_NOTE = 4000
MAX_COST = 10**12  # kronor; anything above is a typing error


class MeasureKind(StrEnum):
    lighting = "lighting"
    fencing = "fencing"
    patrol = "patrol"  # patrol or guard
    camera_coverage = "camera_coverage"  # a change of camera coverage
    graffiti_removal = "graffiti_removal"  # faster graffiti removal
    landlord = "landlord"  # cooperation with a landlord
    other = "other"


class MeasureError(ValueError):
    """A measure cannot be saved or found; the message says why in one line."""


class MeasurePlace(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    name: str
    district: str | None


class MeasureInput(BaseModel):
    """What a person gives (form or CLI), checked by `check`."""

    model_config = ConfigDict(frozen=True)
    places: tuple[str, ...]
    kind: MeasureKind
    start_date: date
    end_date: date | None = None
    owner: str | None = None
    cost: int | None = None
    note: str | None = None


class Measure(MeasureInput):
    id: int
    place_refs: tuple[MeasurePlace, ...]
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def districts(self) -> set[str | None]:
        return {p.district for p in self.place_refs}


def can_see(account: Account, measure: Measure) -> bool:
    return account.is_admin or any(sees_district(account, p.district) for p in measure.place_refs)


def may_register(account: Account, districts: Iterable[str | None]) -> bool:
    """Admins, and operators of every district given."""
    if account.is_admin:
        return True
    return account.role == "operator" and all(sees_district(account, d) for d in districts)


def can_change(account: Account, measure: Measure) -> bool:
    return may_register(account, measure.districts)


def check(spec: MeasureInput, known_places: Mapping[str, Mapping[str, Any]]) -> MeasureInput:
    """`spec` cleaned (text trimmed, places unique), or MeasureError saying what is wrong."""
    ids = tuple(dict.fromkeys(p.strip() for p in spec.places if p.strip()))
    if not ids:
        raise MeasureError("choose at least one place")
    unknown = [p for p in ids if p not in known_places]
    if unknown:
        raise MeasureError(f"unknown place: {', '.join(unknown)}")
    if spec.end_date is not None and spec.end_date < spec.start_date:
        raise MeasureError("the end date is before the start date")
    if spec.cost is not None and not 0 <= spec.cost <= MAX_COST:
        raise MeasureError("the cost must be a whole number of kronor, 0 or more")
    owner = (spec.owner or "").strip() or None
    if owner is not None and len(owner) > 200:
        raise MeasureError("the owner is longer than 200 characters")
    note = (spec.note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise MeasureError(f"the note is longer than {MAX_NOTE} characters")
    # A plain MeasureInput, also when given a stored Measure to change.
    return MeasureInput(places=ids, kind=spec.kind, start_date=spec.start_date, end_date=spec.end_date, owner=owner,
                        cost=spec.cost, note=note)


def _refs(conn: Connection, ids: Sequence[int]) -> dict[int, list[MeasurePlace]]:
    mp, p = measure_places.c, places.c
    q = (select(mp.measure_id, p.id, p.name, p.district).join_from(measure_places, places, p.id == mp.place_id)
         .where(mp.measure_id.in_(list(ids))).order_by(p.name))
    out: dict[int, list[MeasurePlace]] = defaultdict(list)
    for r in conn.execute(q).mappings():
        out[int(r["measure_id"])].append(MeasurePlace(id=r["id"], name=r["name"], district=r["district"]))
    return out


def _measure(r: Any, refs: list[MeasurePlace]) -> Measure:
    return Measure(id=r["id"], places=tuple(p.id for p in refs), place_refs=tuple(refs), kind=MeasureKind(r["kind"]),
                   start_date=r["start_date"], end_date=r["end_date"], owner=r["owner"], cost=r["cost"],
                   note=r["note"], created_by=r["created_by"], created_at=r["created_at"],
                   updated_at=r["updated_at"])


def list_measures(store: Store, *, districts: Collection[str] | None = None,
                  place: str | None = None) -> list[Measure]:
    """Measures, newest start first; `districts` (None: any) keeps those with a place in one of them."""
    m, mp = measures.c, measure_places.c
    q = select(measures).order_by(m.start_date.desc(), m.id.desc())
    if districts is not None:
        q = q.where(m.id.in_(select(mp.measure_id).join_from(measure_places, places, places.c.id == mp.place_id)
                             .where(places.c.district.in_(list(districts)))))
    if place is not None:
        q = q.where(m.id.in_(select(mp.measure_id).where(mp.place_id == place)))
    with store.engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
        refs = _refs(conn, [int(r["id"]) for r in rows])
    return [_measure(r, refs.get(int(r["id"]), [])) for r in rows]


def get_measure(store: Store, measure_id: int) -> Measure:
    with store.engine.connect() as conn:
        r = conn.execute(select(measures).where(measures.c.id == measure_id)).mappings().first()
        if r is None:
            raise MeasureError(f"no measure {measure_id}")
        return _measure(r, _refs(conn, [measure_id]).get(measure_id, []))


def _known(store: Store) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in store.list_places()}


def add_measure(store: Store, spec: MeasureInput, *, actor: str, now: datetime | None = None) -> Measure:
    spec = check(spec, _known(store))
    at = as_utc(now) if now else utcnow()
    with store.begin() as tx:
        row = spec.model_dump(exclude={"places"})
        new_id = tx.conn.execute(measures.insert().values(**row, created_by=actor, created_at=at, updated_at=at)
                                 .returning(measures.c.id)).scalar_one()
        tx.conn.execute(measure_places.insert(), [{"measure_id": new_id, "place_id": p} for p in spec.places])
    return get_measure(store, int(new_id))


def change_measure(store: Store, measure_id: int, spec: MeasureInput, *, now: datetime | None = None) -> Measure:
    spec = check(spec, _known(store))
    get_measure(store, measure_id)
    at = as_utc(now) if now else utcnow()
    with store.begin() as tx:
        tx.conn.execute(update(measures).where(measures.c.id == measure_id)
                        .values(**spec.model_dump(exclude={"places"}), updated_at=at))
        tx.conn.execute(delete(measure_places).where(measure_places.c.measure_id == measure_id))
        tx.conn.execute(measure_places.insert(), [{"measure_id": measure_id, "place_id": p} for p in spec.places])
    return get_measure(store, measure_id)


def remove_measure(store: Store, measure_id: int) -> None:
    get_measure(store, measure_id)
    with store.begin() as tx:
        tx.conn.execute(delete(measure_places).where(measure_places.c.measure_id == measure_id))
        tx.conn.execute(delete(measures).where(measures.c.id == measure_id))
