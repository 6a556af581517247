"""The register in words, in any language (each function takes the language's
`gettext`; the strings are in the inbox's catalogue, docs/inbox.md "Languages"), and
as CSV: one row per camera, `;`-separated, UTF-8 with a byte order mark so that
Excel with Swedish settings opens it as it is."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, get_day_names
from babel.numbers import format_percent
from babel.units import format_unit

from vaktpost.broker.config import RetentionSection
from vaktpost.broker.incidents.labels import type_labels
from vaktpost.broker.register.rows import RegisterRow
from vaktpost.contract.messages import CameraSetup
from vaktpost.contract.schedule import (
    DAYS,
    HOLIDAY,
    ArmedRange,
    ArmedSchedule,
    hours,
    intersect,
    local_intervals,
    merge,
)

Gettext = Callable[[str], str]
CSV_DELIMITER = ";"  # Excel with Swedish (and most European) settings splits on `;`, not `,`
_DAY = 86400.0
_MONDAY = date(2024, 1, 1)  # any Monday: the weekly hours are those of a week without holidays


# -- schedules -------------------------------------------------------------------------

def _clock(t: time | str) -> str:
    if t == "24:00":
        return "24"
    assert isinstance(t, time)
    return f"{t.hour:02d}" if t.minute == 0 else f"{t.hour:02d}:{t.minute:02d}"


def _hours(r: ArmedRange, gettext: Gettext) -> str:
    if r.from_ == time(0) and r.to in ("24:00", time(0)):
        return gettext("all day")
    return f"{_clock(r.from_)}–{_clock(r.to)}"


def _weekdays(days: set[str], lang: str) -> str:
    """Runs of three days or more as mån–fre, others listed: mån, ons."""
    names = get_day_names("abbreviated", locale=lang)
    index = sorted(DAYS.index(d) for d in days)
    runs: list[list[int]] = []
    for i in index:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = [f"{names[r[0]]}–{names[r[-1]]}" if len(r) >= 3 else ", ".join(names[i] for i in r) for r in runs]
    return ", ".join(parts)


def _days(days: Iterable[str], gettext: Gettext, lang: str) -> str:
    week = set(days) - {HOLIDAY}
    if week == set(DAYS):
        text = gettext("every day")
    elif week == {"sat", "sun"}:
        text = gettext("weekends")
    else:
        text = _weekdays(week, lang)
    if HOLIDAY not in days:
        return text
    return gettext("%(days)s and holidays") % {"days": text} if week else gettext("holidays")


def schedule_words(schedule: ArmedSchedule, gettext: Gettext, lang: str) -> str:
    """E.g. 'mån–fre 20–06, helger och helgdagar 17–07 (förinställning skolfasad)'."""
    parts = [", ".join(f"{_days(r.days, gettext, lang)} {_hours(r, gettext)}" for r in schedule.ranges)]
    if schedule.armed_dates:
        parts.append(gettext("dates armed all day: %(n)d") % {"n": len(schedule.armed_dates)})
    if not schedule.ranges and not schedule.armed_dates:
        return gettext("never armed")
    if schedule.exceptions:
        parts.append(gettext("dates not armed: %(n)d") % {"n": len(schedule.exceptions)})
    text = "; ".join(p for p in parts if p)
    if schedule.preset is not None:
        presets = {"school_facade": gettext("school facade")}
        text += " (" + gettext("preset %(name)s") % {"name": presets.get(schedule.preset, schedule.preset)} + ")"
    return text


def weekly_armed_hours(camera: CameraSetup) -> float:
    """Hours a week that any zone of `camera` is armed, in a week without holidays or
    dated exceptions (wall-clock hours: a week with a DST change differs by one)."""
    spans = []
    for zone in camera.zones:
        plain = ArmedSchedule(ranges=zone.schedule.ranges)
        # From the Sunday before, so that its overnight range counts on Monday morning.
        spans += local_intervals(plain, _MONDAY - timedelta(days=1), _MONDAY + timedelta(days=6))
    week = [(datetime.combine(_MONDAY, time()), datetime.combine(_MONDAY + timedelta(days=7), time()))]
    return hours(intersect(merge(spans), week))


# -- the rest of a row -------------------------------------------------------------------

def snapshot_words(camera: CameraSetup, gettext: Gettext) -> str:
    """E.g. 'anonymised image: Intrusion, Loitering; no image: Motion'."""
    if not camera.snapshots:
        return gettext("no image")
    labels = {t.value: word for t, word in type_labels(gettext).items()}
    modes = {"anonymised": gettext("anonymised image"), "none": gettext("no image")}
    out = []
    for mode in ("anonymised", "none"):
        types = [labels.get(t.value, t.value) for t, m in camera.snapshots.items() if m == mode]
        if types:
            out.append(f"{modes[mode]}: {', '.join(types)}")
    return "; ".join(out)


def duration_words(seconds: float, lang: str) -> str:
    """Whole days as days (7 dygn, 1 day), otherwise hours."""
    if seconds % _DAY == 0:
        return format_unit(int(seconds // _DAY), "duration-day", length="long", locale=lang)
    return format_unit(round(seconds / 3600, 1), "duration-hour", length="long", locale=lang)


def flag_words(row: RegisterRow, gettext: Gettext) -> str:
    return {None: "", "no_config": gettext("The node has not reported its config."),
            "not_in_config": gettext("The node's config does not list this camera."),
            "unassigned": gettext("Not assigned to a place.")}[row.flag]


@dataclass(frozen=True)
class RowText:
    """One camera's register entry in words (the CSV's columns, in this order)."""

    district: str
    place: str
    address: str
    node: str
    camera: str
    purpose: str
    responsible: str
    masked: str
    zones: str  # one zone per line: "name: schedule"
    armed_per_week: str
    snapshots: str
    node_retention: str
    central_retention: str
    config_at: str
    assigned_from: str
    note: str
    place_id: str = ""  # grouping on the page; not a column


def headers(gettext: Gettext) -> dict[str, str]:
    """Column titles by RowText field."""
    return {"district": gettext("District"), "place": gettext("Place"), "address": gettext("Address"),
            "node": gettext("Node"), "camera": gettext("Camera"), "purpose": gettext("Purpose"),
            "responsible": gettext("Responsible"), "masked": gettext("Masked share of the view"),
            "zones": gettext("Zones and armed hours"), "armed_per_week": gettext("Armed hours a week"),
            "snapshots": gettext("Snapshots"), "node_retention": gettext("Kept on the node (unsent events)"),
            "central_retention": gettext("Kept centrally"), "config_at": gettext("Config reported"),
            "assigned_from": gettext("At the place since"), "note": gettext("Note")}


COLUMNS = tuple(f.name for f in fields(RowText) if f.name != "place_id")


def _when(t: datetime | None, zone: ZoneInfo, lang: str) -> str:
    return "" if t is None else format_datetime(t.astimezone(zone), "short", tzinfo=zone, locale=lang)


def row_text(row: RegisterRow, retention: RetentionSection, gettext: Gettext, lang: str, zone: ZoneInfo) -> RowText:
    place = row.place or {}
    cam = row.camera
    central = gettext("snapshots %(snapshots)s, events %(events)s") % {
        "snapshots": duration_words(retention.snapshots, lang), "events": duration_words(retention.events, lang)}
    weekly = "" if cam is None else format_unit(round(weekly_armed_hours(cam), 1), "duration-hour",
                                                 length="short", locale=lang)
    return RowText(
        district=place.get("district") or "", place=place.get("name", ""), address=place.get("address") or "",
        node=row.node_id, camera=row.camera_id, purpose=place.get("purpose") or "",
        responsible=place.get("responsible") or "",
        masked="" if cam is None else format_percent(round(cam.masked_share, 3), locale=lang,
                                                    decimal_quantization=False),
        zones="" if cam is None else "\n".join(f"{z.name}: {schedule_words(z.schedule, gettext, lang)}"
                                               for z in cam.zones) or gettext("no zones"),
        armed_per_week=weekly, snapshots="" if cam is None else snapshot_words(cam, gettext),
        node_retention="" if row.node_retention is None else duration_words(row.node_retention, lang),
        central_retention=central, config_at=_when(row.config_at, zone, lang),
        assigned_from=_when(row.assigned_from, zone, lang), note=flag_words(row, gettext),
        place_id=place.get("id", ""))


def texts(rows: Sequence[RegisterRow], retention: RetentionSection, gettext: Gettext, lang: str,
          zone: ZoneInfo) -> list[RowText]:
    return [row_text(r, retention, gettext, lang, zone) for r in rows]


def to_csv(rows: Sequence[RowText], gettext: Gettext) -> bytes:
    """One line per camera under a header line; `;`-separated, UTF-8 with BOM."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=CSV_DELIMITER)
    titles = headers(gettext)
    writer.writerow([titles[c] for c in COLUMNS])
    for r in rows:
        writer.writerow([getattr(r, c) for c in COLUMNS])
    return buf.getvalue().encode("utf-8-sig")
