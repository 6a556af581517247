"""Test helpers around a real Mosquitto (`vaktpost.broker.local.LocalBroker`, configured by
the project's own `vaktpost.broker.mosquitto.init_broker`): blocking MQTT clients, the
running central consumer, a payload auditor and a throwaway CA.

Usage (the `broker` / `broker_factory` fixtures in conftest.py wrap this):

    b = start_broker(tmp_path, nodes=["node-a"])
    with b.client("node-a") as c:
        assert c.publish_wait(Topic.events("node-a", "cam1"), b"{}") < 0x80
    b.close()

Import it as ``from mqtt_harness import ...`` (tests/ is on sys.path under pytest).
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vaktpost.broker.local import HOST, BrokerStartError, LocalBroker, free_port
from vaktpost.contract.topics import ROOT

__all__ = ["HOST", "Broker", "BrokerStartError", "MqttTestClient", "PayloadAuditor", "free_port",
           "make_test_ca", "running_central", "start_broker", "wait_until"]

DEFAULT_TIMEOUT = 10.0


def wait_until(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not met within {timeout:.1f}s")
        time.sleep(interval)


@dataclass
class Broker(LocalBroker):
    """A LocalBroker that also hands out blocking test clients (`client`, `connack`)."""

    _clients: list[MqttTestClient] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Disconnect all test clients, then stop (the fixtures' teardown). `stop()` alone
        leaves test clients open: they see the disconnect and paho retries."""
        self.close_clients()
        self.stop()

    def mqtt_config(self, username: str) -> dict[str, Any]:
        """The `mqtt:` section of a node config (vaktpost.edge.config.MqttSection) for this broker."""
        return {"host": self.host, "port": self.port, "username": username, "password": self.password(username)}

    def client(self, username: str | None, *, password: str | None = None, client_id: str = "",
               clean_start: bool = True, session_expiry: int | None = None,
               will: tuple[str, bytes, int, bool] | None = None, tls_ca: Path | None = None,
               connect: bool = True, takeover: bool = False,
               timeout: float = DEFAULT_TIMEOUT) -> MqttTestClient:
        """An MQTT v5 client for `username` (its password from credentials unless given;
        None = anonymous). `tls_ca` turns on TLS, trusting that CA. Connected (CONNACK
        success awaited) unless connect=False.
        The broker takes the username as client id (`client_id` is sent but replaced), so
        a `username` still used by an open test client is refused unless takeover=True:
        paho reconnects the old one on its own, and the two would take the session from
        each other every second. Use another account (see `start_broker`) instead.
        Disconnected automatically by close() and by the fixtures' teardown."""
        if username and not takeover and any(c.username == username and c.open for c in self._clients):
            raise RuntimeError(f"account {username!r} is still used by an open test client; close it first "
                               "(or pass takeover=True)")
        if username is not None and password is None:
            password = self.password(username)
        c = MqttTestClient(self.host, self.port, username, password, client_id=client_id,
                           clean_start=clean_start, session_expiry=session_expiry, will=will, tls_ca=tls_ca)
        self._clients.append(c)
        if connect:
            try:
                rc = c.connect(timeout)
            except BaseException:
                c.close()
                raise
            if rc.is_failure:
                c.close()
                raise ConnectionRefusedError(f"{username!r} refused by broker: {rc} ({rc.value:#04x})")
        return c

    def connack(self, username: str | None, password: str | None = None, *, tls_ca: Path | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> mqtt.ReasonCode:
        """Only the CONNACK reason code of a connection attempt (for auth tests)."""
        c = self.client(username, password=password, tls_ca=tls_ca, connect=False)
        try:
            return c.connect(timeout)
        finally:
            c.close()

    def add_accounts(self, *, nodes: list[str] | None = None, consumers: list[str] | None = None,
                     observers: list[str] | None = None) -> None:
        """Enrol accounts (init again + SIGHUP) and return once the broker accepts each."""
        self.add_nodes(nodes or [], consumers=consumers, observers=observers)
        for name in [*(nodes or []), *(consumers or []), *(observers or [])]:
            wait_until(lambda n=name: self.connack(n).value == 0, message=f"{name} accepted after SIGHUP")

    def close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()


class MqttTestClient:
    """paho v5 client with blocking helpers: each waits for the broker's answer."""

    def __init__(self, host: str, port: int, username: str | None, password: str | None, *,
                 client_id: str = "", clean_start: bool = True, session_expiry: int | None = None,
                 will: tuple[str, bytes, int, bool] | None = None, tls_ca: Path | None = None) -> None:
        self.host, self.port = host, port
        self.username = username
        self.client_id = client_id
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack_flags: Any = None
        self.connack_properties: Properties | None = None
        self._cond = threading.Condition()
        self._connack: mqtt.ReasonCode | None = None
        self._pubacks: dict[int, mqtt.ReasonCode] = {}
        self._subacks: dict[int, list[mqtt.ReasonCode]] = {}
        self._disconnected = threading.Event()
        self.disconnect_reason: mqtt.ReasonCode | None = None
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.paho.username_pw_set(username, password)
        if tls_ca is not None:
            self.paho.tls_set(ca_certs=str(tls_ca))  # verifies the certificate and host name
        if will is not None:
            topic, payload, qos, retain = will
            self.paho.will_set(topic, payload, qos, retain)
        self.paho.on_connect = self._on_connect
        self.paho.on_publish = self._on_publish
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message
        self.paho.on_disconnect = self._on_disconnect
        self._started = False

    # callbacks run on paho's network thread
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connack = reason_code
            self.connack_flags = flags
            self.connack_properties = properties
            self._cond.notify_all()
        if reason_code.is_failure:
            # Don't let paho's loop keep retrying a refused login.
            client.disconnect()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._pubacks[mid] = reason_code
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self._subacks[mid] = list(reason_codes)
            self._cond.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        self.messages.put(message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self.disconnect_reason = reason_code
            self._disconnected.set()
            self._cond.notify_all()

    def _wait_for(self, get: Callable[[], Any], timeout: float, what: str) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: get() is not None, timeout):
                raise TimeoutError(f"no {what} within {timeout}s")
            return get()

    def connect(self, timeout: float = DEFAULT_TIMEOUT) -> mqtt.ReasonCode:
        """Connect and return the CONNACK reason code."""
        props = None
        if self.session_expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
        with self._cond:
            self._connack = None
        self._disconnected.clear()
        self.paho.connect(self.host, self.port, keepalive=30, clean_start=self.clean_start, properties=props)
        if not self._started:
            self.paho.loop_start()
            self._started = True
        with self._cond:
            # A broker that closes the connection without CONNACK (e.g. plain MQTT on a
            # TLS port) fails fast instead of running into the timeout.
            self._cond.wait_for(lambda: self._connack is not None or self._disconnected.is_set(), timeout)
            if self._connack is not None:
                return self._connack
            if self._disconnected.is_set():
                raise ConnectionError(f"connection closed before CONNACK: {self.disconnect_reason}")
            raise TimeoutError(f"no CONNACK within {timeout}s")

    def publish_wait(self, topic: str, payload: bytes | str = b"", qos: int = 1, retain: bool = False,
                     timeout: float = DEFAULT_TIMEOUT) -> int:
        """Publish at QoS 1/2 and return the PUBACK reason code as int (>= 0x80 = refused)."""
        if qos == 0:
            raise ValueError("QoS 0 has no acknowledgement to wait for")
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish not sent: {mqtt.error_string(info.rc)}")
        return self._wait_for(lambda: self._pubacks.get(info.mid), timeout, f"PUBACK for {topic}").value

    def subscribe_wait(self, topic: str, qos: int = 1, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Subscribe and return the SUBACK reason code as int (granted QoS, or >= 0x80 = refused)."""
        result, mid = self.paho.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"subscribe not sent: {mqtt.error_string(result)}")
        codes = self._wait_for(lambda: self._subacks.get(mid), timeout, f"SUBACK for {topic}")
        return codes[0].value

    def expect_message(self, timeout: float = DEFAULT_TIMEOUT, topic: str | None = None) -> mqtt.MQTTMessage:
        """Next received message (optionally the next on `topic`, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                msg = self.messages.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise TimeoutError(f"no message{' on ' + topic if topic else ''} within {timeout}s") from None
            if topic is None or msg.topic == topic:
                return msg

    def drain(self) -> list[mqtt.MQTTMessage]:
        """Messages received so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def wait_disconnected(self, timeout: float = DEFAULT_TIMEOUT) -> mqtt.ReasonCode | None:
        if not self._disconnected.wait(timeout):
            raise TimeoutError(f"still connected after {timeout}s")
        return self.disconnect_reason

    @property
    def open(self) -> bool:
        """Connected, or paho's network thread still reconnecting it."""
        return self._started

    def close(self) -> None:
        """Disconnect cleanly (no Last Will) and stop the network thread. Idempotent."""
        if self._started:
            with suppress(Exception):  # already gone: nothing to say goodbye to
                self.paho.disconnect()
            self.paho.loop_stop()
            self._started = False

    def __enter__(self) -> MqttTestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Read-only accounts every test broker has: the PayloadAuditor's and one for tests that watch.
TEST_OBSERVERS = ["auditor", "watcher"]


def start_broker(tmp_path: Path, nodes: list[str] | None = None, *, consumers: list[str] | None = None,
                 observers: list[str] | None = None, name: str = "broker", start: bool = True,
                 tls: dict | None = None) -> Broker:
    """A Broker in ``tmp_path/name`` on a free loopback port (started unless start=False).
    Accounts: `nodes` (default node-a, node-b), `consumers` (default central), the inbox,
    and the observers `TEST_OBSERVERS` plus `observers`. One account per concurrent client:
    the broker binds the client id to the username."""
    nodes = ["node-a", "node-b"] if nodes is None else nodes
    return Broker.create(tmp_path / name, nodes, consumers=consumers or ["central"],
                         observers=list(dict.fromkeys([*TEST_OBSERVERS, *(observers or [])])), tls=tls, start=start)


def make_test_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1: (ca.crt, srv.crt, srv.key)."""
    ca_key, ca_crt, key, csr, crt = (tmp_path / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt"))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vaktpost-test-ca",
            "-keyout", str(ca_key), "-out", str(ca_crt))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return ca_crt, crt, key


@contextmanager
def running_central(broker: Broker, tmp_path: Path, places: dict | None = None, *, tls_ca: Path | None = None,
                    username: str = "central"):
    """The real central consumer (account `username`) on a SQLite file in `tmp_path`, subscribed
    to `broker`; yields its Store. `places` (a places-registry document) is imported first."""
    from vaktpost.broker.config import CentralConfig
    from vaktpost.broker.ingest.consumer import Consumer
    from vaktpost.broker.places import import_places
    from vaktpost.broker.store import Store

    cfg = CentralConfig.model_validate({
        "database": f"sqlite:///{tmp_path / 'central.db'}",
        "mqtt": {"host": broker.host, "port": broker.port, "username": username,
                 "password": broker.password(username), "reconnect_max_seconds": 1,
                 "tls": {"ca_file": str(tls_ca)} if tls_ca else None},
    })
    store = Store(cfg.database)
    store.create_all()
    if places is not None:
        (tmp_path / "places.yaml").write_text(yaml.safe_dump(places))
        import_places(store, tmp_path / "places.yaml")
    consumer = Consumer(cfg, store).start()
    try:
        assert consumer.ready.wait(15), "consumer did not subscribe"
        yield store
    finally:
        consumer.stop()
        store.close()


# Image data outside a snapshot topic: JPEG or PNG signatures, or a long base64 run
# (an image smuggled as text in a JSON field).
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"data:image")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{200,}")


def image_data_in(payload: bytes) -> str | None:
    """What in `payload` looks like image data, or None."""
    for sig in _IMAGE_SIGNATURES:
        if sig in payload:
            return f"contains {sig!r}"
    if _BASE64_RUN.search(payload):
        return "contains a base64 run of 200+ characters"
    return None


class PayloadAuditor:
    """Listens to every node topic it may read (events, status, heartbeat: the `auditor`
    observer account) for the whole life of a test broker (reconnecting across restarts)
    and records any message that carries image data outside `/snapshots/` — the one path
    an (anonymised) image may take."""

    def __init__(self, broker: Broker) -> None:
        self.seen = 0
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="auditor", protocol=mqtt.MQTTv5)
        self.paho.username_pw_set("auditor", broker.password("auditor"))
        self.paho.reconnect_delay_set(0.1, 1)
        self.paho.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{ROOT}/#", qos=1) if not rc.is_failure else None
        self.paho.on_message = self._on_message
        self.subscribed = threading.Event()
        self.paho.on_subscribe = lambda *_: self.subscribed.set()
        self.paho.connect_async(broker.host, broker.port, keepalive=30)
        self.paho.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.seen += 1
            if "/snapshots/" in message.topic:
                return
            problem = image_data_in(message.payload)
            if problem:
                self.violations.append(f"{message.topic}: {problem}")

    def close(self) -> list[str]:
        self.paho.disconnect()
        self.paho.loop_stop()
        with self._lock:
            return list(self.violations)
