"""Admin pages: users (add, remove), API tokens (add, shown once; remove) and the
places registry (upload a new version of the YAML file that `vaktpost places import`
reads). The same rules as the CLI's (`accounts.check_new_user`, `tokens.check_new_token`,
`places.parse_places`); every change is an audit row. Other roles get 404, as for a
page that does not exist."""

from __future__ import annotations

from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vaktpost.broker.inbox.accounts import ROLES, Account, AccountError
from vaktpost.broker.inbox.tokens import Tokens
from vaktpost.broker.inbox.web import client, current_account, inbox_of, render, tr
from vaktpost.broker.incidents import service
from vaktpost.broker.incidents.kinds import Action
from vaktpost.broker.places import parse_places, write_registry
from vaktpost.contract.config import ConfigError

router = APIRouter(prefix="/admin")
MAX_REGISTRY_BYTES = 2_000_000


def admin_account(account: Annotated[Account, Depends(current_account)]) -> Account:
    if not account.is_admin:
        raise HTTPException(404)
    return account


Admin = Annotated[Account, Depends(admin_account)]


def _users_page(request: Request, *, error: str | None = None, status_code: int = 200,
                form: dict[str, str] | None = None) -> Response:
    inbox = inbox_of(request)
    districts = sorted({p["district"] for p in inbox.store.list_places() if p.get("district")})
    return render(request, "admin_users.html", status_code, nav="admin", users=inbox.accounts.list(), roles=ROLES,
                  districts=districts, error=error, form=form or {}, changes=service.admin_changes(inbox.store))


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, account: Admin) -> Response:
    return _users_page(request)


@router.post("/users")
def add_user(request: Request, account: Admin, name: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "",
             districts: Annotated[list[str] | None, Form()] = None, password: Annotated[str, Form()] = "") -> Response:
    inbox = inbox_of(request)
    chosen = [d for d in districts or [] if d]
    try:
        inbox.accounts.add(name, role, chosen, password, now=inbox.clock())
    except AccountError as e:
        message = tr(request, "The user could not be added:") + f" {e}"
        return _users_page(request, error=message, status_code=422, form={"name": name, "role": role})
    service.log_admin_change(inbox.store, Action.user_added, actor=account.name, client=client(request),
                             user=name, role=role, districts=chosen)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users/{name}/remove")
def remove_user(request: Request, name: str, account: Admin) -> Response:
    inbox = inbox_of(request)
    if name == account.name:
        return _users_page(request, error=tr(request, "You cannot remove yourself."), status_code=422)
    try:
        inbox.accounts.remove(name)
    except AccountError:
        raise HTTPException(404) from None
    service.log_admin_change(inbox.store, Action.user_removed, actor=account.name, client=client(request), user=name)
    return RedirectResponse("/admin/users", status_code=303)


def _places_page(request: Request, *, error: str | None = None, status_code: int = 200,
                 imported: tuple[int, int] | None = None) -> Response:
    store = inbox_of(request).store
    return render(request, "admin_places.html", status_code, nav="admin", places=store.list_places(),
                  assignments=store.list_assignments(), error=error, imported=imported)


@router.get("/places", response_class=HTMLResponse)
def places_page(request: Request, account: Admin, places: int | None = None, periods: int | None = None
                ) -> Response:
    return _places_page(request, imported=None if places is None or periods is None else (places, periods))


@router.post("/places")
async def import_places(request: Request, account: Admin, registry: Annotated[UploadFile, File()]) -> Response:
    data = await registry.read(MAX_REGISTRY_BYTES + 1)
    source = registry.filename or "places.yaml"
    try:
        if len(data) > MAX_REGISTRY_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_REGISTRY_BYTES // 1_000_000} MB")
        try:
            document = yaml.safe_load(data.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"{source}: not valid YAML: {e}") from None
        reg = parse_places(document, source=source)
    except ConfigError as e:
        return _places_page(request, error=str(e), status_code=422)
    store = inbox_of(request).store
    n_places, n_periods = write_registry(store, reg)
    service.log_admin_change(store, Action.places_imported, actor=account.name, client=client(request),
                             file=source, places=n_places, camera_periods=n_periods)
    return RedirectResponse(f"/admin/places?places={n_places}&periods={n_periods}", status_code=303)


def _tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.api_tokens
    return tokens


def _tokens_page(request: Request, *, error: str | None = None, status_code: int = 200,
                 new_token: tuple[str, str] | None = None, form: dict[str, str] | None = None) -> Response:
    districts = sorted({p["district"] for p in inbox_of(request).store.list_places() if p.get("district")})
    return render(request, "admin_tokens.html", status_code, nav="admin", tokens=_tokens(request).list(),
                  roles=ROLES, districts=districts, error=error, new_token=new_token, form=form or {})


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, account: Admin) -> Response:
    return _tokens_page(request)


@router.post("/tokens")
def add_token(request: Request, account: Admin, name: Annotated[str, Form()] = "",
              role: Annotated[str, Form()] = "", districts: Annotated[list[str] | None, Form()] = None) -> Response:
    inbox = inbox_of(request)
    chosen = [d for d in districts or [] if d]
    try:
        token = _tokens(request).add(name, role, chosen, now=inbox.clock())
    except AccountError as e:
        message = tr(request, "The token could not be added:") + f" {e}"
        return _tokens_page(request, error=message, status_code=422, form={"name": name, "role": role})
    service.log_admin_change(inbox.store, Action.token_added, actor=account.name, client=client(request),
                             token=name, role=role, districts=chosen)
    # Shown in this response only (no redirect: the token must not sit in a URL or the history).
    return _tokens_page(request, new_token=(name, token))


@router.post("/tokens/{name}/remove")
def remove_token(request: Request, name: str, account: Admin) -> Response:
    try:
        _tokens(request).remove(name)
    except AccountError:
        raise HTTPException(404) from None
    service.log_admin_change(inbox_of(request).store, Action.token_removed, actor=account.name,
                             client=client(request), token=name)
    return RedirectResponse("/admin/tokens", status_code=303)
