"""What every inbox route shares: the `Inbox` state, rendering a page in the request's
language, the logged-in account and the CSRF guard. Page modules (`app`, `incidents_pages`)
import from here, so no page module imports another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.numbers import parse_pattern
from babel.support import NullTranslations
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from vaktpost.broker.config import InboxSection
from vaktpost.broker.inbox import csrf
from vaktpost.broker.inbox.accounts import Account, Accounts
from vaktpost.broker.inbox.auth import Authenticator
from vaktpost.broker.inbox.i18n import LANGUAGES, load_translations, local_time
from vaktpost.broker.inbox.throttle import LoginThrottle
from vaktpost.broker.incidents.labels import type_labels
from vaktpost.broker.store import Store, utcnow

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "vaktpost_session"
API_PREFIX = "/api/v1"  # the JSON API's routes (`api.py`)
YEAR = 365 * 24 * 3600


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form."""


@dataclass
class Inbox:
    """What the routes share (app.state.inbox)."""

    store: Store
    accounts: Accounts
    authenticator: Authenticator
    settings: InboxSection
    secret: bytes
    clock: Callable[[], datetime] = utcnow
    throttle: LoginThrottle = field(init=False)
    translations: dict[str, NullTranslations] = field(init=False)
    envs: dict[str, Environment] = field(init=False)

    def __post_init__(self) -> None:
        self.throttle = LoginThrottle(self.settings.login_max_failures,
                                      timedelta(seconds=self.settings.login_lockout))
        self.translations = {lang: load_translations(lang) for lang in LANGUAGES}
        zone = ZoneInfo(self.settings.timezone)
        self.envs = {lang: _environment(lang, t, zone) for lang, t in self.translations.items()}


def _environment(lang: str, translations: NullTranslations, zone: ZoneInfo) -> Environment:
    # The templates ship with the package: no stat of every included file per render
    # (auto_reload), which a page with hundreds of rows pays hundreds of times.
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"], auto_reload=False)
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    gettext = translations.gettext
    # A parsed Locale: Babel parses a locale name again on every call otherwise.
    locale = Locale.parse(lang)
    env.filters["localtime"] = lambda value, fmt="medium": local_time(value, zone, locale, fmt)
    one_decimal = parse_pattern("#,##0.0")  # format_decimal would parse it on every call
    env.filters["decimal"] = lambda value: one_decimal.apply(value, locale)
    env.globals["static"] = lambda path: f"/static/{path}"
    # Labels of stored values; the strings are listed so that extraction finds them.
    labels = {"admin": gettext("admin"), "operator": gettext("operator"), "viewer": gettext("viewer"),
              "online": gettext("online"), "offline": gettext("offline"), "unknown": gettext("unknown"),
              "school": gettext("school"), "schoolyard": gettext("schoolyard"), "park": gettext("park"),
              "square": gettext("square"), "playground": gettext("playground"),
              "sports_ground": gettext("sports ground"), "other": gettext("other"),
              # incident types, states, priorities, outcomes and audit actions
              "new": gettext("new"), "acknowledged": gettext("acknowledged"), "resolved": gettext("resolved"),
              "low": gettext("low"), "normal": gettext("normal"), "high": gettext("high"),
              "false_alarm": gettext("false alarm"), "damage_found": gettext("damage found"),
              "police_report": gettext("police report made"), "cleaned_or_repaired": gettext("cleaned or repaired"),
              "auto_closed": gettext("closed automatically")}
    labels.update({t.value: word for t, word in type_labels(gettext).items()})
    # Audit actions share some values with states ("resolved"), so they have their own words.
    actions = {"opened": gettext("opened the incident"), "acknowledged": gettext("acknowledged the incident"),
               "resolved": gettext("resolved the incident"), "auto_closed": gettext("closed it automatically"),
               "reopened": gettext("reopened the incident"), "assigned": gettext("set the owner"),
               "commented": gettext("commented"), "snapshot_viewed": gettext("viewed a snapshot"),
               "user_added": gettext("added the user"), "user_removed": gettext("removed the user"),
               "places_imported": gettext("imported the places register"),
               "token_added": gettext("added the API token"), "token_removed": gettext("removed the API token")}
    env.globals["label"] = env.globals["role_label"] = env.globals["state_label"] = env.globals["kind_label"] = \
        lambda value: labels.get(str(value), str(value))
    env.globals["action_label"] = lambda value: actions.get(str(value), str(value))
    # The camera health table's column names (also each cell's data-label), translated once
    # here rather than in every row: the places page of a city shows hundreds of cameras.
    env.globals["health_columns"] = {
        "camera": gettext("Camera"), "status": gettext("Status"), "heartbeat": gettext("Last heartbeat"),
        "outbox": gettext("Outbox"), "temperature": gettext("Temperature"), "dropped": gettext("Dropped frames")}
    # Likewise the incident list's columns (`_incident_row.html`, up to 50 rows a page).
    env.globals["incident_columns"] = {
        "priority": gettext("Priority"), "incident": gettext("Incident"), "place": gettext("Place"),
        "began": gettext("Began"), "events": gettext("Events"), "state": gettext("State"), "owner": gettext("Owner")}
    return env


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def inbox_of(request: Request) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


def secure(request: Request) -> bool:
    # The scheme is the proxy's when `forwarded` is on (uvicorn's proxy headers).
    return request.url.scheme == "https"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """`template` in the request's language, with the CSRF token, account and language."""
    inbox = inbox_of(request)
    lang: str = request.state.lang
    html = inbox.envs[lang].get_template(template).render(
        lang=lang, csrf_token=csrf.token_for(inbox.secret, request.state.csrf_nonce),
        account=getattr(request.state, "account", None), **context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def tr(request: Request, message: str) -> str:
    """`message` in the request's language (for messages built in Python)."""
    return inbox_of(request).translations[request.state.lang].gettext(message)


def current_account(request: Request) -> Account:
    """The logged-in account (a route dependency); LoginRequired otherwise."""
    inbox = inbox_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    account = inbox.accounts.session_account(token, now=inbox.clock()) if token else None
    if account is None:
        raise LoginRequired()
    request.state.account = account
    return account


async def csrf_guard(request: Request) -> None:
    """Refuse (403) a state-changing request without a valid CSRF token."""
    # The API authenticates by bearer token only and ignores cookies: another site cannot
    # make a browser send the token, so there is nothing to forge.
    if request.method in csrf.SAFE_METHODS or is_api_path(request.url.path):
        return
    token = request.headers.get(csrf.CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(csrf.CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not csrf.valid(inbox_of(request).secret, request.cookies.get(csrf.CSRF_COOKIE), token):
        raise HTTPException(403, csrf.REFUSED)


def client(request: Request) -> str:
    """The client's address, for the audit log and the login throttle."""
    return request.client.host if request.client else "unknown"
