"""Score the node's analysis of labelled clips against their ground truth.

A clip is ``NAME.json`` beside its video, in the format vaktpost/scenarios.py
writes (hand-labelled real recordings in the same format work too). For each
clip the node pipeline runs over the video with the clip's config and start
time (vaktpost.edge.analyze), and its events are matched to the expectations:

* an event *fits* an expectation when the type is the same, the subtype and
  zone are the same where the expectation names them, and the event started
  within the expectation's window (edges included);
* matching is one-to-one and as large as possible (an expectation takes at
  most one event and an event satisfies at most one expectation), required
  (``must``) expectations first; ties go to the earliest event;
* a matched required expectation is a true positive (TP), an unmatched one a
  false negative (FN); an event left over is a false positive (FP), a false
  alarm. An optional expectation (``must: false``) may absorb an event, which
  then is neither TP nor FP, and is no FN when nothing comes.

Events of a type the clip forbids are always left over, so they are FPs too;
they are also counted on their own. `motion` is not scored: every clip has
motion, and it is reported only as a count.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from vaktpost.contract.events import Event, EventType
from vaktpost.scenarios import Expected

UNSCORED = frozenset({EventType.motion.value})
SCORED_TYPES = tuple(t.value for t in EventType if t.value not in UNSCORED)
_EPS = 1e-6  # event times come from datetimes with microsecond resolution


@dataclass(frozen=True)
class Observed:
    """An analysis event as the scorer sees it: times in seconds from the clip's first frame."""

    type: str
    start_s: float
    subtype: str | None = None
    zone: str | None = None
    end_s: float | None = None
    confidence: float = 0.0

    @classmethod
    def from_event(cls, ev: Event, start_time: datetime) -> Observed:
        def rel(t: datetime) -> float:
            return (t - start_time).total_seconds()

        return cls(type=ev.type.value, start_s=rel(ev.started_at), subtype=ev.subtype, zone=ev.zone,
                   end_s=rel(ev.ended_at) if ev.ended_at else None, confidence=ev.confidence)

    def label(self) -> str:
        what = self.type + (f"/{self.subtype}" if self.subtype else "") + (f"@{self.zone}" if self.zone else "")
        return f"{what} at {self.start_s:.1f} s"


def fits(exp: Expected, ev: Observed) -> bool:
    """True when `ev` satisfies `exp`: same type, same subtype/zone where given, start inside the window."""
    if ev.type != exp.type:
        return False
    if exp.subtype is not None and ev.subtype != exp.subtype:
        return False
    if exp.zone is not None and ev.zone != exp.zone:
        return False
    return exp.from_s - _EPS <= ev.start_s <= exp.to_s + _EPS


def match(expected: Sequence[Expected], events: Sequence[Observed]) -> dict[int, int]:
    """Maximum one-to-one matching {expectation index: event index}, required expectations first.

    Augmenting paths (Kuhn's algorithm) rather than greedy: greedy can give an
    early event to the wrong one of two overlapping windows and miss the other.
    A matched expectation stays matched when a later path reroutes it, so the
    optional pass never costs a required match.
    """
    by_time = sorted(range(len(events)), key=lambda j: (events[j].start_s, j))
    candidates = [[j for j in by_time if fits(e, events[j])] for e in expected]
    owner: dict[int, int] = {}  # event index -> expectation index

    def augment(i: int, seen: set[int]) -> bool:
        # A free event first (earliest), so matches already made are only rerouted when needed.
        for j in candidates[i]:
            if j not in owner:
                owner[j] = i
                return True
        for j in candidates[i]:
            if j in seen:
                continue
            seen.add(j)
            if augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for required in (True, False):
        for i, e in enumerate(expected):
            if e.must == required:
                augment(i, set())
    return {i: j for j, i in owner.items()}


@dataclass
class ClipResult:
    name: str
    duration_s: float
    expected: list[Expected]
    events: list[Observed]  # scored types only
    forbidden: list[str]
    matches: dict[int, int]
    motion_events: int = 0
    analysis_s: float | None = None  # wall-clock seconds the analysis took

    @property
    def missed(self) -> list[Expected]:
        return [e for i, e in enumerate(self.expected) if e.must and i not in self.matches]

    @property
    def found(self) -> list[Expected]:
        return [e for i, e in enumerate(self.expected) if e.must and i in self.matches]

    @property
    def unexpected(self) -> list[Observed]:
        used = set(self.matches.values())
        return [ev for j, ev in enumerate(self.events) if j not in used]

    @property
    def forbidden_hits(self) -> list[Observed]:
        return [ev for ev in self.unexpected if ev.type in self.forbidden]

    @property
    def passed(self) -> bool:
        return not self.missed and not self.unexpected

    def counts(self) -> dict[str, Counter]:
        """{"tp"|"fn"|"fp"|"forbidden": Counter by event type}."""
        return {
            "tp": Counter(e.type for e in self.found),
            "fn": Counter(e.type for e in self.missed),
            "fp": Counter(ev.type for ev in self.unexpected),
            "forbidden": Counter(ev.type for ev in self.forbidden_hits),
        }

    def summary(self) -> str:
        """One line: outcome and what went wrong."""
        parts = [f"{self.name}: {'PASS' if self.passed else 'FAIL'}",
                 f"{len(self.found)}/{len(self.found) + len(self.missed)} expected found"]
        if self.missed:
            parts.append("missed " + ", ".join(e.label() for e in self.missed))
        if self.unexpected:
            parts.append("false alarms " + ", ".join(
                ev.label() + (" (forbidden)" if ev.type in self.forbidden else "") for ev in self.unexpected))
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "duration_s": self.duration_s,
            "passed": self.passed,
            "found": [e.to_json() for e in self.found],
            "missed": [e.to_json() for e in self.missed],
            "false_alarms": [_observed_json(ev) for ev in self.unexpected],
            "forbidden_hits": len(self.forbidden_hits),
            "events": [_observed_json(ev) for ev in self.events],
            "motion_events": self.motion_events,
            "analysis_s": self.analysis_s,
        }


def _observed_json(ev: Observed) -> dict:
    return {"type": ev.type, "subtype": ev.subtype, "zone": ev.zone, "start_s": round(ev.start_s, 3),
            "end_s": None if ev.end_s is None else round(ev.end_s, 3), "confidence": ev.confidence}


def score_clip(name: str, duration_s: float, expected: Sequence[Expected], forbidden: Sequence[str],
               events: Sequence[Observed]) -> ClipResult:
    """Match one clip's events (any types; motion is set aside) to its expectations."""
    scored = [ev for ev in events if ev.type not in UNSCORED]
    return ClipResult(
        name=name, duration_s=duration_s, expected=list(expected), events=scored,
        forbidden=list(forbidden), matches=match(expected, scored),
        motion_events=sum(ev.type in UNSCORED for ev in events),
    )


# --- the report ---------------------------------------------------------------------


@dataclass(frozen=True)
class TypeStats:
    type: str
    tp: int
    fn: int
    fp: int
    forbidden: int
    hours: float

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def false_alarms_per_hour(self) -> float | None:
        return self.fp / self.hours if self.hours > 0 else None

    def to_json(self) -> dict:
        return {"type": self.type, "tp": self.tp, "fn": self.fn, "fp": self.fp, "forbidden": self.forbidden,
                "precision": self.precision, "recall": self.recall,
                "false_alarms_per_hour": self.false_alarms_per_hour}


@dataclass
class Report:
    clips: list[ClipResult] = field(default_factory=list)

    @property
    def video_s(self) -> float:
        return sum(c.duration_s for c in self.clips)

    @property
    def hours(self) -> float:
        return self.video_s / 3600.0

    def _sum(self, kind: str) -> Counter:
        total: Counter = Counter()
        for c in self.clips:
            total += c.counts()[kind]
        return total

    def per_type(self) -> list[TypeStats]:
        """One row per scored event type that was expected or reported, in EventType order.

        False alarms per hour use all the video, not only the clips about that
        type: a tamper false alarm can come from any clip.
        """
        tp, fn, fp, fb = (self._sum(k) for k in ("tp", "fn", "fp", "forbidden"))
        seen = set(tp) | set(fn) | set(fp)
        extra = sorted(seen - set(SCORED_TYPES))  # hand-written files may name other types
        return [TypeStats(t, tp[t], fn[t], fp[t], fb[t], self.hours)
                for t in (*SCORED_TYPES, *extra) if t in seen]

    def overall(self) -> TypeStats:
        rows = self.per_type()
        return TypeStats("all", sum(r.tp for r in rows), sum(r.fn for r in rows), sum(r.fp for r in rows),
                         sum(r.forbidden for r in rows), self.hours)

    def table(self) -> str:
        """Per-type scores and per-clip outcomes as two Markdown tables (readable as plain text)."""
        def pct(v: float | None) -> str:
            return "–" if v is None else f"{100 * v:.0f} %"

        def rate(v: float | None) -> str:
            return "–" if v is None else f"{v:.1f}"

        rows = [[r.type, str(r.tp), str(r.fn), str(r.fp), str(r.forbidden), pct(r.precision), pct(r.recall),
                 rate(r.false_alarms_per_hour)] for r in (*self.per_type(), self.overall())]
        types = _markdown(["type", "TP", "FN", "FP", "of which forbidden", "precision", "recall",
                           "false alarms / h"], rows)
        clip_rows = []
        for c in self.clips:
            notes = [f"missed {e.label()}" for e in c.missed]
            notes += [f"false alarm {ev.label()}" + (" (forbidden)" if ev.type in c.forbidden else "")
                      for ev in c.unexpected]
            speed = "–" if not c.analysis_s else f"{c.duration_s / c.analysis_s:.1f}x"
            clip_rows.append([c.name, f"{c.duration_s:g} s", f"{len(c.found)}/{len(c.found) + len(c.missed)}",
                              str(len(c.unexpected)), "pass" if c.passed else "FAIL", speed,
                              "; ".join(notes) or "–"])
        clips = _markdown(["clip", "length", "found", "false alarms", "result", "speed", "notes"], clip_rows)
        passed = sum(c.passed for c in self.clips)
        head = (f"{len(self.clips)} clips, {self.video_s / 60:.1f} min of video, {passed} passed; "
                f"motion events (not scored): {sum(c.motion_events for c in self.clips)}")
        return f"{head}\n\n{types}\n\n{clips}\n"

    def to_json(self) -> dict:
        return {
            "clips": [c.to_json() for c in self.clips],
            "types": [r.to_json() for r in self.per_type()],
            "overall": self.overall().to_json(),
            "video_s": self.video_s,
            "passed": sum(c.passed for c in self.clips),
        }


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


# --- clips on disk -------------------------------------------------------------------


@dataclass
class Clip:
    """One clip's ground-truth file, parsed and checked."""

    name: str
    video: Path
    start_time: datetime
    duration_s: float
    config: dict
    expected: list[Expected]
    forbidden: list[str]
    description: str = ""


def load_clip(path: Path) -> Clip:
    """Read NAME.json; ValueError (naming the file) when it is not a valid ground-truth file."""
    try:
        data = json.loads(Path(path).read_text())
        clip = _parse_clip(data, Path(path).parent)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    return clip


def _parse_clip(data: dict, base: Path) -> Clip:
    start = datetime.fromisoformat(data["start_time"])
    if start.tzinfo is None:
        raise ValueError("start_time must carry a time zone")
    expected = [Expected.from_json(e) for e in data.get("expected", [])]
    forbidden = [str(t) for t in data.get("forbidden", [])]
    known = {t.value for t in EventType}
    for t in [e.type for e in expected] + forbidden:
        if t not in known:
            raise ValueError(f"unknown event type {t!r}")
        if t in UNSCORED:
            raise ValueError(f"{t!r} is not scored and cannot be expected or forbidden")
    both = {e.type for e in expected} & set(forbidden)
    if both:
        raise ValueError(f"types both expected and forbidden: {sorted(both)}")
    return Clip(name=str(data["name"]), video=base / data["video"], start_time=start,
                duration_s=float(data["duration_s"]), config=data["config"], expected=expected,
                forbidden=forbidden, description=str(data.get("description", "")))


def clip_files(dir: Path) -> list[Path]:
    files = sorted(Path(dir).glob("*.json"))
    if not files:
        raise ValueError(f"{dir}: no clip .json files (make some with `vaktpost scenarios generate {dir}`)")
    return files


def run_clip(clip: Clip) -> ClipResult:
    """Analyse one clip with the node pipeline and score it."""
    from vaktpost.edge.analyze import analyze
    from vaktpost.edge.config import parse

    config = parse(clip.config, source=f"{clip.name}.json config")
    started = time.monotonic()
    result = analyze(clip.video, config, config.cameras[0], clip.start_time)
    elapsed = time.monotonic() - started
    events = [Observed.from_event(ev, clip.start_time) for ev in result.events]
    scored = score_clip(clip.name, clip.duration_s, clip.expected, clip.forbidden, events)
    scored.analysis_s = elapsed
    return scored


def evaluate(dir: Path, *, on_clip: Callable[[ClipResult], None] | None = None) -> Report:
    """Analyse and score every clip in `dir` (sorted by file name); `on_clip` hears each result.

    All ground-truth files are read and checked before the first (slow) analysis.
    """
    clips = [load_clip(p) for p in clip_files(dir)]
    report = Report()
    for clip in clips:
        result = run_clip(clip)
        report.clips.append(result)
        if on_clip is not None:
            on_clip(result)
    return report
