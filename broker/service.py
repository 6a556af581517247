"""The central service: load the config, prepare the place log, run ingest until
stopped; and the retention purge on demand. Run as `python -m vaktpost.broker.service
--config central.yaml` or `vaktpost central --config central.yaml` (docs/central.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from vaktpost.broker.config import CentralConfig, load_central
from vaktpost.broker.ingest.consumer import Consumer
from vaktpost.broker.places import import_places
from vaktpost.broker.store import PurgeResult, Store, utcnow
from vaktpost.contract.config import ConfigError

log = logging.getLogger("vaktpost.broker.service")


def run_central(config_path: str | Path, stop_event: threading.Event | None = None) -> None:
    """Load the config, prepare the database, import places, consume until SIGINT/SIGTERM
    (or `stop_event`). Raises ConfigError for an unusable config or places file."""
    cfg = load_central(config_path)
    store = Store(cfg.database)
    store.create_all()
    if cfg.places_file is not None:
        n_places, n_periods = import_places(store, cfg.places_file)
        log.info("imported %d places and %d camera periods from %s", n_places, n_periods, cfg.places_file)
    stop = stop_event or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        Consumer(cfg, store).run(stop)
    finally:
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
        r = cfg.retention
        return store.purge(now or utcnow(), r.snapshots_age, r.events_age)
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
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
