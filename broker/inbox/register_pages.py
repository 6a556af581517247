"""The camera register's page (`/register`) and its downloads (`/register.csv`,
`/register.pdf`), and the PDF for `vaktpost register` (docs/inbox.md, "Camera register").

For admins and operators only (viewers get 404, as for a page that does not exist);
scoped as the inbox: an operator sees the cameras of their districts' places, and
cameras assigned to no place are for admins. The central retention comes from the
app's `state.retention` (the central config's, set by `server.build_app`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import groupby
from typing import Annotated
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from vaktpost.broker.config import RetentionSection
from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.inbox.i18n import load_translations
from vaktpost.broker.inbox.scope import district_filter
from vaktpost.broker.inbox.web import HERE, current_account, inbox_of, render
from vaktpost.broker.register.rows import register_rows
from vaktpost.broker.register.words import RowText, headers, texts, to_csv
from vaktpost.broker.store import Store

router = APIRouter()
Staff = Annotated[Account, Depends(current_account)]


@dataclass(frozen=True)
class Site:
    """The cameras of one place (or, with `place_id` "", of no place) for the page and PDF."""

    place_id: str
    first: RowText  # the place's columns are the same in every row of it
    cameras: list[RowText]


def sites(rows: Sequence[RowText]) -> list[Site]:
    out = []
    for place_id, group in groupby(rows, key=lambda r: r.place_id):
        cameras = list(group)
        out.append(Site(place_id, cameras[0], cameras))
    return out


def _staff(account: Account) -> Account:
    if account.role not in ("admin", "operator"):
        raise HTTPException(404)  # to a viewer the register does not exist
    return account


def _texts(request: Request, account: Account) -> list[RowText]:
    inbox = inbox_of(request)
    retention: RetentionSection = getattr(request.app.state, "retention", None) or RetentionSection()
    rows = register_rows(inbox.store, inbox.clock(), districts=district_filter(account))
    lang = request.state.lang
    return texts(rows, retention, inbox.translations[lang].gettext, lang, ZoneInfo(inbox.settings.timezone))


def _download(body: bytes, media_type: str, name: str) -> Response:
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@router.get("/register", response_class=HTMLResponse)
def register_page(request: Request, account: Staff) -> Response:
    _staff(account)
    rows = _texts(request, account)
    return render(request, "register.html", nav="register", sites=sites(rows), columns=headers(
        inbox_of(request).translations[request.state.lang].gettext), count=len(rows))


@router.get("/register.csv")
def register_csv(request: Request, account: Staff) -> Response:
    _staff(account)
    gettext = inbox_of(request).translations[request.state.lang].gettext
    return _download(to_csv(_texts(request, account), gettext), "text/csv; charset=utf-8", "kameraregister.csv")


@router.get("/register.pdf")
def register_pdf(request: Request, account: Staff) -> Response:
    _staff(account)
    inbox = inbox_of(request)
    pdf = render_pdf(_texts(request, account), request.state.lang, ZoneInfo(inbox.settings.timezone),
                     inbox.clock(), scope=None if account.is_admin else sorted(account.districts))
    return _download(pdf, "application/pdf", "kameraregister.pdf")


# -- the PDF (also `vaktpost register -o FILE.pdf`, which has no running inbox) ----------

@lru_cache(maxsize=4)
def _print_environment(lang: str) -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"], auto_reload=False)
    env.install_gettext_translations(load_translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


def render_html(rows: Sequence[RowText], lang: str, zone: ZoneInfo, now: datetime, *,
                scope: Sequence[str] | None = None) -> str:
    """The register as a standalone printable HTML page; `scope`: the districts it was
    limited to (None: all)."""
    gettext = load_translations(lang).gettext
    return _print_environment(lang).get_template("register_print.html").render(
        lang=lang, sites=sites(rows), columns=headers(gettext), count=len(rows), scope=scope,
        made=format_datetime(now.astimezone(zone), "short", tzinfo=zone, locale=lang))


def render_pdf(rows: Sequence[RowText], lang: str, zone: ZoneInfo, now: datetime, *,
               scope: Sequence[str] | None = None) -> bytes:
    from weasyprint import HTML  # imported when used: it loads Pango

    pdf: bytes = HTML(string=render_html(rows, lang, zone, now, scope=scope), base_url=str(HERE)).write_pdf()
    return pdf


def register_texts(store: Store, retention: RetentionSection, now: datetime, lang: str, zone: ZoneInfo
                   ) -> list[RowText]:
    """The whole register in words (the CLI's; an admin's view)."""
    return texts(register_rows(store, now), retention, load_translations(lang).gettext, lang, zone)
