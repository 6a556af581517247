"""Who sees what: admins see every place; operators and viewers only the places of
their districts. A place without a district is seen by admins only. Pages answer an
out-of-scope item with 404, exactly as for one that does not exist."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vaktpost.broker.inbox.accounts import Account


def sees_district(account: Account, district: str | None) -> bool:
    return account.is_admin or (district is not None and district in account.districts)


def visible_places(account: Account, places: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The place rows (with a `district` key) that `account` may see, in their order."""
    return [p for p in places if sees_district(account, p.get("district"))]
