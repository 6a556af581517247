"""The central service: load the config, prepare the place log, run ingest (and the
notification worker) until stopped; and the retention purge on demand. Run as `python -m vaktpost.broker.service
--config central.yaml` or `vaktpost central --config central.yaml` (docs/central.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from vaktpost.broker.config import CentralConfig, load_central
from vaktpost.broker.incidents import retention
from vaktpost.broker.ingest.consumer import Consumer
from vaktpost.broker.notify.worker import Notifier, NotifyWorker
from vaktpost.broker.places import import_places
from vaktpost.broker.store import PurgeResult, Store, display_url, sqlite_file, utcnow
from vaktpost.contract.config import ConfigError

log = logging.getLogger("vaktpost.broker.service")


class StartError(RuntimeError):
    """The service cannot start (database, TLS files); the message is one line for the operator."""


def db_reason(e: SQLAlchemyError) -> str:
    """The first line of what the driver said, without SQLAlchemy's background link."""
    return str(getattr(e, "orig", None) or e).strip().splitlines()[0]


def open_store(url: str) -> Store:
    """The place log at `url`, its tables created; StartError when that cannot be."""
    where = display_url(url)
    path = sqlite_file(url)
    if path is not None and not path.parent.is_dir():  # SQLite would only say "unable to open"
        raise StartError(f"database {where}: no such folder: {path.parent}")
    try:
        store = Store(url)
    except ValueError as e:  # not sqlite or postgresql
        raise StartError(f"database {where}: {e}") from None
    try:
        store.create_all()
    except SQLAlchemyError as e:  # unreachable, no such database, no permission
        store.close()
        raise StartError(f"database {where}: {db_reason(e)}") from None
    return store


def _check_tls_files(cfg: CentralConfig) -> None:
    tls = cfg.mqtt.tls
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key, None)
        if path is not None and not path.is_file():
            raise StartError(f"mqtt.tls.{key}: {path}: no such file")


def _consumer(cfg: CentralConfig, store: Store) -> Consumer:
    try:
        return Consumer(cfg, store)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError: a TLS file that does not load
        raise StartError(f"mqtt.tls: cannot load the TLS files: {e}") from None


def _notify_worker(cfg: CentralConfig, store: Store, stop: threading.Event) -> NotifyWorker | None:
    """The notification thread (docs/inbox.md, "Notifications"), unless notifications.enabled is false."""
    n = cfg.notifications
    if n.enabled is False:
        return None
    try:
        notifier = Notifier.from_settings(store, n, cfg.inbox.timezone)
    except SQLAlchemyError as e:
        raise StartError(f"database {display_url(cfg.database)}: {db_reason(e)}") from None
    return NotifyWorker(notifier, stop, n.poll_interval)


def run_central(config_path: str | Path, stop_event: threading.Event | None = None) -> None:
    """Load the config, prepare the database, import places, consume until SIGINT/SIGTERM
    (or `stop_event`). Raises ConfigError for an unusable config or places file,
    StartError when the database or the TLS files cannot be used."""
    cfg = load_central(config_path)
    _check_tls_files(cfg)
    store = open_store(cfg.database)
    try:
        if cfg.places_file is not None:
            n_places, n_periods = import_places(store, cfg.places_file)
            log.info("imported %d places and %d camera periods from %s", n_places, n_periods, cfg.places_file)
        consumer = _consumer(cfg, store)
        stop = stop_event or threading.Event()
        notify = _notify_worker(cfg, store, stop)
    except BaseException:
        store.close()
        raise
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    if notify is not None:
        notify.start()
    try:
        consumer.run(stop)
    finally:
        stop.set()
        if notify is not None:
            notify.join(10.0)  # a send in progress ends within its timeout
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()


def run_purge(config: CentralConfig | str | Path, now: datetime | None = None) -> PurgeResult:
    """One retention purge with `config`'s retention settings (for `vaktpost purge`).
    `config` is a loaded config or the path of one (ConfigError if unusable)."""
    cfg = config if isinstance(config, CentralConfig) else load_central(config)
    store = Store(cfg.database)
    try:
        store.create_all()
        return retention.purge(store, cfg.retention, now or utcnow())
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vaktpost.broker.service", description="Vaktpost central consumer")
    ap.add_argument("--config", required=True, type=Path, help="central YAML config")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_central(args.config)
    except (ConfigError, StartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
