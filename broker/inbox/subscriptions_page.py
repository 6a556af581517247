"""The notifications page: a logged-in user sees, adds and removes their own
subscriptions. Email only: webhooks are set up by an administrator with
`vaktpost subscriptions add --webhook` (they are shown here too). The page only
writes subscriptions; the central service's worker sends (docs/inbox.md, "Notifications").
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.inbox.scope import visible_places
from vaktpost.broker.inbox.web import current_account, inbox_of, render, tr
from vaktpost.broker.incidents.kinds import Priority
from vaktpost.broker.incidents.labels import priority_labels, type_labels
from vaktpost.broker.notify.subscriptions import (
    NewSubscription,
    Subscription,
    SubscriptionError,
    add,
    list_subscriptions,
    parse_hours,
    parse_priority,
    parse_types,
    remove,
)

router = APIRouter()
Me = Annotated[Account, Depends(current_account)]


def _choices(request: Request, account: Account) -> dict[str, Any]:
    """What the form offers: the districts and places of the user's scope, types and priorities."""
    gettext = inbox_of(request).translations[request.state.lang].gettext
    places = sorted(visible_places(account, inbox_of(request).store.list_places()), key=lambda p: p["name"])
    districts = sorted({p["district"] for p in places if p.get("district")} | set(account.districts))
    return {"districts": districts, "places": places, "types": type_labels(gettext),
            "priorities": priority_labels(gettext)}


def _shown(request: Request, subs: list[Subscription], choices: dict[str, Any]) -> list[dict[str, Any]]:
    names = {p["id"]: p["name"] for p in choices["places"]}
    rows = []
    for s in subs:
        where = [*s.districts, *(names.get(p, p) for p in s.places)]
        rows.append({"id": s.id, "channel": s.channel, "target": s.target, "digest": s.mode == "digest",
                     "where": ", ".join(where) or tr(request, "all your districts"),
                     "types": ", ".join(choices["types"][t] for t in s.types) or tr(request, "all types"),
                     "priority": choices["priorities"][s.min_priority],
                     "hours": f"{s.hours[0]:02d}–{s.hours[1]:02d}" if s.hours else ""})
    return rows


def _engine(request: Request) -> Engine:
    return inbox_of(request).store.engine


def _page(request: Request, account: Account, status_code: int = 200, error: str | None = None,
          form: dict[str, Any] | None = None) -> Response:
    choices = _choices(request, account)
    subs = _shown(request, list_subscriptions(_engine(request), account.name), choices)
    return render(request, "subscriptions.html", status_code, nav="subscriptions", subscriptions=subs,
                  error=error, form=form or {}, **choices)


@router.get("/subscriptions", response_class=HTMLResponse)
def subscriptions_page(request: Request, account: Me) -> Response:
    return _page(request, account)


@router.post("/subscriptions", response_class=HTMLResponse)
def add_subscription(request: Request, account: Me, email: Annotated[str, Form()] = "",
                     district: Annotated[list[str] | None, Form()] = None,
                     place: Annotated[list[str] | None, Form()] = None,
                     type: Annotated[list[str] | None, Form()] = None,
                     min_priority: Annotated[str, Form()] = Priority.low.name,
                     hours: Annotated[str, Form()] = "", digest: Annotated[str, Form()] = "") -> Response:
    inbox = inbox_of(request)
    form = {"email": email, "district": district or [], "place": place or [], "type": type or [],
            "min_priority": min_priority, "hours": hours, "digest": bool(digest)}
    try:
        spec = NewSubscription(channel="email", target=email.strip(), districts=tuple(district or ()),
                               places=tuple(place or ()), types=parse_types(type or []),
                               min_priority=parse_priority(min_priority),
                               hours=parse_hours(hours) if hours.strip() else None,
                               mode="digest" if digest else "immediate")
        add(_engine(request), account, spec, inbox.store.list_places(), now=inbox.clock())
    except SubscriptionError as e:
        # The reason in English names the field; the sentence before it tells what to do.
        message = tr(request, "The subscription was not saved. Check the fields and try again.")
        return _page(request, account, 400, f"{message} ({e})", form)
    return RedirectResponse("/subscriptions", status_code=303)


@router.post("/subscriptions/{subscription_id}/delete")
def delete_subscription(request: Request, subscription_id: int, account: Me) -> Response:
    try:
        remove(_engine(request), subscription_id, user_name=account.name)
    except SubscriptionError:
        raise HTTPException(404) from None  # another user's looks exactly like a missing one
    return RedirectResponse("/subscriptions", status_code=303)
