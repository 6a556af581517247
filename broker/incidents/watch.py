"""The missing-heartbeat check, on a timer thread of the consumer."""

from __future__ import annotations

import logging
import threading

from vaktpost.broker.incidents.grouping import Grouper
from vaktpost.broker.store import Store

log = logging.getLogger(__name__)

CHECK_SECONDS = 15.0  # well below the default deadline (3 x 30 s heartbeats)


class HeartbeatWatch:
    """Runs `Grouper.check` every `every` seconds until `stop` is set."""

    def __init__(self, store: Store, grouper: Grouper, stop: threading.Event, every: float = CHECK_SECONDS) -> None:
        self.store, self.grouper, self.stop, self.every = store, grouper, stop, every
        self._thread: threading.Thread | None = None

    def check_once(self) -> list[int]:
        with self.store.begin() as tx:
            opened = self.grouper.check(tx.conn)
        for inc in opened:
            log.warning("incident %d: a node missed its heartbeats", inc)
        return opened

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.check_once()
            except Exception:
                # A database hiccup must not end the watch; the next round tries again.
                log.exception("missing-heartbeat check failed")

    def start(self) -> HeartbeatWatch:
        self._thread = threading.Thread(target=self._run, name="incident-heartbeats", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
