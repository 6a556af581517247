"""A Mosquitto of our own on this machine, for the demo, the tests and the benchmarks.

`LocalBroker.create(directory, nodes)` writes the project's own broker config
(`vaktpost.broker.mosquitto.init_broker`) for a free loopback port, starts Mosquitto
and returns once it accepts connections; `stop()` ends it (also on leaving a ``with``
block). Mosquitto's output goes to ``directory/mosquitto.log`` (`log_text()`).

    with LocalBroker.create(tmp / "broker", ["node-a"]) as broker:
        node_password = broker.password("node-a")
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from vaktpost.broker.mosquitto import (
    CONF_FILE,
    Credentials,
    TlsFiles,
    init_broker,
    load_credentials,
    mosquitto_command,
)

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # generous: a small machine busy with other work
STOP_TIMEOUT = 15.0
LOG_FILE = "mosquitto.log"

class BrokerStartError(RuntimeError):
    """Mosquitto did not start or stop; the message carries its log."""


class AddressInUse(BrokerStartError):
    """Another process took the port between choosing it and Mosquitto binding it."""


def free_port(host: str = HOST) -> int:
    """A loopback port free right now. Another process may take it before Mosquitto
    binds it; `LocalBroker.create` then retries with another."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def run_as_self() -> str | None:
    """The `run_as` for init_broker that keeps a root-started Mosquitto as root: a
    private work directory (pytest's tmp_path, the demo's temp dir) sits below a 0700
    directory the ``mosquitto`` user cannot enter. None when not root (Mosquitto then
    keeps our identity anyway)."""
    return pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LocalBroker:
    """A Mosquitto process run from `dir` (a directory made by init_broker)."""

    dir: Path
    port: int
    credentials: Credentials
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, directory: Path, nodes: list[str], *, consumers: list[str] | None = None,
               observers: list[str] | None = None, tls: TlsFiles | dict[str, Any] | None = None,
               start: bool = True, attempts: int = 5) -> Self:
        """init_broker in `directory` on a free loopback port, then (unless start=False)
        start it. Retries with a new port if another process grabbed the chosen one."""
        last: BrokerStartError | None = None
        for _ in range(attempts):
            port = free_port()
            creds = init_broker(directory, nodes, port, bind_address=HOST, consumers=consumers,
                                observers=observers, tls=tls, run_as=run_as_self())
            broker = cls(dir=Path(directory), port=port, credentials=creds)
            if not start:
                return broker
            try:
                return broker.start()
            except AddressInUse as e:
                last = e
        raise BrokerStartError(f"no free port after {attempts} attempts") from last

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def conf_path(self) -> Path:
        return self.dir / CONF_FILE

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def password(self, username: str) -> str:
        return self.credentials.account(username).password

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start Mosquitto and return once it logged 'running' and accepts TCP connections."""
        if self.running:
            raise BrokerStartError("broker already running")
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            # A session of its own: Ctrl-C in a terminal reaches us, and we stop the broker
            # after our clients said goodbye, instead of it vanishing under them.
            self.proc = subprocess.Popen(mosquitto_command(self.dir), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            new_log = self.log_text()[log_offset:]
            if self.proc.poll() is not None:
                self.proc = None
                err = AddressInUse if "Address already in use" in new_log else BrokerStartError
                raise err(f"mosquitto exited at start (port {self.port}):\n{new_log}")
            # 'running' is logged once all listeners are bound; the TCP probe guards
            # against the port belonging to someone else.
            if " running" in new_log and accepts_connections(self.host, self.port):
                return self
            if time.monotonic() >= deadline:
                self.kill()
                raise BrokerStartError(f"mosquitto not ready within {timeout}s:\n{new_log}")
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM and wait: Mosquitto writes its persistence file on the way out."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                raise BrokerStartError(f"mosquitto ignored SIGTERM for {timeout}s:\n{self.log_text()}") from None
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash; whatever was not autosaved is lost."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads the password file and ACL (after a new init_broker)."""
        if self.proc is None or not self.running:
            raise BrokerStartError("broker not running")
        self.credentials = load_credentials(self.dir)
        self.proc.send_signal(signal.SIGHUP)

    def add_nodes(self, nodes: list[str], *, consumers: list[str] | None = None,
                  observers: list[str] | None = None) -> Credentials:
        """Enrol more nodes (and consumers, observers: init again on the same directory)
        and reload a running broker."""
        self.credentials = init_broker(self.dir, nodes, self.port, bind_address=self.host, consumers=consumers,
                                       observers=observers, run_as=run_as_self())
        if self.running:
            self.reload()
        return self.credentials

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
