"""The words people read for measures, series and verdicts, in any language: each function
takes the language's `gettext` (the strings are in the inbox's catalogue, docs/inbox.md,
"Languages")."""

from __future__ import annotations

import math
from collections.abc import Callable

from vaktpost.broker.measures.service import MeasureKind
from vaktpost.broker.measures.stats import RateRatio, Verdict

Gettext = Callable[[str], str]


def kind_labels(gettext: Gettext) -> dict[MeasureKind, str]:
    return {MeasureKind.lighting: gettext("Lighting"), MeasureKind.fencing: gettext("Fencing"),
            MeasureKind.patrol: gettext("Patrol or guard"),
            MeasureKind.camera_coverage: gettext("Change of camera coverage"),
            MeasureKind.graffiti_removal: gettext("Faster graffiti removal"),
            MeasureKind.landlord: gettext("Cooperation with a landlord"), MeasureKind.other: gettext("Other")}


def series_labels(gettext: Gettext) -> dict[str, str]:
    return {"people": gettext("People (intrusion, loitering)"), "scene_change": gettext("Scene change"),
            "tamper": gettext("Camera tampering")}


def basis_labels(gettext: Gettext) -> dict[str, str]:
    return {"armed": gettext("per 1,000 armed camera-hours"), "online": gettext("per 1,000 online camera-hours")}


def verdict_labels(gettext: Gettext) -> dict[Verdict, str]:
    """One plain sentence per verdict; `%(change)s` and `%(low)s`–`%(high)s` are filled in."""
    return {
        Verdict.no_incidents: gettext("No incidents in either window: the data cannot tell."),
        Verdict.little_exposure: gettext("Too little camera time in a window to tell."),
        Verdict.too_few: gettext("Too few incidents to tell whether the measure made a difference."),
        Verdict.unclear: gettext("No clear change: the interval includes no change at all."),
        Verdict.fewer: gettext("Fewer incidents after the measure: %(change)s (95 %% interval %(low)s to %(high)s)."),
        Verdict.more: gettext("More incidents after the measure: %(change)s (95 %% interval %(low)s to %(high)s)."),
    }


def percent(value: float) -> str:
    if math.isinf(value):
        return "+∞ %"
    return f"{value:+.0f} %".replace("-", "−")


def verdict_text(rr: RateRatio, gettext: Gettext) -> str:
    """The verdict of `rr` as a sentence, with the change in per cent where it has one."""
    sentence = verdict_labels(gettext)[rr.verdict]
    change = rr.change_percent
    if rr.verdict in (Verdict.fewer, Verdict.more) and change is not None:
        return sentence % {"change": percent(change[0]), "low": percent(change[1]), "high": percent(change[2])}
    return sentence
