"""Notifications (vaktpost.broker.notify): a real SMTP server with STARTTLS (aiosmtpd, a
self-signed certificate made here) and a real HTTP receiver, both on free loopback
ports and both stopped and started again mid-test; incidents made as the consumer makes
them; time driven by an injected clock, never the wall clock (except the worker
thread's own test, which polls for a condition with a deadline)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from inbox_harness import PASSWORD, seed, start_inbox
from mqtt_harness import wait_until
from sqlalchemy import select

from vaktpost.broker.config import CentralConfig, IncidentsSection, NotificationsSection, SmtpSection, parse_central
from vaktpost.broker.inbox.accounts import Accounts
from vaktpost.broker.incidents.grouping import Grouper
from vaktpost.broker.incidents.kinds import IncidentType, Priority
from vaktpost.broker.notify import subscriptions as subs
from vaktpost.broker.notify.senders import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from vaktpost.broker.notify.tables import create_tables, outbox
from vaktpost.broker.notify.worker import Notifier, NotifyWorker
from vaktpost.broker.store import Store, default_topic
from vaktpost.contract.config import ConfigError
from vaktpost.contract.events import Event, uuid7

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 20, 14, tzinfo=UTC)  # 21:14 in Stockholm (UTC+1 in March before the change)
PUBLIC = "https://vaktpost.kommun.example"


# --- the real servers ---------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(days=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _Controller(Controller):
    def _trigger_server(self) -> None:
        if self.port == 0:  # learn the free port the server was given
            assert self.server is not None
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class Mailbox:
    """What the SMTP server accepted, and whether each came over TLS."""

    messages: list[tuple[EmailMessage, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((msg, bool(session.ssl)))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a free port, STARTTLS required; `stop()` and `start()` keep the port."""

    def __init__(self, tmp_path: Path) -> None:
        import ssl
        self.cert, key = self_signed(tmp_path)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(self.cert, key)
        self.mailbox = Mailbox()
        self.port = 0
        self.controller: _Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = _Controller(self.mailbox, hostname="127.0.0.1", port=self.port, tls_context=self.tls,
                                      require_starttls=True)
        self.controller.start()
        self.port = self.controller.port
        return self

    def stop(self) -> None:
        assert self.controller is not None
        self.controller.stop()
        self.controller = None


class WebhookServer:
    """http.server on a free port; records each POST (path, headers, raw body)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.port = 0
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> WebhookServer:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        assert self.httpd is not None and self.thread is not None
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
        self.httpd = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str = "/hook") -> list[dict[str, Any]]:
        return [json.loads(b) for p, _, b in self.received if p == path]


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path).start()
    yield server
    if server.controller is not None:
        server.stop()


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    if server.httpd is not None:
        server.stop()


# --- the place log, incidents, the clock ------------------------------------------------


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> datetime:
        self.t += timedelta(**kw)
        return self.t


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'central.db'}")
    seed(s, T0 - timedelta(days=1))  # places (Norr: norrskolan, Söder: soderparken) and the users
    create_tables(s.engine)
    yield s
    s.close()


GROUPER = Grouper(IncidentsSection())


def event(at: datetime, *, type: str = "intrusion", node: str = "node-a", camera: str = "gard",
          zone: str | None = "gard", ended: bool = True) -> Event:
    """An event of 30 s (or still going, `ended=False`)."""
    end = at + timedelta(seconds=30) if ended else None
    return Event(event_id=uuid7(int(at.timestamp() * 1000)), seq=1, node_id=node, camera_id=camera, type=type,
                 zone=zone, started_at=at, ended_at=end, confidence=0.8, phase="end" if ended else "start")


def ingest(store: Store, events: Iterable[Event], now: datetime) -> None:
    """As the consumer does: store the batch and group it, in one transaction."""
    items = list(events)
    with store.begin() as tx:
        for ev in items:
            tx.insert_event(ev, topic=default_topic(ev), received_at=now)
        GROUPER.record(tx.conn, items, now)


def notifier(store: Store, clock: Clock, *, smtp: SmtpServer | None = None, **settings: Any) -> Notifier:
    smtp_section = None if smtp is None else SmtpSection(
        host="127.0.0.1", port=smtp.port, ca_file=smtp.cert, from_address="vaktpost@kommun.example", timeout=5)
    values = {"public_url": PUBLIC + "/", "smtp": smtp_section, "retry_initial": 10, "retry_max": 60,
              "max_age": 3600, **settings}
    return Notifier.from_settings(store, NotificationsSection(**values), "Europe/Stockholm", clock)


def subscribe(store: Store, user: str, channel: str, target: str, *, at: datetime = T0 - timedelta(hours=1),
              **spec: Any) -> subs.Subscription:
    return subs.add_for(store.engine, user, subs.NewSubscription(channel=channel, target=target, **spec),
                        store.list_places(), now=at)


def rows(store: Store, subscription_id: int | None = None) -> list[dict[str, Any]]:
    q = select(outbox).order_by(outbox.c.id)
    if subscription_id is not None:
        q = q.where(outbox.c.subscription_id == subscription_id)
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def incident_ids(mails: list[tuple[EmailMessage, bool]]) -> list[int]:
    return [int(m.get_content().rsplit("/incidents/", 1)[1].split()[0]) for m, _ in mails]


# --- delivery through outages -------------------------------------------------------------


def test_messages_queued_while_the_servers_are_down_arrive_after_restart_once_each(
        store: Store, smtp: SmtpServer, hook: WebhookServer) -> None:
    clock = Clock(T0)
    n = notifier(store, clock, smtp=smtp)
    mail = subscribe(store, "anna", "email", "anna@kommun.example")  # operator of Norr
    webhook = subscribe(store, "admin", "webhook", hook.url())

    ingest(store, [event(T0 - timedelta(minutes=1))], T0)
    r = n.run_round()
    assert (r.queued, r.sent) == (2, 2)
    assert len(smtp.mailbox.messages) == 1 and smtp.mailbox.messages[0][1], "sent over STARTTLS"
    assert len(hook.received) == 1

    smtp.stop()
    hook.stop()
    for _ in range(2):  # two more incidents at Norrskolan (more than the 10 min gap apart)
        ingest(store, [event(clock.advance(minutes=11))], clock())
    r = n.run_round()
    assert (r.queued, r.sent, r.retried) == (4, 0, 4)
    pending = [row for row in rows(store) if row["state"] == "pending"]
    assert len(pending) == 4 and all(row["attempts"] == 1 and row["last_error"] for row in pending)
    assert all(row["next_attempt_at"] == clock() + timedelta(seconds=10) for row in pending)
    assert n.run_round().sent == 0  # not due yet: nothing is tried
    clock.advance(seconds=10)
    assert n.run_round().retried == 4  # second failure: the wait doubles
    assert {row["next_attempt_at"] for row in rows(store) if row["state"] == "pending"} == {
        clock() + timedelta(seconds=20)}

    smtp.start()
    hook.start()
    clock.advance(seconds=20)
    assert n.run_round().sent == 4
    clock.advance(minutes=30)
    assert n.run_round().sent == 0  # nothing twice

    assert sorted(incident_ids(smtp.mailbox.messages)) == [1, 2, 3]
    assert all(tls for _, tls in smtp.mailbox.messages)
    assert sorted(b["incident"]["id"] for b in hook.bodies()) == [1, 2, 3]
    assert {row["state"] for row in rows(store)} == {"sent"}
    assert {row["subscription_id"] for row in rows(store)} == {mail.id, webhook.id}


def test_a_message_not_delivered_within_max_age_is_marked_failed(store: Store, tmp_path: Path) -> None:
    clock = Clock(T0)
    dead = WebhookServer().start()
    url = dead.url()
    dead.stop()  # nothing listens there
    sub = subscribe(store, "admin", "webhook", url)
    n = notifier(store, clock, max_age=600)
    ingest(store, [event(T0)], T0)
    n.run_round()
    while clock() < T0 + timedelta(seconds=600):
        clock.advance(seconds=60)
        n.run_round()
    [row] = rows(store, sub.id)
    assert row["state"] == "failed" and "not delivered within max_age" in row["last_error"]
    assert "ConnectError" in row["last_error"]
    # The CLI shows it.
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({"database": str(store.engine.url)}))
    listed = vaktpost("subscriptions", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "failed 1" in listed.stdout and "ConnectError" in listed.stdout


def test_one_message_per_incident_however_many_events_join_it(store: Store, hook: WebhookServer) -> None:
    clock = Clock(T0)
    n = notifier(store, clock)
    subscribe(store, "admin", "webhook", hook.url())
    for i in range(10):  # ten events a minute apart: one incident (gap 10 min), each its own batch
        ingest(store, [event(T0 + timedelta(minutes=i), ended=i % 2 == 0)], clock.advance(minutes=1))
        n.run_round()
    assert len(hook.bodies()) == 1
    assert hook.bodies()[0]["incident"]["id"] == 1


def test_the_webhook_signature_verifies_and_covers_the_timestamp(store: Store, hook: WebhookServer) -> None:
    clock = Clock(T0)
    sub = subscribe(store, "admin", "webhook", hook.url())
    assert sub.secret and len(sub.secret) == 64
    ingest(store, [event(T0)], T0)
    notifier(store, clock).run_round()
    [(_, headers, body)] = hook.received
    stamp, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert stamp == str(int(T0.timestamp()))
    # What a receiver computes, by hand: HMAC-SHA256 of "TIMESTAMP." + raw body.
    expected = hmac.new(sub.secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    now = T0.timestamp()
    assert verify(sub.secret, stamp, body, sig, now=now)
    assert not verify(sub.secret, stamp, body.replace(b"intrusion", b"motion"), sig, now=now)
    assert not verify(sub.secret, str(int(stamp) + 1), body, sig, now=now)  # another time: another signature
    assert not verify(sub.secret, stamp, body, sig, now=now + 3600)  # a replay an hour later
    assert not verify("another-secret", stamp, body, sig, now=now)


# --- what matches ---------------------------------------------------------------------------


def queued_incidents(store: Store, sub: subs.Subscription) -> list[int]:
    return [row["incident_id"] for row in rows(store, sub.id)]


def test_filters_scope_type_priority_and_hours(store: Store) -> None:
    clock = Clock(T0)
    n = notifier(store, clock, enabled=True)
    hook = "http://127.0.0.1:9/"  # never sent to: this test looks at what is queued
    s = {
        "anna": subscribe(store, "anna", "webhook", hook),  # Norr
        "bo": subscribe(store, "bo", "webhook", hook),  # Söder
        "vera": subscribe(store, "vera", "webhook", hook),  # viewer of Norr
        "admin": subscribe(store, "admin", "webhook", hook),
        "admin_soder": subscribe(store, "admin", "webhook", hook, districts=("Söder",)),
        "admin_place": subscribe(store, "admin", "webhook", hook, places=("norrskolan",)),
        "loiter": subscribe(store, "admin", "webhook", hook, types=(IncidentType.loitering,)),
        "high": subscribe(store, "admin", "webhook", hook, min_priority=Priority.high),
        "night": subscribe(store, "admin", "webhook", hook, hours=(17, 7)),
        "day": subscribe(store, "admin", "webhook", hook, hours=(8, 16)),
    }
    ingest(store, [event(T0)], T0)  # 1: intrusion (high) at Norrskolan, 21:14 local
    ingest(store, [event(T0, type="loitering", node="node-b", camera="park", zone="park")], T0)  # 2: Söder, normal
    ingest(store, [event(T0 + timedelta(hours=12), type="motion", zone=None)], T0)  # 3: motion (low), 09:14
    ingest(store, [event(T0, node="node-c", camera="x")], T0)  # 4: an unassigned camera: no place
    n.scan(clock())
    assert queued_incidents(store, s["anna"]) == [1, 3]
    assert queued_incidents(store, s["bo"]) == [2]
    assert queued_incidents(store, s["vera"]) == [1, 3]
    assert queued_incidents(store, s["admin"]) == [1, 2, 3, 4]
    assert queued_incidents(store, s["admin_soder"]) == [2]
    assert queued_incidents(store, s["admin_place"]) == [1, 3]
    assert queued_incidents(store, s["loiter"]) == [2]
    assert queued_incidents(store, s["high"]) == [1, 4]
    assert queued_incidents(store, s["night"]) == [1, 2, 4]
    assert queued_incidents(store, s["day"]) == [3]
    # A rescan (the lookback) queues nothing again.
    n.scan(clock.advance(seconds=5))
    assert len(rows(store)) == 19


def test_a_subscription_cannot_reach_past_the_users_scope(store: Store) -> None:
    with pytest.raises(subs.SubscriptionError, match="district 'Norr' is not in bo's scope"):
        subscribe(store, "bo", "email", "bo@kommun.example", districts=("Norr",))
    with pytest.raises(subs.SubscriptionError, match="no place 'norrskolan' in bo's scope"):
        subscribe(store, "bo", "email", "bo@kommun.example", places=("norrskolan",))
    with pytest.raises(subs.SubscriptionError, match="no place 'hamnen'"):  # no district: admins only
        subscribe(store, "anna", "email", "anna@kommun.example", places=("hamnen",))
    subscribe(store, "admin", "email", "a@kommun.example", places=("hamnen",))


def test_subscriptions_made_after_an_incident_are_not_told_of_it(store: Store) -> None:
    clock = Clock(T0)
    n = notifier(store, clock, enabled=True)
    ingest(store, [event(T0)], T0)
    late = subscribe(store, "admin", "webhook", "http://127.0.0.1:9/", at=T0 + timedelta(seconds=1))
    n.scan(clock.advance(seconds=2))
    assert queued_incidents(store, late) == []


def test_removing_a_user_removes_their_subscriptions_and_queue(store: Store) -> None:
    clock = Clock(T0)
    n = notifier(store, clock, enabled=True)
    subscribe(store, "anna", "webhook", "http://127.0.0.1:9/")
    ingest(store, [event(T0)], T0)
    n.scan(clock())
    assert len(rows(store)) == 1
    Accounts(store.engine).remove("anna")
    assert subs.list_subscriptions(store.engine) == [] and rows(store) == []


@pytest.mark.parametrize(("text", "ok"), [("17-07", (17, 7)), ("8-16", (8, 16)), ("0-24", (0, 24)),
                                          ("17-17", None), ("25-07", None), ("17:00-07:00", None)])
def test_hours(text: str, ok: tuple[int, int] | None) -> None:
    if ok is None:
        with pytest.raises(subs.SubscriptionError, match="hours must be FROM-TO"):
            subs.parse_hours(text)
    else:
        assert subs.parse_hours(text) == ok


# --- digests ----------------------------------------------------------------------------------


def test_a_digest_goes_out_once_a_day_at_the_hour(store: Store, hook: WebhookServer) -> None:
    clock = Clock(T0)  # 21:14 local
    n = notifier(store, clock, digest_hour=7)
    sub = subscribe(store, "admin", "webhook", hook.url(), mode="digest")
    ingest(store, [event(T0)], T0)
    ingest(store, [event(T0, node="node-b", camera="park", zone="park")], T0)
    n.run_round()
    assert hook.received == [] and [r["state"] for r in rows(store)] == ["held", "held"]
    clock.t = datetime(2026, 3, 3, 5, 59, tzinfo=UTC)  # 06:59 local
    n.run_round()
    assert hook.received == []
    clock.t = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)  # 07:00 local
    n.run_round()
    [digest] = hook.bodies()
    assert digest["kind"] == "digest" and digest["date"] == "2026-03-03"
    assert [i["url"] for i in digest["incidents"]] == [f"{PUBLIC}/incidents/1", f"{PUBLIC}/incidents/2"]
    ingest(store, [event(clock.advance(hours=1), camera="late")], clock())  # 08:00: waits for tomorrow
    n.run_round()
    clock.advance(hours=10)
    n.run_round()
    assert len(hook.received) == 1
    clock.t = datetime(2026, 3, 4, 6, 0, tzinfo=UTC)
    n.run_round()
    assert [len(b["incidents"]) for b in hook.bodies()] == [2, 1]
    states = sorted(r["state"] for r in rows(store, sub.id))
    assert states == ["bundled", "bundled", "bundled", "sent", "sent"]


def test_the_digest_hour_is_local_time_across_the_dst_change(store: Store) -> None:
    n = notifier(store, Clock(T0), digest_hour=7)
    # 29 March 2026: Stockholm goes from UTC+1 to UTC+2; 07:00 local is 05:00 UTC that day.
    day, at = n.last_digest_time(datetime(2026, 3, 29, 5, 30, tzinfo=UTC))
    assert (day.isoformat(), at) == ("2026-03-29", datetime(2026, 3, 29, 5, 0, tzinfo=UTC))
    day, at = n.last_digest_time(datetime(2026, 3, 29, 4, 59, tzinfo=UTC))
    assert (day.isoformat(), at) == ("2026-03-28", datetime(2026, 3, 28, 6, 0, tzinfo=UTC))


# --- what a message says ------------------------------------------------------------------------


def test_messages_have_no_image_and_no_personal_data(store: Store, smtp: SmtpServer, hook: WebhookServer) -> None:
    clock = Clock(T0)
    n = notifier(store, clock, smtp=smtp)
    subscribe(store, "anna", "email", "anna@kommun.example")
    subscribe(store, "anna", "webhook", hook.url())
    ev = event(T0).model_copy(update={"snapshot": True})
    ingest(store, [ev], T0)
    with store.begin() as tx:  # its snapshot is in the place log: the message still carries none
        tx.insert_snapshot(ev.event_id, ev.node_id, b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9")
    n.run_round()
    [(mail, _)] = smtp.mailbox.messages
    assert not mail.is_multipart() and mail.get_content_type() == "text/plain"
    text = mail.get_content().replace("\r\n", "\n")
    assert mail["Subject"] == "[Vaktpost] Intrång (hög prioritet): Norrskolan (Norr)"
    assert text == ("Nytt ärende: Intrång, hög prioritet\nPlats: Norrskolan (Norr)\nTid: 2026-03-02 21:14\n\n"
                    f"Öppna den i inkorgen: {PUBLIC}/incidents/1\n")
    [body] = hook.bodies()
    assert set(body) == {"kind", "incident", "text"} and body["text"] == text
    assert body["incident"] == {"id": 1, "type": "intrusion", "priority": "high",
                                "places": [{"name": "Norrskolan", "district": "Norr"}],
                                "opened_at": "2026-03-02T21:14:00+01:00", "url": f"{PUBLIC}/incidents/1"}
    raw = mail.as_string() + json.dumps(body)
    for secret in ("node-a", "gard", "Skolvägen", ev.event_id, "jpeg", "image/", "0.8", "anna"):
        assert secret not in raw.replace("anna@kommun.example", ""), secret


def test_the_messages_texts_are_translated() -> None:
    folder = ROOT / "broker"
    used = {m[2] for m in extract_from_dir(str(folder / "notify"), [("**.py", "python")],
                                           keywords={"_": None, "gettext": None})}
    used |= {m[2] for m in extract_from_dir(str(folder / "inbox"), [("subscriptions_page.py", "python"),
                                                                    ("**/subscriptions.html", "jinja2")],
                                            {"**/subscriptions.html": {"extensions": "jinja2.ext.i18n"}},
                                            keywords={"_": None, "gettext": None, "tr": (2,)})}
    with (folder / "inbox" / "locale" / "sv" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    assert len(used) > 20 and used <= translated, sorted(used - translated)


# --- the worker thread and the config --------------------------------------------------------------


def test_the_worker_thread_sends_and_stops(store: Store, hook: WebhookServer) -> None:
    n = Notifier.from_settings(store, NotificationsSection(public_url=PUBLIC), "Europe/Stockholm")
    subscribe(store, "admin", "webhook", hook.url(), at=datetime.now(UTC) - timedelta(minutes=1))
    stop = threading.Event()
    worker = NotifyWorker(n, stop, every=0.05).start()
    try:
        ingest(store, [event(datetime.now(UTC))], datetime.now(UTC))
        wait_until(lambda: hook.received, message="the webhook got the incident")
    finally:
        stop.set()
        worker.join(5)
    assert worker._thread is None and len(hook.received) == 1


def test_notifications_config() -> None:
    cfg = parse_central({"notifications": {"public_url": PUBLIC, "smtp": {
        "host": "smtp.kommun.example", "from_address": "vaktpost@kommun.example", "password_file": "smtp.pw"}}})
    assert cfg.notifications.smtp is not None and cfg.notifications.smtp.port == 587
    assert cfg.notifications.smtp.starttls and cfg.notifications.digest_hour == 7
    assert CentralConfig().notifications.enabled is None
    with pytest.raises(ConfigError, match="public_url is required"):
        parse_central({"notifications": {"enabled": True}})
    with pytest.raises(ConfigError, match="notifications.digest_hour"):
        parse_central({"notifications": {"digest_hour": 24}})


def test_inactive_without_smtp_or_webhooks(store: Store) -> None:
    n = notifier(store, Clock(T0))
    subscribe(store, "anna", "email", "anna@kommun.example")  # no smtp: email cannot go out
    ingest(store, [event(T0)], T0)
    assert not n.active() and n.run_round().queued == 0
    subscribe(store, "admin", "webhook", "http://127.0.0.1:9/")
    assert n.active() and n.run_round().queued == 1  # the webhook's; the email one is skipped


# --- the CLI and the inbox page ----------------------------------------------------------------------


def vaktpost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vaktpost.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A place log with the harness's places and users, made once (hashing passwords is slow)."""
    path = tmp_path_factory.mktemp("seeded") / "central.db"
    store = Store(f"sqlite:///{path}")
    seed(store, T0)
    create_tables(store.engine)
    store.close()
    return path


def central_with_users(tmp_path: Path, seeded_db: Path, **notifications: Any) -> str:
    shutil.copy(seeded_db, tmp_path / "central.db")
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({"database": "sqlite:///central.db", "notifications": notifications}))
    return str(config)


def test_cli_add_list_remove(tmp_path: Path, seeded_db: Path) -> None:
    smtp = {"host": "127.0.0.1", "from_address": "vaktpost@kommun.example"}
    config = central_with_users(tmp_path, seeded_db, public_url=PUBLIC, smtp=smtp)
    added = vaktpost("subscriptions", "add", "anna", "--config", config, "--email", "anna@kommun.example",
                     "--district", "Norr", "--type", "intrusion", "--type", "tamper", "--min-priority", "high",
                     "--hours", "17-07", "--digest", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "added subscription 1: email anna@kommun.example for anna (digest;" in added.stdout
    hooked = vaktpost("subscriptions", "add", "admin", "--config", config, "--webhook", "https://larm.example/in",
                      cwd=tmp_path)
    assert hooked.returncode == 0 and "webhook secret" in hooked.stdout
    listed = vaktpost("subscriptions", "list", "--config", config, cwd=tmp_path).stdout.splitlines()
    assert len(listed) == 2
    assert listed[1].split() == ["1", "anna", "email", "anna@kommun.example", "digest", "districts=Norr",
                                 "types=intrusion,tamper", "min-priority=high", "hours=17-07", "queued", "0,",
                                 "sent", "0,", "failed", "0"]
    assert vaktpost("subscriptions", "remove", "1", "--config", config, cwd=tmp_path).returncode == 0
    assert len(vaktpost("subscriptions", "list", "--config", config, cwd=tmp_path).stdout.splitlines()) == 1
    unknown = vaktpost("subscriptions", "remove", "7", "--config", config, cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.strip().endswith("no subscription 7")


MISTAKES = [
    (["nobody", "--webhook", "https://x.example/"], "no user 'nobody'"),
    (["bo", "--webhook", "https://x.example/", "--district", "Norr"], "district 'Norr' is not in bo's scope"),
    (["anna", "--webhook", "ftp://x.example/"], "webhook must be an http:// or https:// URL"),
    (["anna", "--webhook", "https://x.example/", "--hours", "7"], "hours must be FROM-TO"),
    (["anna", "--webhook", "https://x.example/", "--type", "fire"], "unknown incident type 'fire'"),
    (["anna", "--webhook", "https://x.example/", "--min-priority", "urgent"], "priority must be one of"),
    (["anna", "--webhook", "https://x.example/", "--email", "a@b.se"], "either --email ADDRESS or --webhook URL"),
    (["anna", "--email", "anna@kommun.example"], "notifications.smtp is not set"),
]


def test_cli_mistakes_are_one_line(tmp_path: Path, seeded_db: Path) -> None:
    # In process (the same Typer app as `vaktpost`): eight interpreter starts would be slow.
    from typer.testing import CliRunner

    from vaktpost.cli import app
    config = central_with_users(tmp_path, seeded_db)
    runner = CliRunner()
    for args, message in MISTAKES:
        run = runner.invoke(app, ["subscriptions", "add", *args[:1], "--config", config, *args[1:]])
        assert run.exit_code == 2, run.output
        assert len(run.stderr.strip().splitlines()) == 1 and message in run.stderr, run.stderr


def test_the_inbox_page_adds_lists_and_removes_own_subscriptions(tmp_path: Path) -> None:
    from test_inbox import Client
    with start_inbox(tmp_path) as inbox:
        anna, bo = Client(inbox.url), Client(inbox.url)
        assert anna.login("anna", PASSWORD) == 303 and bo.login("bo", PASSWORD) == 303
        status, _, page = anna.request("GET", "/subscriptions")
        assert status == 200 and "Aviseringar" in page and "Du har inga bevakningar." in page
        assert "Söder" not in page and "Norrskolan" in page  # only her scope is offered
        token = anna.csrf("/subscriptions")
        status, _, _ = anna.request("POST", "/subscriptions", {
            "csrf_token": token, "email": "anna@kommun.example", "district": "Norr", "type": "intrusion",
            "min_priority": "normal", "hours": "17-07"})
        assert status == 303
        status, _, page = anna.request("GET", "/subscriptions")
        assert "anna@kommun.example" in page and "Intrång" in page and "17–07" in page
        status, _, page = anna.request("POST", "/subscriptions", {
            "csrf_token": token, "email": "anna@kommun.example", "district": "Söder"})
        assert status == 400 and "Bevakningen sparades inte" in page and "not in anna" in page
        [sub] = subs.list_subscriptions(inbox.store.engine)
        assert (sub.user_name, sub.districts, sub.hours) == ("anna", ("Norr",), (17, 7))
        # Another user's subscription is not theirs to remove, and looks missing.
        status, _, _ = bo.request("POST", f"/subscriptions/{sub.id}/delete", {"csrf_token": bo.csrf("/subscriptions")})
        assert status == 404
        assert anna.request("POST", f"/subscriptions/{sub.id}/delete", {"csrf_token": token})[0] == 303
        assert anna.request("POST", "/subscriptions", {"email": "x@kommun.example"})[0] == 403  # no CSRF token
        assert subs.list_subscriptions(inbox.store.engine) == []


def test_queueing_sending_and_digests_on_both_databases(place_store: Store, hook: WebhookServer) -> None:
    seed(place_store, T0 - timedelta(days=1))
    clock = Clock(T0)
    n = notifier(place_store, clock, digest_hour=7)
    now_sub = subscribe(place_store, "anna", "webhook", hook.url("/now"))
    daily = subscribe(place_store, "admin", "webhook", hook.url("/daily"), mode="digest")
    ingest(place_store, [event(T0)], T0)
    assert n.run_round().sent == 1
    n.scan(clock.advance(seconds=5))  # the lookback sees it again: nothing queued twice
    assert len(rows(place_store, now_sub.id)) == 1 and len(rows(place_store, daily.id)) == 1
    # A second service on the same database cannot claim the row the first claimed.
    ingest(place_store, [event(clock.advance(minutes=20))], clock())
    n.scan(clock())
    [row] = [r for r in rows(place_store, now_sub.id) if r["state"] == "pending"]
    other = notifier(place_store, clock, digest_hour=7)
    assert n._claim(row["id"], row["next_attempt_at"], clock())
    assert not other._claim(row["id"], row["next_attempt_at"], clock())
    clock.t = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
    assert other.run_round().digests == 1 and n.run_round().digests == 0
    assert [len(b["incidents"]) for b in hook.bodies("/daily")] == [2]
