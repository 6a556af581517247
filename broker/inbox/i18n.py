"""Languages of the inbox: gettext catalogues (Babel), Swedish by default, and local times.

The catalogues are `locale/<lang>/LC_MESSAGES/messages.po` beside this module; they are
compiled to gettext's binary form in memory when the app starts, so no build step and
no committed .mo files are needed. The source strings are English, so English needs
no catalogue. Updating the catalogues: docs/inbox.md, "Languages".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = ("sv", "en")
DEFAULT_LANGUAGE = "sv"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANG_COOKIE = "vaktpost_lang"


def load_translations(lang: str, locale_dir: Path = LOCALE_DIR) -> NullTranslations:
    """The compiled catalogue of `lang`; no-op translations when it has none (English)."""
    po = locale_dir / lang / "LC_MESSAGES" / "messages.po"
    if not po.is_file():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf)


def choose_language(query: str | None, cookies: Mapping[str, str]) -> str:
    """`?lang=` first, then the remembered choice (cookie), else Swedish. The browser's
    Accept-Language is not used: many staff browsers are set to English, and the inbox
    is Swedish unless the person asks otherwise."""
    for candidate in (query, cookies.get(LANG_COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE


def local_time(value: datetime | None, zone: ZoneInfo, lang: str | Locale, fmt: str = "medium") -> str:
    """`value` (aware; naive is UTC) in `zone`, formatted for `lang`; '—' for None."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return format_datetime(value.astimezone(zone), format=fmt, tzinfo=zone, locale=lang)
