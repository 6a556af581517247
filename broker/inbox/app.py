"""The inbox web app (FastAPI, server-rendered Jinja2 pages): login and logout, the
places and cameras page with node health, and the incident pages of
`incidents_pages`. `create_app` builds it; `vaktpost.broker.inbox.server` serves it
with uvicorn.

Every page needs a logged-in `Account` (`web.current_account`), and every
state-changing request a CSRF token (`web.csrf_guard`, an app-wide dependency).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vaktpost.broker.config import InboxSection
from vaktpost.broker.exposure import exposure
from vaktpost.broker.inbox import (
    admin_pages,
    api,
    csrf,
    incidents_pages,
    lagesbild_pages,
    measures_pages,
    register_pages,
    subscriptions_page,
)
from vaktpost.broker.inbox.accounts import Account, Accounts
from vaktpost.broker.inbox.auth import Authenticator, LocalPasswordAuthenticator, PasswordAuthenticator
from vaktpost.broker.inbox.health import camera_health, current_cameras
from vaktpost.broker.inbox.i18n import LANG_COOKIE, LANGUAGES, choose_language
from vaktpost.broker.inbox.scope import sees_district, visible_places
from vaktpost.broker.inbox.web import (
    HERE,
    SESSION_COOKIE,
    YEAR,
    Inbox,
    LoginRequired,
    client,
    csrf_guard,
    current_account,
    inbox_of,
    is_api_path,
    render,
    secure,
    tr,
)
from vaktpost.broker.notify.tables import create_tables as create_notify_tables
from vaktpost.broker.store import Store, utcnow

PLACES_PAGE = 25  # places on one page of /places


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//host" and "/\host" would leave it.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def create_app(store: Store, settings: InboxSection, secret: bytes, *,
               authenticator: Authenticator | None = None, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The inbox over `store` (tables created if missing)."""
    accounts = Accounts(store.engine)
    store.create_all()
    accounts.create_tables()
    create_notify_tables(store.engine)  # subscriptions refer to users
    app = FastAPI(title="Vaktpost inbox", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(csrf_guard)])
    app.state.inbox = Inbox(store, accounts, authenticator or LocalPasswordAuthenticator(accounts),
                            settings, secret, clock)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(incidents_pages.router)
    app.include_router(admin_pages.router)
    app.state.exposure = exposure  # rates of the situational picture
    app.include_router(subscriptions_page.router)
    app.include_router(lagesbild_pages.router)
    measures_pages.include(app, store)
    app.include_router(register_pages.router)
    api.include_api(app, store)

    @app.middleware("http")
    async def per_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        query_lang = request.query_params.get("lang")
        request.state.lang = choose_language(query_lang, request.cookies)
        nonce = request.cookies.get(csrf.CSRF_COOKIE)
        request.state.csrf_nonce = nonce or csrf.new_nonce()
        response = await call_next(request)
        https = secure(request)
        if nonce is None:
            response.set_cookie(csrf.CSRF_COOKIE, request.state.csrf_nonce, httponly=True, samesite="strict",
                                secure=https, path="/")
        if query_lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, request.state.lang, max_age=YEAR, httponly=True, samesite="lax",
                                secure=https, path="/")
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
        if is_api_path(request.url.path):
            return api.error_response(exc)
        if exc.detail == csrf.REFUSED:
            message = tr(request, "Refused: the form had expired. Reload the page and try again.")
        else:
            messages = {403: tr(request, "Your role may not do this."), 404: tr(request, "Not found")}
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
        now, address = inbox.clock(), client(request)
        if inbox.throttle.locked(name, address, now):
            error = tr(request, "Too many failed attempts: login is locked for a while. Try again later.")
            return render(request, "login.html", 429, next=_safe_next(next), name=name, error=error)
        account = auth.authenticate(name, password)
        if account is None:
            inbox.throttle.failed(name, address, now)
            error = tr(request, "Wrong user name or password.")
            return render(request, "login.html", 401, next=_safe_next(next), name=name, error=error)
        inbox.throttle.succeeded(name, address, now)
        return start_session(request, account, _safe_next(next))

    @app.post("/logout")
    def logout(request: Request) -> Response:
        if token := request.cookies.get(SESSION_COOKIE):
            inbox_of(request).accounts.end_session(token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure(request), httponly=True, samesite="lax")
        return response

    @app.get("/places", response_class=HTMLResponse)
    def places_page(request: Request, account: Annotated[Account, Depends(current_account)],
                    district: str | None = None, page: int = 0) -> Response:
        inbox = inbox_of(request)
        now = inbox.clock()
        offline_after = timedelta(seconds=inbox.settings.node_offline_after)
        in_scope = sorted(visible_places(account, inbox.store.list_places()),
                          key=lambda p: (p.get("district") or "", p["name"]))
        districts = sorted({p["district"] for p in in_scope if p.get("district")})
        district = district if district in districts else None
        chosen = [p for p in in_scope if district is None or p.get("district") == district]
        # A city has hundreds of cameras: a page of places at a time keeps the page quick.
        page = min(max(page, 0), max(len(chosen) - 1, 0) // PLACES_PAGE)
        nodes = {n["node_id"]: n for n in inbox.store.list_nodes()}
        cameras = current_cameras(inbox.store.list_assignments(), now)
        shown = [
            {**p, "cameras": [camera_health(n, c, nodes.get(n), now, offline_after)
                              for n, c in cameras.get(p["id"], [])]}
            for p in chosen[page * PLACES_PAGE:(page + 1) * PLACES_PAGE]
        ]
        query = urlencode({"district": district} if district else {})
        return render(request, "places.html", nav="places", places=shown, now=now, districts=districts,
                      district=district, page=page, more=len(chosen) > (page + 1) * PLACES_PAGE, query=query)

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
        return render(request, "place.html", nav="places", place=place, cameras=cameras,
                      incidents=incidents_pages.place_incidents(request, account, place_id))

    return app


def start_session(request: Request, account: Account, target: str) -> Response:
    """Log `account` in (any authenticator ends here) and go to `target`."""
    inbox = inbox_of(request)
    lifetime = timedelta(seconds=inbox.settings.session_lifetime)
    token = inbox.accounts.start_session(account.name, now=inbox.clock(), lifetime=lifetime)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()), httponly=True,
                        samesite="lax", secure=secure(request), path="/")
    return response
