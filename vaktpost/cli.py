"""The one `vaktpost` command line. Each command is a thin wrapper: the work lives
in edge/ (node) and broker/ (central host); imports are lazy so the node does not
load central-only libraries."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from vaktpost.broker.store import Store

app = typer.Typer(help="Vaktpost: privacy-first camera monitoring for public buildings.",
                  no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Node configuration files.", no_args_is_help=True)
node_app = typer.Typer(help="Run a camera node.", no_args_is_help=True)
broker_app = typer.Typer(help="Mosquitto configuration for the central host.", no_args_is_help=True)
places_app = typer.Typer(help="The registry of places and camera assignments.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(node_app, name="node")
app.add_typer(broker_app, name="broker")
app.add_typer(places_app, name="places")
scenarios_app = typer.Typer(help="Labelled synthetic clips for evaluation.", no_args_is_help=True)
app.add_typer(scenarios_app, name="scenarios")
privacy_app = typer.Typer(help="What a node sends, for a DPIA.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")
users_app = typer.Typer(help="Accounts of the web inbox (docs/inbox.md).", no_args_is_help=True)
app.add_typer(users_app, name="users")
tokens_app = typer.Typer(help="Tokens of the inbox's JSON API (docs/inbox.md, \"API\").", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
subscriptions_app = typer.Typer(help="Notifications of new incidents to inbox users (docs/inbox.md).",
                                no_args_is_help=True)
app.add_typer(subscriptions_app, name="subscriptions")

err = Console(stderr=True, soft_wrap=True)  # messages stay on one line, greppable
out = Console()


# Rich reads [...] as markup: every text that is not ours (paths, names, error
# messages quoting a pattern) goes through `escape`, or brackets silently vanish.


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _node_config(path: Path):
    from vaktpost.contract.config import ConfigError
    from vaktpost.edge.config import load
    try:
        return load(path)
    except ConfigError as e:
        raise _fail(str(e)) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


# -- node ------------------------------------------------------------------
@config_app.command("check")
def config_check(file: Path) -> None:
    """Validate a node config and the files it names; errors name the key and the problem."""
    from vaktpost.edge.config import missing_files, spool_problems
    cfg = _node_config(file)
    if missing := missing_files(cfg) + spool_problems(cfg):
        raise _fail(f"{file}:\n" + "\n".join(missing))
    out.print(escape(f"{file}: OK — node {cfg.node.id}, {len(cfg.cameras)} camera(s): "
                     + ", ".join(f"{c.id} ({len(c.zones)} zones)" for c in cfg.cameras)))


@config_app.command("example")
def config_example() -> None:
    """Print a commented example node config."""
    from vaktpost.edge.config.example import example_yaml
    sys.stdout.write(example_yaml())


@node_app.command("run")
def node_run(config: Annotated[Path, typer.Option("--config", "-c", help="Node YAML config")],
             verbose: bool = False) -> None:
    """Run the node: cameras → analysis → outbox → MQTT, until Ctrl-C."""
    _logging(verbose)
    from vaktpost.contract.config import ConfigError
    from vaktpost.edge.delivery.outbox import OutboxError
    from vaktpost.edge.node import Node
    cfg = _node_config(config)
    try:
        node = Node(cfg)
    except (ConfigError, OutboxError) as e:
        raise _fail(str(e)) from None
    node.run(_stop_on_signals())


@app.command()
def analyze(
    video: Annotated[Path, typer.Argument(help="Video file to analyse")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Node YAML config")],
    camera: Annotated[str | None, typer.Option(help="Camera id whose settings apply (default: first)")] = None,
    start_time: Annotated[str | None, typer.Option(help="ISO 8601 wall-clock time of frame 0 (default: now)")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write JSON lines here (default: stdout)")] = None,
    snapshots: Annotated[Path | None, typer.Option(
        help="Write every snapshot the node would send as DIR/<event_id>.jpg, byte for byte")] = None,
    motion_boxes: Annotated[Path | None, typer.Option(
        help='Write the motion boxes of every analysed frame as JSON lines: {"frame": i, "boxes": '
             '[[x1, y1, x2, y2], ...]} in the video\'s pixels, i counting decoded frames from 0')] = None,
) -> None:
    """Run the node pipeline over a video file without MQTT; one JSON line per event, final state."""
    from rich.progress import BarColumn, Progress, TimeRemainingColumn

    from vaktpost.contract.config import ConfigError
    from vaktpost.edge.analyze import analyze as run
    from vaktpost.edge.analyze import frame_total, write_jsonl
    from vaktpost.edge.capture.sources import SourceError
    from vaktpost.edge.modelfile import ModelError

    cfg = _node_config(config)
    try:
        cam = cfg.camera(camera)
    except ConfigError as e:
        raise _fail(str(e)) from None
    if start_time is None:
        t0 = datetime.now(UTC)
    else:
        try:
            t0 = datetime.fromisoformat(start_time)
        except ValueError:
            raise _fail(f"--start-time: not ISO 8601: {start_time!r}") from None
        if t0.tzinfo is None:
            from zoneinfo import ZoneInfo
            t0 = t0.replace(tzinfo=ZoneInfo(cfg.node.timezone))  # local time of the node
    if not video.is_file():
        raise _fail(f"{video}: no such file")
    total = frame_total(video)
    try:
        boxes_out = motion_boxes.open("w") if motion_boxes is not None else None
    except OSError as e:
        raise _fail(f"--motion-boxes: cannot write {motion_boxes}: {e.strerror}") from None

    def write_boxes(index: int, boxes: list[list[int]]) -> None:
        assert boxes_out is not None
        boxes_out.write(json.dumps({"frame": index, "boxes": boxes}) + "\n")

    with Progress("[progress.description]{task.description}", BarColumn(), "{task.completed}/{task.total} frames",
                  TimeRemainingColumn(), console=err, disable=not err.is_terminal, transient=True) as progress:
        task = progress.add_task(escape(f"analysing {video.name}"), total=total)
        try:
            result = run(video, cfg, cam, t0, on_frame=lambda i: progress.update(task, completed=i + 1),
                         on_motion=write_boxes if boxes_out is not None else None)
        except (SourceError, ModelError) as e:
            raise _fail(str(e)) from None
        finally:
            if boxes_out is not None:
                boxes_out.close()
    text = write_jsonl(result.events, out_file)
    if snapshots is not None:
        snapshots.mkdir(parents=True, exist_ok=True)
        for event_id, data in result.snapshots.items():
            (snapshots / f"{event_id}.jpg").write_bytes(data)
    if out_file is None:
        sys.stdout.write(text)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts().items())) or "no events"
    err.print(escape(f"{video.name}: {result.frames_read} frames read, {result.frames_analysed} analysed "
                     f"at {cam.fps:g} fps over {result.duration_s:.1f} s → {counts}"
                     + (f"; written to {out_file}" if out_file else "")
                     + (f"; {len(result.snapshots)} snapshots in {snapshots}" if snapshots else "")
                     + (f"; motion boxes in {motion_boxes}" if motion_boxes else "")),
              highlight=False)


@app.command()
def schema(write: Annotated[bool, typer.Option(
        help="Write vaktpost/contract/schema/event-<n>.schema.json, one file per version, and "
             "config-<n>.schema.json")] = False) -> None:
    """Print (as one JSON object by file name) or write the published JSON Schema of every
    event version and of the node's config message (docs/mqtt.md, "Versions")."""
    from vaktpost.contract.messages import published_schemas
    schemas = published_schemas()
    if not write:
        sys.stdout.write(json.dumps(schemas, indent=2, sort_keys=True) + "\n")
        return
    folder = Path(__file__).resolve().parent / "contract" / "schema"
    folder.mkdir(exist_ok=True)
    for file_name, published in schemas.items():
        (folder / file_name).write_text(json.dumps(published, indent=2, sort_keys=True) + "\n")
        err.print(escape(f"wrote {folder / file_name}"))


@privacy_app.command("report")
def privacy_report(config: Annotated[Path, typer.Option("--config", "-c", help="Node YAML config")]) -> None:
    """Print exactly what this node sends: event fields, snapshots, masks, retention (Markdown)."""
    from vaktpost.edge.privacy_report import report
    sys.stdout.write(report(_node_config(config)) + "\n")


@scenarios_app.command("generate")
def scenarios_generate(directory: Path,
                       quick: Annotated[bool, typer.Option(help="4 clips only")] = False) -> None:
    """Write labelled scenario clips (NAME.avi + NAME.json ground truth)."""
    from vaktpost.scenarios import generate
    err.print(escape(f"wrote {len(generate(directory, quick=quick))} clips to {directory}"))


@app.command("eval")
def eval_(directory: Path,
          json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON")] = None
          ) -> None:
    """Run the node pipeline over labelled clips; precision, recall and false alarms per hour."""
    from vaktpost.evaluate import evaluate
    try:
        result = evaluate(directory, on_clip=lambda c: err.print(c.summary(), markup=False, highlight=False))
    except ValueError as e:  # bad ground truth, or a ConfigError
        raise _fail(str(e)) from None
    sys.stdout.write(result.table())
    if json_out:
        json_out.write_text(json.dumps(result.to_json(), indent=2))


# -- central host ------------------------------------------------------------
@broker_app.command("init")
def broker_init(
    directory: Annotated[Path, typer.Argument(help="Directory for mosquitto.conf, passwd, acl, credentials.yaml")],
    node: Annotated[list[str] | None, typer.Option("--node", help="Node id (repeat for each node)")] = None,
    port: Annotated[int, typer.Option(help="Listener port")] = 1883,
    bind: Annotated[str, typer.Option(help="Listener address")] = "0.0.0.0",
    consumer: Annotated[list[str] | None, typer.Option(
        "--consumer", help="Central consumer account, one per consumer process (repeat; a new directory "
        "gets `central`)")] = None,
    observer: Annotated[list[str] | None, typer.Option(
        "--observer", help="Read-only integrator account: events, status, heartbeats (repeat)")] = None,
) -> None:
    """Write a ready Mosquitto config with one account per process (nodes, consumers, the inbox,
    observers) and its ACL. Re-running it keeps every password and adds the new names."""
    from vaktpost.broker.mosquitto import init_broker
    try:
        init_broker(directory, node or [], port, bind_address=bind, consumers=consumer, observers=observer)
    except (ValueError, RuntimeError, OSError) as e:
        raise _fail(str(e)) from None
    out.print(escape(f"wrote {directory}/mosquitto.conf, passwd, acl and credentials.yaml (mode 0600)\n"
                     f"start it with: mosquitto -c {directory.resolve()}/mosquitto.conf"))


def _central_config(path: Path | None, database: str | None):
    from vaktpost.broker.config import CentralConfig, load_central
    from vaktpost.contract.config import ConfigError
    try:
        cfg = load_central(path) if path else CentralConfig()
    except ConfigError as e:
        raise _fail(str(e)) from None
    if database:
        cfg = cfg.model_copy(update={"database": database})
    return cfg


@contextmanager
def _database(url: str, *, create: bool) -> Iterator[Store]:
    """The place log at `url`, closed afterwards; any database failure is one line. Without
    `create` a missing SQLite file is an error (and is not created: SQLite would)."""
    from vaktpost.broker.store import DatabaseError, Store, display_url, sqlite_file
    path = sqlite_file(url)
    if not create and path is not None and not path.is_file():
        raise _fail(f"no place log at {path.resolve()}: give --config CENTRAL.yaml or --database URL "
                    "(`vaktpost central` creates it)")
    try:
        store = Store(url)
    except ValueError as e:
        raise _fail(str(e)) from None
    try:
        if create:
            store.create_all()
        yield store
    except DatabaseError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise _fail(f"database {display_url(url)}: {reason}") from None
    finally:
        store.close()


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Central YAML config")]
DbOpt = Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL (overrides the config)")]


central_app = typer.Typer(help="Run the central consumer: MQTT → place log, acknowledging after each commit "
                          "(`vaktpost central --config CENTRAL.yaml`); `retire` ends a consumer's session.",
                          invoke_without_command=True)
app.add_typer(central_app, name="central")


@central_app.callback()
def central(ctx: typer.Context,
            config: Annotated[Path | None, typer.Option("--config", "-c", help="Central YAML config")] = None,
            verbose: bool = False) -> None:
    """Run the central consumer: MQTT → place log, acknowledging after each commit."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise _fail("give --config CENTRAL.yaml")
    _logging(verbose)
    from vaktpost.broker.service import StartError, db_reason, run_central
    from vaktpost.broker.store import DatabaseError
    from vaktpost.contract.config import ConfigError
    try:
        run_central(config)
    except (ConfigError, StartError) as e:
        raise _fail(str(e)) from None
    except DatabaseError as e:  # e.g. importing the places file hit a database error
        raise _fail(f"database: {db_reason(e)}") from None


@central_app.command("retire")
def central_retire(config: Annotated[Path, typer.Option("--config", "-c", help="The retired consumer's config")],
                   client_id: Annotated[str | None, typer.Option(
                       help="Client id of a session kept by an older release (before the broker bound client "
                       "ids to usernames)")] = None) -> None:
    """End a stopped consumer's MQTT session (clean start, session expiry 0), password from its config:
    the broker drops what it queued for it, the nodes resend what no consumer acknowledged."""
    from vaktpost.broker.retire import RetireError, retire_consumer
    from vaktpost.contract.config import ConfigError
    cfg = _central_config(config, None)
    try:
        retire_consumer(cfg.mqtt, client_id=client_id)
    except (RetireError, ConfigError) as e:
        raise _fail(str(e)) from None
    out.print(escape(f"ended the session of consumer {cfg.mqtt.username!r} on {cfg.mqtt.host}:{cfg.mqtt.port}; "
                     f"remove its account from credentials.yaml and re-run `vaktpost broker init` to retire it "
                     "for good"))


@app.command()
def purge(config: Annotated[Path, typer.Option("--config", "-c", help="Central YAML config")]) -> None:
    """Apply the central retention now: delete old snapshots, events, dead letters and resolved incidents."""
    from vaktpost.broker.service import run_purge
    cfg = _central_config(config, None)
    with _database(cfg.database, create=False):  # a place log that is not there has nothing to purge
        result = run_purge(cfg)
    out.print(f"purged {result.snapshots} snapshots, {result.events} events, {result.dead_letters} dead letters, "
              f"{result.incidents} resolved incidents")


@places_app.command("import")
def places_import(file: Path, config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Import places and camera assignments from YAML (re-import is idempotent)."""
    from vaktpost.broker.places import import_places
    from vaktpost.broker.store import display_url
    from vaktpost.contract.config import ConfigError
    cfg = _central_config(config, database)
    with _database(cfg.database, create=True) as store:
        try:
            n_places, n_cams = import_places(store, file)
        except ConfigError as e:
            raise _fail(str(e)) from None
    out.print(escape(f"imported {n_places} places and {n_cams} camera periods into {display_url(cfg.database)}"))


@app.command()
def register(
    output: Annotated[Path, typer.Option("--output", "-o", help="FILE.csv or FILE.pdf (by its extension)")],
    config: ConfigOpt = None, database: DbOpt = None,
    lang: Annotated[str, typer.Option(help="Language of the texts: sv or en")] = "sv",
) -> None:
    """Write the camera register (one row per camera: place, purpose, responsible, masking, armed
    hours, snapshots, retention) as CSV or PDF."""
    from zoneinfo import ZoneInfo

    kind = output.suffix.lower()
    if kind not in (".csv", ".pdf"):
        raise _fail(f"-o {output}: give a file name ending in .csv or .pdf")
    if lang not in ("sv", "en"):
        raise _fail(f"--lang {lang}: choose sv or en")
    if not output.parent.is_dir():
        raise _fail(f"-o {output}: no folder {output.parent}")
    from vaktpost.broker.inbox.i18n import load_translations
    from vaktpost.broker.inbox.register_pages import register_texts, render_pdf
    from vaktpost.broker.register.words import to_csv
    cfg = _central_config(config, database)
    zone, now = ZoneInfo(cfg.inbox.timezone), datetime.now(UTC)
    with _database(cfg.database, create=False) as store:
        store.create_all()  # an older place log gains the registry's purpose and responsible
        rows = register_texts(store, cfg.retention, now, lang, zone)
    if kind == ".csv":
        body = to_csv(rows, load_translations(lang).gettext)
    else:
        try:
            body = render_pdf(rows, lang, zone, now)
        except OSError as e:  # WeasyPrint's Pango missing (scripts/bootstrap.sh installs it)
            raise _fail(f"cannot make a PDF: {e}") from None
    try:
        output.write_bytes(body)
    except OSError as e:
        raise _fail(f"-o {output}: {e.strerror}") from None
    out.print(escape(f"wrote {len(rows)} cameras to {output}"))


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    import re
    from datetime import timedelta
    m = re.fullmatch(r"(\d+)([mhd])", value)
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--since: expected ISO 8601 or an age like 30m, 12h, 7d: {value!r}") from None
    return t if t.tzinfo else t.astimezone()


@app.command()
def events(
    config: ConfigOpt = None, database: DbOpt = None,
    place: Annotated[str | None, typer.Option(help="Place id")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time or age such as 12h, 7d")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Event type, e.g. motion")] = None,
    limit: Annotated[int, typer.Option(help="Rows at most")] = 200,
) -> None:
    """Print the place log as a table, newest first."""
    from rich.table import Table

    cfg = _central_config(config, database)
    after = _since(since)
    with _database(cfg.database, create=False) as store:
        rows = store.query_events(place=place, since=after, type=type, limit=limit)
    table = Table(title=f"place log ({len(rows)} events)")
    for col in ("started (UTC)", "ended", "place", "node/camera", "type", "zone", "conf"):
        table.add_column(col)
    for r in rows:
        table.add_row(*map(escape, (
            r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            r["ended_at"].strftime("%H:%M:%S") if r["ended_at"] else "—",
            r["place_name"] or r["place_id"] or "(unassigned)", f"{r['node_id']}/{r['camera_id'] or '-'}",
            r["type"] + (f"/{r['subtype']}" if r["subtype"] else ""), r["zone"] or "", f"{r['confidence']:.2f}",
        )))
    out.print(table)


@app.command()
def incidents(
    config: ConfigOpt = None, database: DbOpt = None,
    open_: Annotated[bool, typer.Option("--open", help="Only open incidents (new or acknowledged)")] = False,
    district: Annotated[str | None, typer.Option(help="District of the place")] = None,
    place: Annotated[str | None, typer.Option(help="Place id")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Incident type, e.g. intrusion, node_offline")] = None,
    limit: Annotated[int, typer.Option(help="Rows at most")] = 200,
) -> None:
    """Print incidents: open first, then highest priority, then newest (times in Europe/Stockholm)."""
    from zoneinfo import ZoneInfo

    from rich.table import Table

    from vaktpost.broker.incidents.kinds import DISPLAY_TZ
    from vaktpost.broker.incidents.service import list_incidents

    cfg = _central_config(config, database)
    tz = ZoneInfo(DISPLAY_TZ)
    with _database(cfg.database, create=False) as store:
        store.create_all()  # a place log from before incidents gains their tables
        rows = list_incidents(store, district=district, place=place, type=type, open_only=open_, limit=limit)
    table = Table(title=f"incidents ({len(rows)}; times in {DISPLAY_TZ})")
    for col in ("#", "opened", "last", "state", "priority", "type", "place", "node/camera", "zone", "events",
                "owner"):
        table.add_column(col)
    for i in rows:
        table.add_row(*map(escape, (
            str(i.id), i.opened_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
            i.last_event_at.astimezone(tz).strftime("%H:%M:%S"),
            i.state.value + (f" ({i.outcome.value})" if i.outcome else ""), i.priority.name, i.type.value,
            ", ".join(p.name for p in i.places) or "(unassigned)", f"{i.node_id}/{i.camera_id or '-'}",
            i.zone or "", str(i.event_count), i.owner or "",
        )))
    out.print(table)


def _dates(first: str, last: str) -> tuple[date, date]:
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise _fail(f"--from and --to must be dates YYYY-MM-DD: {first!r}, {last!r}") from None
    from vaktpost.broker.measures.report import ReportError, check_period
    try:
        check_period(start, end)
    except ReportError as e:
        raise _fail(str(e)) from None
    return start, end


def _district_of(store: Store, district: str | None) -> None:
    from vaktpost.broker.measures.report import districts
    known = districts(store)
    if district is not None and district not in known:
        raise _fail(f"no places in district {district!r} (districts: {', '.join(known) or 'none'})")


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as e:
        raise _fail(f"{path}: {e.strerror or e}") from None


@app.command()
def report(
    config: Annotated[Path, typer.Option("--config", "-c", help="Central YAML config")],
    district: Annotated[str, typer.Option(help="District (as in the places register)")],
    first: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD")],
    last: Annotated[str, typer.Option("--to", help="Last day (inclusive), YYYY-MM-DD")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The PDF to write")],
    lang: Annotated[str, typer.Option(help="sv or en")] = "sv",
) -> None:
    """Write the situational report of a district and period as PDF (docs/inbox.md, "Situational report")."""
    from zoneinfo import ZoneInfo

    from vaktpost.broker.exposure import exposure
    from vaktpost.broker.measures.exposure import ExposureSource
    from vaktpost.broker.measures.report import build, render_html, render_pdf
    from vaktpost.broker.measures.tables import create_tables
    from vaktpost.broker.store import utcnow

    if lang not in ("sv", "en"):
        raise _fail(f"--lang: sv or en, not {lang!r}")
    cfg = _central_config(config, None)
    start, end = _dates(first, last)
    zone = ZoneInfo(cfg.inbox.timezone)
    with _database(cfg.database, create=False) as store:
        store.create_all()
        create_tables(store.engine)
        _district_of(store, district)
        measured = ExposureSource(exposure, measured=True)  # the nodes' coverage, as the inbox's pages
        html = render_html(build(store, district, start, end, now=utcnow(), zone=zone, exposure=measured), lang, zone)
    try:
        pdf = render_pdf(html)
    except OSError as e:  # WeasyPrint could not load Pango
        raise _fail(f"cannot make the PDF ({e}): install Pango, e.g. scripts/bootstrap.sh") from None
    _write(out_file, pdf)
    out.print(escape(f"wrote {out_file} ({len(pdf) // 1024} KiB)"), highlight=False)


@app.command("export")
def export_(
    kind: Annotated[str, typer.Argument(help="incidents, events or summary")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Central YAML config")],
    first: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD")],
    last: Annotated[str, typer.Option("--to", help="Last day (inclusive), YYYY-MM-DD")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="FILE.csv or FILE.xlsx")],
    district: Annotated[str | None, typer.Option(help="Only this district (default: every place)")] = None,
    lang: Annotated[str, typer.Option(help="sv or en")] = "sv",
) -> None:
    """Export incidents, events or a summary per place and type as CSV or XLSX."""
    from datetime import time, timedelta
    from zoneinfo import ZoneInfo

    from vaktpost.broker.inbox.i18n import load_translations
    from vaktpost.broker.measures.exports import KINDS, export, to_csv, to_xlsx

    if kind not in KINDS:
        raise _fail(f"export: {', '.join(KINDS)}, not {kind!r}")
    if out_file.suffix.lower() not in (".csv", ".xlsx"):
        raise _fail(f"{out_file}: the name must end in .csv or .xlsx")
    if lang not in ("sv", "en"):
        raise _fail(f"--lang: sv or en, not {lang!r}")
    cfg = _central_config(config, None)
    start, end = _dates(first, last)
    zone = ZoneInfo(cfg.inbox.timezone)
    with _database(cfg.database, create=False) as store:
        store.create_all()
        _district_of(store, district)
        table = export(store, kind, [district] if district else None,
                       datetime.combine(start, time(0), zone), datetime.combine(end + timedelta(days=1), time(0), zone),
                       zone, load_translations(lang).gettext)
    data = to_csv(table).encode() if out_file.suffix.lower() == ".csv" else to_xlsx(table, kind)
    _write(out_file, data)
    more = " (cut at the limit)" if table.truncated else ""
    out.print(escape(f"wrote {len(table.rows)} rows{more} to {out_file}"), highlight=False)


@app.command()
def demo(
    workdir: Annotated[Path | None, typer.Option(
        help="Keep the demo's files here, central.yaml among them (default: a temp dir, removed)")] = None,
    nodes: Annotated[int, typer.Option(min=1, max=2, help="Number of camera nodes")] = 2,
    serve: Annotated[bool, typer.Option(
        "--serve/--no-serve", help="Then serve the inbox with a demo login until Ctrl-C")] = True,
    host: Annotated[str, typer.Option(help="The inbox's listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The inbox's port, 0 = a free one")] = 0,
) -> None:
    """Mosquitto + nodes over generated scenes + central consumer, a per-place summary, then the
    inbox over it (a demo login is printed) until Ctrl-C."""
    from vaktpost.demo import DemoError, InboxListen, run_demo
    try:
        code = run_demo(workdir, nodes=nodes, console=out, serve=InboxListen(host, port) if serve else None)
    except DemoError as e:
        raise _fail(str(e)) from None
    raise typer.Exit(code)


# -- inbox -------------------------------------------------------------------
@app.command()
def inbox(config: Annotated[Path, typer.Option("--config", "-c", help="Central YAML config")],
          host: Annotated[str | None, typer.Option(help="Listen address (default: inbox.host)")] = None,
          port: Annotated[int | None, typer.Option(min=0, max=65535,
                                                   help="Listen port, 0 = a free one (default: inbox.port)")] = None,
          verbose: bool = False) -> None:
    """Serve the web inbox over the place log, until Ctrl-C."""
    _logging(verbose)
    from vaktpost.broker.inbox.server import serve
    from vaktpost.broker.store import DatabaseError
    from vaktpost.contract.config import ConfigError
    cfg = _central_config(config, None)
    try:
        serve(cfg, host, port)
    except ConfigError as e:
        raise _fail(str(e)) from None
    except OSError as e:  # the address is taken or not ours
        raise _fail(f"inbox: cannot listen on {host or cfg.inbox.host}:{cfg.inbox.port if port is None else port}: "
                    f"{e.strerror or e}") from None
    except DatabaseError as e:
        raise _fail(f"database: {str(getattr(e, 'orig', None) or e).strip().splitlines()[0]}") from None


def _read_password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (what they type to log in)")],
    config: ConfigOpt = None, database: DbOpt = None,
    role: Annotated[str, typer.Option(help="admin, operator or viewer")] = "viewer",
    district: Annotated[list[str] | None, typer.Option(
        "--district", help="District the user sees (repeat; required for operator and viewer)")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input")] = False,
) -> None:
    """Add an inbox account; the password is prompted for (or read from standard input)."""
    from vaktpost.broker.inbox.accounts import AccountError, Accounts, check_new_user
    from vaktpost.broker.store import utcnow
    cfg = _central_config(config, database)
    districts = district or []
    try:
        check_new_user(name, role, districts, "x" * 64)  # fail before asking for a password
    except AccountError as e:
        raise _fail(str(e)) from None
    password = _read_password(password_stdin)
    with _database(cfg.database, create=True) as store:
        accounts = Accounts(store.engine)
        accounts.create_tables()
        try:
            accounts.add(name, role, districts, password, now=utcnow())
        except AccountError as e:
            raise _fail(str(e)) from None
    scope = "all districts" if role == "admin" else ", ".join(sorted(set(districts)))
    out.print(escape(f"added {role} {name} ({scope})"), highlight=False)


@users_app.command("list")
def users_list(config: ConfigOpt = None, database: DbOpt = None) -> None:
    """List inbox accounts: name, role, districts."""
    from vaktpost.broker.inbox.accounts import Accounts
    cfg = _central_config(config, database)
    with _database(cfg.database, create=True) as store:
        accounts = Accounts(store.engine)
        accounts.create_tables()
        for a in accounts.list():
            districts = "all districts" if a.is_admin else ", ".join(sorted(a.districts))
            out.print(escape(f"{a.name}\t{a.role}\t{districts}"), highlight=False)


@users_app.command("remove")
def users_remove(name: str, config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Remove an inbox account and end its sessions."""
    from vaktpost.broker.inbox.accounts import AccountError, Accounts
    cfg = _central_config(config, database)
    with _database(cfg.database, create=True) as store:
        accounts = Accounts(store.engine)
        accounts.create_tables()
        try:
            accounts.remove(name)
        except AccountError as e:
            raise _fail(str(e)) from None
    out.print(escape(f"removed {name}"), highlight=False)


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="Token name: the client program, e.g. larmcentral")],
    config: ConfigOpt = None, database: DbOpt = None,
    role: Annotated[str, typer.Option(help="admin, operator or viewer")] = "viewer",
    district: Annotated[list[str] | None, typer.Option(
        "--district", help="District the token sees (repeat; required for operator and viewer)")] = None,
) -> None:
    """Make an API token and print it once (it is stored only hashed)."""
    from vaktpost.broker.inbox.accounts import AccountError
    from vaktpost.broker.inbox.tokens import Tokens, check_new_token
    from vaktpost.broker.store import utcnow
    cfg = _central_config(config, database)
    districts = district or []
    try:
        check_new_token(name, role, districts)
    except AccountError as e:
        raise _fail(str(e)) from None
    with _database(cfg.database, create=True) as store:
        tokens = Tokens(store.engine)
        tokens.create_tables()
        try:
            token = tokens.add(name, role, districts, now=utcnow())
        except AccountError as e:
            raise _fail(str(e)) from None
    sys.stdout.write(token + "\n")
    scope = "all districts" if role == "admin" else ", ".join(sorted(set(districts)))
    err.print(escape(f"token {name} ({role}, {scope}): shown only this once; clients send it as "
                     "'Authorization: Bearer TOKEN'"), highlight=False)


@tokens_app.command("list")
def tokens_list(config: ConfigOpt = None, database: DbOpt = None) -> None:
    """List API tokens: name, role, districts, created, last used (times in Europe/Stockholm)."""
    from zoneinfo import ZoneInfo

    from vaktpost.broker.inbox.tokens import Tokens
    from vaktpost.broker.incidents.kinds import DISPLAY_TZ
    cfg = _central_config(config, database)
    tz = ZoneInfo(DISPLAY_TZ)
    with _database(cfg.database, create=True) as store:
        tokens = Tokens(store.engine)
        tokens.create_tables()
        for t in tokens.list():
            districts = "all districts" if t.role == "admin" else ", ".join(sorted(t.districts))
            used = t.last_used_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
            # Plain text, one line per token (rich would wrap long lines).
            sys.stdout.write(f"{t.name}\t{t.role}\t{districts}\tcreated {t.created_at.astimezone(tz):%Y-%m-%d %H:%M}"
                             f"\tlast used {used}\n")


@tokens_app.command("remove")
def tokens_remove(name: str, config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Remove an API token: clients using it are refused from the next request on."""
    from vaktpost.broker.inbox.accounts import AccountError
    from vaktpost.broker.inbox.tokens import Tokens
    cfg = _central_config(config, database)
    with _database(cfg.database, create=True) as store:
        tokens = Tokens(store.engine)
        tokens.create_tables()
        try:
            tokens.remove(name)
        except AccountError as e:
            raise _fail(str(e)) from None
    out.print(escape(f"removed token {name}"), highlight=False)


@app.command()
def openapi() -> None:
    """Print the OpenAPI document of the inbox's JSON API (kept in docs/openapi.json)."""
    from vaktpost.broker.inbox.api import openapi_document
    sys.stdout.write(json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n")
@contextmanager
def _notify_tables(cfg) -> Iterator[Store]:
    from vaktpost.broker.notify.tables import create_tables
    with _database(cfg.database, create=True) as store:
        create_tables(store.engine)
        yield store


@subscriptions_app.command("add")
def subscriptions_add(
    user: Annotated[str, typer.Argument(help="Inbox user name (vaktpost users add)")],
    config: ConfigOpt = None, database: DbOpt = None,
    email: Annotated[str | None, typer.Option(help="Send to this email address")] = None,
    webhook: Annotated[str | None, typer.Option(help="POST signed JSON to this http(s) URL")] = None,
    district: Annotated[list[str] | None, typer.Option(
        "--district", help="Only incidents in this district (repeat; within the user's scope)")] = None,
    place: Annotated[list[str] | None, typer.Option("--place", help="Only incidents at this place id (repeat)")] = None,
    type: Annotated[list[str] | None, typer.Option("--type", help="Only this incident type (repeat)")] = None,
    min_priority: Annotated[str, typer.Option(help="low, normal or high")] = "low",
    hours: Annotated[str | None, typer.Option(help="Only incidents opened in these local hours, e.g. 17-07")] = None,
    digest: Annotated[bool, typer.Option(help="One message a day (notifications.digest_hour) instead of one "
                                         "per incident")] = False,
) -> None:
    """Subscribe USER to new incidents by email or webhook; filters narrow what they hear about."""
    from vaktpost.broker.notify.subscriptions import (
        NewSubscription,
        SubscriptionError,
        add_for,
        parse_hours,
        parse_priority,
        parse_types,
    )
    from vaktpost.broker.store import utcnow
    cfg = _central_config(config, database)
    if (email is None) == (webhook is None):
        raise _fail("give either --email ADDRESS or --webhook URL")
    if email is not None and cfg.notifications.smtp is None:
        raise _fail("notifications.smtp is not set in the central config: email cannot be sent (give --config)")
    try:
        spec = NewSubscription(
            channel="email" if email else "webhook", target=email or webhook or "", districts=tuple(district or ()),
            places=tuple(place or ()), types=parse_types(type or []), min_priority=parse_priority(min_priority),
            hours=parse_hours(hours) if hours else None, mode="digest" if digest else "immediate")
    except SubscriptionError as e:
        raise _fail(str(e)) from None
    with _notify_tables(cfg) as store:
        try:
            sub = add_for(store.engine, user, spec, store.list_places(), now=utcnow())
        except SubscriptionError as e:
            raise _fail(str(e)) from None
    out.print(escape(f"added subscription {sub.id}: {sub.channel} {sub.target} for {user} ({sub.mode}; "
                     f"{sub.describe()})"), highlight=False, soft_wrap=True)
    if sub.secret:
        out.print(escape(f"webhook secret (give it to the receiver; shown only now): {sub.secret}"), highlight=False,
                  soft_wrap=True)


@subscriptions_app.command("list")
def subscriptions_list(config: ConfigOpt = None, database: DbOpt = None,
                       user: Annotated[str | None, typer.Option(help="Only this user's")] = None) -> None:
    """List subscriptions with their messages: queued, sent, failed (and the last error)."""
    from vaktpost.broker.notify.subscriptions import last_errors, list_subscriptions, outbox_counts
    cfg = _central_config(config, database)
    with _notify_tables(cfg) as store:
        subs = list_subscriptions(store.engine, user)
        counts = outbox_counts(store.engine)
        errors = last_errors(store.engine)
    for sub in subs:
        c = counts.get(sub.id, {})
        queued = c.get("pending", 0) + c.get("held", 0)
        line = (f"{sub.id}\t{sub.user_name}\t{sub.channel} {sub.target}\t{sub.mode}\t{sub.describe()}\t"
                f"queued {queued}, sent {c.get('sent', 0)}, failed {c.get('failed', 0)}")
        if sub.id in errors:
            line += f"\tlast error: {errors[sub.id]}"
        out.print(escape(line), highlight=False, soft_wrap=True)


@subscriptions_app.command("remove")
def subscriptions_remove(subscription_id: Annotated[int, typer.Argument(metavar="ID")],
                         config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Remove a subscription and the messages still queued for it."""
    from vaktpost.broker.notify.subscriptions import SubscriptionError, remove
    cfg = _central_config(config, database)
    with _notify_tables(cfg) as store:
        try:
            remove(store.engine, subscription_id)
        except SubscriptionError as e:
            raise _fail(str(e)) from None
    out.print(f"removed subscription {subscription_id}", highlight=False)


# Libraries of the optional extras (pyproject.toml), by import name: a node-only install
# lacks them, and a command that needs one says which extra to install.
EXTRA_OF_MODULE = {"sqlalchemy": "central", "psycopg": "central", "fastapi": "central", "uvicorn": "central",
                   "jinja2": "central", "argon2": "central", "babel": "central", "multipart": "central",
                   "starlette": "central", "httpx": "central", "scipy": "central", "pygal": "central",
                   "weasyprint": "central", "openpyxl": "central", "skimage": "demo"}


def main() -> None:
    """The `vaktpost` command: `app`, with a missing optional library named in one line."""
    try:
        app()
    except ModuleNotFoundError as e:
        extra = EXTRA_OF_MODULE.get((e.name or "").partition(".")[0])
        if extra is None:
            raise
        print(f"error: this command needs the {extra} extra: pip install 'vaktpost[{extra}]'", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
