"""Who sees what: admins see every place; operators and viewers only the places of
their districts. A place without a district is seen by admins only, and so is an
incident that belongs to no place (an unassigned camera). Viewers see no snapshots.
Pages and the API answer an out-of-scope item with 404, exactly as for one that does
not exist, and never list it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.incidents.service import Incident


def sees_district(account: Account, district: str | None) -> bool:
    return account.is_admin or (district is not None and district in account.districts)


def visible_places(account: Account, places: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The place rows (with a `district` key) that `account` may see, in their order."""
    return [p for p in places if sees_district(account, p.get("district"))]


def district_filter(account: Account) -> list[str] | None:
    """The `district` filter that limits a listing to `account`'s scope (None: no limit)."""
    return None if account.is_admin else sorted(account.districts)


def sees_incident(account: Account, incident: Incident) -> bool:
    """An incident is seen through any of its places."""
    return account.is_admin or any(sees_district(account, p.district) for p in incident.places)


def sees_snapshots(account: Account) -> bool:
    return account.role != "viewer"
