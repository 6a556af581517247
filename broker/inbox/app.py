"""The inbox web app (FastAPI, server-rendered Jinja2 pages): login, logout and the places
and cameras page with node health. `create_app` builds it; `vaktpost.broker.inbox.server`
serves it with uvicorn.

Every page needs a logged-in `Account` (`current_account`), and every state-changing
request a CSRF token (`csrf_guard`, an app-wide dependency): further pages (incidents)
add routes with `Depends(current_account)` and `render(...)` and get both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from babel.support import NullTranslations
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from vaktpost.broker.config import InboxSection
from vaktpost.broker.inbox import csrf
from vaktpost.broker.inbox.accounts import Account, Accounts
from vaktpost.broker.inbox.auth import Authenticator, LocalPasswordAuthenticator, PasswordAuthenticator
from vaktpost.broker.inbox.health import camera_health, current_cameras
from vaktpost.broker.inbox.i18n import LANG_COOKIE, LANGUAGES, choose_language, load_translations, local_time
from vaktpost.broker.inbox.scope import sees_district, visible_places
from vaktpost.broker.inbox.throttle import LoginThrottle
from vaktpost.broker.store import Store, utcnow

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "vaktpost_session"
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
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    gettext = translations.gettext
    env.filters["localtime"] = lambda value, fmt="medium": local_time(value, zone, lang, fmt)
    env.filters["decimal"] = lambda value: format_decimal(value, format="#,##0.0", locale=lang)
    env.globals["static"] = lambda path: f"/static/{path}"
    # Labels of stored values; the strings are listed so that extraction finds them.
    labels = {"admin": gettext("admin"), "operator": gettext("operator"), "viewer": gettext("viewer"),
              "online": gettext("online"), "offline": gettext("offline"), "unknown": gettext("unknown"),
              "school": gettext("school"), "schoolyard": gettext("schoolyard"), "park": gettext("park"),
              "square": gettext("square"), "playground": gettext("playground"),
              "sports_ground": gettext("sports ground"), "other": gettext("other")}
    env.globals["role_label"] = env.globals["state_label"] = env.globals["kind_label"] = \
        lambda value: labels.get(value, value)
    return env


def inbox_of(request: Request) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


def _secure(request: Request) -> bool:
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
    if request.method in csrf.SAFE_METHODS:
        return
    token = request.headers.get(csrf.CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(csrf.CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not csrf.valid(inbox_of(request).secret, request.cookies.get(csrf.CSRF_COOKIE), token):
        raise HTTPException(403, "CSRF token missing or invalid")


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//host" and "/\host" would leave it.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def create_app(store: Store, settings: InboxSection, secret: bytes, *,
               authenticator: Authenticator | None = None, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The inbox over `store` (tables created if missing)."""
    accounts = Accounts(store.engine)
    store.create_all()
    accounts.create_tables()
    app = FastAPI(title="Vaktpost inbox", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(csrf_guard)])
    app.state.inbox = Inbox(store, accounts, authenticator or LocalPasswordAuthenticator(accounts),
                            settings, secret, clock)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    from vaktpost.broker.inbox.subscriptions_page import router as subscriptions  # imports this module
    app.include_router(subscriptions)

    @app.middleware("http")
    async def per_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        query_lang = request.query_params.get("lang")
        request.state.lang = choose_language(query_lang, request.cookies)
        nonce = request.cookies.get(csrf.CSRF_COOKIE)
        request.state.csrf_nonce = nonce or csrf.new_nonce()
        response = await call_next(request)
        secure = _secure(request)
        if nonce is None:
            response.set_cookie(csrf.CSRF_COOKIE, request.state.csrf_nonce, httponly=True, samesite="strict",
                                secure=secure, path="/")
        if query_lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, request.state.lang, max_age=YEAR, httponly=True, samesite="lax",
                                secure=secure, path="/")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {403: tr(request, "Refused: the form had expired. Reload the page and try again."),
                    404: tr(request, "Not found")}
        message = messages.get(exc.status_code, str(exc.detail))
        return render(request, "error.html", exc.status_code, status=exc.status_code, message=message)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        return render(request, "login.html", next=_safe_next(next), name="", error=None)

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, name: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
              next: Annotated[str, Form()] = "/") -> Response:
        inbox = inbox_of(request)
        auth = inbox.authenticator
        if not isinstance(auth, PasswordAuthenticator):
            raise HTTPException(404)
        now, client = inbox.clock(), _client(request)
        if inbox.throttle.locked(name, client, now):
            error = tr(request, "Too many failed attempts: login is locked for a while. Try again later.")
            return render(request, "login.html", 429, next=_safe_next(next), name=name, error=error)
        account = auth.authenticate(name, password)
        if account is None:
            inbox.throttle.failed(name, client, now)
            error = tr(request, "Wrong user name or password.")
            return render(request, "login.html", 401, next=_safe_next(next), name=name, error=error)
        inbox.throttle.succeeded(name, client, now)
        return start_session(request, account, _safe_next(next))

    @app.post("/logout")
    def logout(request: Request) -> Response:
        if token := request.cookies.get(SESSION_COOKIE):
            inbox_of(request).accounts.end_session(token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="lax")
        return response

    @app.get("/")
    def home(account: Annotated[Account, Depends(current_account)]) -> Response:
        # The incidents inbox will live here; until then the places page is the start page.
        return RedirectResponse("/places", status_code=303)

    @app.get("/places", response_class=HTMLResponse)
    def places_page(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
        inbox = inbox_of(request)
        now = inbox.clock()
        offline_after = timedelta(seconds=inbox.settings.node_offline_after)
        nodes = {n["node_id"]: n for n in inbox.store.list_nodes()}
        cameras = current_cameras(inbox.store.list_assignments(), now)
        shown = [
            {**p, "cameras": [camera_health(n, c, nodes.get(n), now, offline_after)
                              for n, c in cameras.get(p["id"], [])]}
            for p in visible_places(account, inbox.store.list_places())
        ]
        shown.sort(key=lambda p: (p.get("district") or "", p["name"]))
        return render(request, "places.html", nav="places", places=shown, now=now)

    @app.get("/places/{place_id}", response_class=HTMLResponse)
    def place_page(request: Request, place_id: str, account: Annotated[Account, Depends(current_account)]
                   ) -> Response:
        inbox = inbox_of(request)
        place = next((p for p in inbox.store.list_places() if p["id"] == place_id), None)
        if place is None or not sees_district(account, place.get("district")):
            raise HTTPException(404)  # out of scope looks exactly like missing
        now = inbox.clock()
        offline_after = timedelta(seconds=inbox.settings.node_offline_after)
        nodes = {n["node_id"]: n for n in inbox.store.list_nodes()}
        cameras = [camera_health(n, c, nodes.get(n), now, offline_after)
                   for n, c in current_cameras(inbox.store.list_assignments(), now).get(place_id, [])]
        return render(request, "place.html", nav="places", place=place, cameras=cameras)

    return app


def start_session(request: Request, account: Account, target: str) -> Response:
    """Log `account` in (any authenticator ends here) and go to `target`."""
    inbox = inbox_of(request)
    lifetime = timedelta(seconds=inbox.settings.session_lifetime)
    token = inbox.accounts.start_session(account.name, now=inbox.clock(), lifetime=lifetime)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()), httponly=True,
                        samesite="lax", secure=_secure(request), path="/")
    return response
