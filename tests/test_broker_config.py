"""The generated Mosquitto configuration, run by a real Mosquitto 2.0.

Reason codes asserted here are what Mosquitto 2.0.11 sends to MQTT v5 clients:
a QoS 1 publish refused by the ACL gets PUBACK 0x87 (Not authorized); a
subscription to a topic the client may not read is *granted* (SUBACK 0x01) but
nothing is delivered on it, so those tests assert non-delivery.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from mqtt_harness import (
    Broker,
    PayloadAuditor,
    free_port,
    make_test_ca,
    start_broker,
    wait_until,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel

from vaktpost.broker.config import SNAPSHOT_MAX_BYTES_CEILING
from vaktpost.broker.mosquitto import (
    ACL_FILE,
    CONF_FILE,
    CREDENTIALS_FILE,
    DATA_DIR,
    MAX_PACKET_SIZE,
    MAX_QUEUED_BYTES,
    PASSWD_FILE,
    BrokerSetupError,
    init_broker,
    load_credentials,
    render_acl,
)
from vaktpost.contract.topics import ANY, ROOT, Topic
from vaktpost.edge.config.snapshot import SnapshotSettings
from vaktpost.edge.delivery.transport import packet_size
from vaktpost.edge.evidence.snapshot import encode_jpeg

NOT_AUTHORIZED = 0x87
AUTH_REFUSED = {0x86, 0x87}  # Bad user name or password / Not authorized; 2.0.x sends 0x87
IS_ROOT = os.geteuid() == 0

needs_mosquitto = pytest.mark.skipif(
    not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()), reason="mosquitto not installed"
)


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A broker directory the 'mosquitto' user can reach (pytest's tmp_path is below a
    0700 directory), so the generated config is exercised with its privilege drop."""
    base = Path(tempfile.mkdtemp(prefix="vaktpost-broker-test-"))
    base.chmod(0o711)
    yield base / "broker"
    shutil.rmtree(base, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- files ------------------------------------------------------------------------


def test_init_writes_files_with_safe_modes(reachable_dir: Path) -> None:
    creds = init_broker(reachable_dir, ["node-a", "node-b"], 18999, bind_address="127.0.0.1")

    assert mode(reachable_dir / PASSWD_FILE) == 0o640
    assert mode(reachable_dir / ACL_FILE) == 0o640
    assert mode(reachable_dir / CREDENTIALS_FILE) == 0o600
    assert mode(reachable_dir / DATA_DIR) == 0o700
    assert mode(reachable_dir / CONF_FILE) == 0o644
    if IS_ROOT:
        broker_user = pwd.getpwnam("mosquitto")
        assert (reachable_dir / PASSWD_FILE).stat().st_gid == broker_user.pw_gid
        assert (reachable_dir / PASSWD_FILE).stat().st_uid == 0
        assert (reachable_dir / DATA_DIR).stat().st_uid == broker_user.pw_uid
        assert (reachable_dir / CREDENTIALS_FILE).stat().st_uid == 0

    passwd = (reachable_dir / PASSWD_FILE).read_text()
    users = [line.split(":", 1)[0] for line in passwd.splitlines()]
    assert sorted(users) == ["central", "inbox", "node-a", "node-b"]
    for account in creds.all_accounts():
        assert account.password not in passwd  # hashed, never clear text
        assert len(account.password) >= 24

    conf = (reachable_dir / CONF_FILE).read_text()
    assert "allow_anonymous false" in conf
    assert f"password_file {reachable_dir.resolve() / PASSWD_FILE}" in conf
    assert f"acl_file {reachable_dir.resolve() / ACL_FILE}" in conf
    assert f"persistence_location {reachable_dir.resolve() / DATA_DIR}/" in conf
    assert "listener 18999 127.0.0.1\n" in conf
    assert "use_username_as_clientid true" in conf.split("listener 18999", 1)[1]

    assert load_credentials(reachable_dir) == creds
    on_disk = yaml.safe_load((reachable_dir / CREDENTIALS_FILE).read_text())
    assert on_disk["host"] == "127.0.0.1" and on_disk["port"] == 18999
    assert on_disk["nodes"]["node-a"]["password"] == creds.nodes["node-a"].password


def test_rerun_keeps_passwords_and_adds_nodes(reachable_dir: Path) -> None:
    first = init_broker(reachable_dir, ["node-a"], 18999, bind_address="127.0.0.1")
    second = init_broker(reachable_dir, ["node-b"], 18998, bind_address="127.0.0.1")

    assert sorted(second.nodes) == ["node-a", "node-b"]
    assert second.nodes["node-a"] == first.nodes["node-a"]
    assert second.consumer == first.consumer and second.inbox == first.inbox
    assert second.port == 18998
    assert "listener 18998 127.0.0.1" in (reachable_dir / CONF_FILE).read_text()


def test_rerun_adds_consumers_and_observers_keeping_passwords(reachable_dir: Path) -> None:
    first = init_broker(reachable_dir, ["node-a"], 18999, bind_address="127.0.0.1")
    assert list(first.consumers) == ["central"] and first.observers == {}
    second = init_broker(reachable_dir, [], 18999, bind_address="127.0.0.1", consumers=["central-b"],
                         observers=["acme"])
    assert list(second.consumers) == ["central", "central-b"]
    assert second.consumers["central"] == first.consumers["central"]
    assert list(second.observers) == ["acme"] and second.inbox == first.inbox
    third = init_broker(reachable_dir, ["node-b"], 18999, bind_address="127.0.0.1")  # no --consumer: keep them
    assert third.consumers == second.consumers and third.observers == second.observers
    users = {line.split(":", 1)[0] for line in (reachable_dir / PASSWD_FILE).read_text().splitlines()}
    assert users == {"central", "central-b", "inbox", "acme", "node-a", "node-b"}


def test_credentials_of_before_with_one_consumer_are_kept(reachable_dir: Path) -> None:
    reachable_dir.mkdir()
    old = {"host": "127.0.0.1", "port": 18999, "consumer": {"username": "central", "password": "old-secret"},
           "nodes": {"node-a": {"username": "node-a", "password": "node-secret"}}}
    (reachable_dir / CREDENTIALS_FILE).write_text(yaml.safe_dump(old))
    creds = init_broker(reachable_dir, [], 18999, bind_address="127.0.0.1")
    assert creds.consumers["central"].password == "old-secret"
    assert creds.nodes["node-a"].password == "node-secret"
    assert "consumer" not in yaml.safe_load((reachable_dir / CREDENTIALS_FILE).read_text())


def test_host_for_wildcard_bind_is_loopback(reachable_dir: Path) -> None:
    assert init_broker(reachable_dir, [], 18999).host == "127.0.0.1"


@pytest.mark.parametrize(
    "nodes, kwargs, message",
    [
        (["Node-A"], {}, "invalid node id 'Node-A'"),
        (["node/a"], {}, "invalid node id"),
        (["+"], {}, "invalid node id"),
        ([""], {}, "invalid node id"),
        (["node-a"], {"consumers": ["Central"]}, "invalid consumer name"),
        (["node-a"], {"observers": ["a/b"]}, "invalid observer name"),
        (["central"], {}, "'central' is reserved"),
        (["inbox"], {}, "'inbox' is reserved"),
        (["node-a"], {"consumers": ["inbox"]}, "the inbox's account"),
        (["node-a"], {"consumers": ["node-a"]}, "already taken .by the consumer"),
        (["node-a"], {"observers": ["node-a"]}, "already taken .by the observer"),
        (["node-a"], {"consumers": ["x"], "observers": ["x"]}, "observer name 'x' is already taken"),
        (["node-a"], {"port": 0}, "invalid port"),
        (["node-a"], {"bind_address": "1.2.3.4 x"}, "invalid bind address"),
        (["node-a"], {"tls": {"certfile": "/nonexistent.crt", "keyfile": "/nonexistent.key"}}, "does not exist"),
        (["node-a"], {"tls": {"certfile": "/x.crt"}}, "invalid tls settings"),
    ],
)
def test_bad_input_is_a_clear_value_error(reachable_dir: Path, nodes: list[str], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        init_broker(reachable_dir, nodes, **kwargs)
    assert not (reachable_dir / CREDENTIALS_FILE).exists()


def test_missing_mosquitto_passwd_says_what_to_install(reachable_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if any(Path(d, "mosquitto_passwd").exists() for d in ("/usr/sbin", "/usr/local/sbin", "/sbin")):
        pytest.skip("mosquitto_passwd lives in an sbin directory that is always searched")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no tools at all
    with pytest.raises(BrokerSetupError, match="install the mosquitto package"):
        init_broker(reachable_dir, ["node-a"])
    assert not reachable_dir.exists()


def test_load_credentials_of_uninitialised_dir(tmp_path: Path) -> None:
    with pytest.raises(BrokerSetupError, match="run `vaktpost broker init"):
        load_credentials(tmp_path)


@pytest.mark.skipif(not IS_ROOT, reason="privilege drop happens only when started as root")
def test_directory_the_broker_user_cannot_enter_is_refused(tmp_path: Path) -> None:
    # pytest's base temp directory is 0700 root: exactly the /root mistake.
    assert mode(tmp_path.parent.parent) & 0o001 == 0
    with pytest.raises(BrokerSetupError, match="cannot enter"):
        init_broker(tmp_path / "broker", ["node-a"])


def test_acl_grants_each_account_only_its_own_topics(reachable_dir: Path) -> None:
    creds = init_broker(reachable_dir, ["node-a"], 18999, bind_address="127.0.0.1", observers=["acme"])
    acl = render_acl(creds)
    assert acl == (reachable_dir / ACL_FILE).read_text()
    lines = [line for line in acl.splitlines() if line and not line.startswith("#")]
    # No pattern (it would apply to every account) and no wildcard beyond one level.
    assert not any(line.startswith("pattern") or line.endswith("#") for line in lines)
    blocks = {b.split("\n", 1)[0]: b for b in ("\n".join(lines) + "\n").split("user ")[1:]}
    assert blocks["node-a"].splitlines()[1:] == [
        f"topic write {ROOT}/node-a/events/+", f"topic write {ROOT}/node-a/snapshots/+",
        f"topic write {ROOT}/node-a/status", f"topic write {ROOT}/node-a/heartbeat",
        f"topic write {ROOT}/node-a/config", f"topic read {ROOT}/node-a/acks"]
    # The node's config (retained): read by the consumer, the inbox and observers.
    for reader in ("central", "inbox", "acme"):
        assert f"topic read {ROOT}/+/config" in blocks[reader]
    # Snapshots: only the consumer reads them; only the consumer writes anything central.
    assert f"topic read {ROOT}/+/snapshots/+" in blocks["central"]
    assert f"topic write {ROOT}/+/acks" in blocks["central"]
    for reader in ("acme", "inbox"):
        assert "write" not in blocks[reader] and "snapshots" not in blocks[reader] and "acks" not in blocks[reader]
    assert f"topic read {ROOT}/+/events/+" in blocks["acme"] and "events" not in blocks["inbox"]


# --- the generated config, run as is ----------------------------------------------


@needs_mosquitto
def test_config_runs_as_is_and_drops_privileges(reachable_dir: Path) -> None:
    reachable_dir.mkdir(mode=0o700)  # an existing private directory is opened up to the broker's group
    port = free_port()
    creds = init_broker(reachable_dir, ["node-a"], port, bind_address="127.0.0.1")
    # Started exactly as the docs say: `mosquitto -c DIR/mosquitto.conf`.
    b = Broker(dir=reachable_dir, port=port, credentials=creds).start()
    try:
        assert b.proc is not None
        if IS_ROOT:
            status = Path(f"/proc/{b.proc.pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert int(uid_line.split()[1]) == pwd.getpwnam("mosquitto").pw_uid
        with b.client("central") as consumer, b.client("node-a") as node:
            assert consumer.subscribe_wait(Topic.events(ANY, ANY)) == 1
            assert node.publish_wait(Topic.events("node-a", "cam1"), b"{}") < 0x80
            assert consumer.expect_message().topic == Topic.events("node-a", "cam1")
    finally:
        b.stop()
    # SIGTERM made it save its state where the config says, as the broker user.
    db = reachable_dir / DATA_DIR / "mosquitto.db"
    assert db.exists(), b.log_text()
    if IS_ROOT:
        assert db.stat().st_uid == pwd.getpwnam("mosquitto").pw_uid


# --- limits -----------------------------------------------------------------------


def _upper_bound(model: type[BaseModel], name: str) -> int:
    return next(m.le for m in model.model_fields[name].metadata if getattr(m, "le", None) is not None)


def test_node_largest_snapshot_and_central_ceiling_fit_the_packet_limit() -> None:
    # The worst a node can send: a square snapshot of noise, as wide and good as allowed.
    widest = _upper_bound(SnapshotSettings, "width")
    quality = _upper_bound(SnapshotSettings, "quality")
    noise = np.random.default_rng(0).integers(0, 256, (widest, widest, 3), dtype=np.uint8)
    topic = Topic.snapshots("node-a", "0" * 36)
    assert packet_size(topic, encode_jpeg(noise, widest, quality)) < MAX_PACKET_SIZE
    assert packet_size(topic, b"\0" * SNAPSHOT_MAX_BYTES_CEILING) < MAX_PACKET_SIZE


def test_config_limits_packets_and_queued_bytes(broker: Broker) -> None:
    conf = broker.conf_path.read_text().splitlines()
    assert f"max_packet_size {MAX_PACKET_SIZE}" in conf
    assert f"max_queued_bytes {MAX_QUEUED_BYTES}" in conf
    with broker.client("node-a") as node:  # the limit reaches clients in CONNACK
        assert node.connack_properties.MaximumPacketSize == MAX_PACKET_SIZE


def test_100_mb_publish_is_refused_and_the_broker_survives(broker: Broker) -> None:
    consumer = broker.client("central")
    assert consumer.subscribe_wait(Topic.events(ANY, ANY)) == 1
    raw = broker.client("node-a")  # a plain paho client: nothing refuses the message before the broker
    raw.paho.publish(Topic.events("node-a", "cam1"), b"x" * 100_000_000, qos=1)
    raw.wait_disconnected(60)
    raw.close()  # before paho reconnects and sends it again
    assert "disconnected due to oversize packet" in broker.log_text()
    # Refused on the announced length: the broker never held the 100 MB.
    peak = next(line for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    assert int(peak.split()[1]) < 50_000, peak  # kB
    assert broker.running
    with broker.client("node-a") as node:
        assert node.publish_wait(Topic.events("node-a", "cam1"), b"after") < 0x80
    assert consumer.expect_message().payload == b"after"  # other clients kept their connection


# --- authentication ---------------------------------------------------------------


def test_anonymous_refused(broker: Broker) -> None:
    rc = broker.connack(None)
    assert rc.is_failure and rc.value in AUTH_REFUSED


def test_wrong_password_refused(broker: Broker) -> None:
    rc = broker.connack("node-a", "not-the-password")
    assert rc.is_failure and rc.value in AUTH_REFUSED
    # ...and another account's password does not work either.
    rc = broker.connack("node-a", broker.password("node-b"))
    assert rc.is_failure and rc.value in AUTH_REFUSED


def test_unknown_user_refused(broker: Broker) -> None:
    rc = broker.connack("node-z", broker.password("node-a"))
    assert rc.is_failure and rc.value in AUTH_REFUSED


def test_right_password_accepted(broker: Broker) -> None:
    assert broker.connack("node-b").value == 0


# --- ACL: nodes -------------------------------------------------------------------


def test_node_publishes_only_under_its_own_prefix(broker: Broker) -> None:
    with broker.client("central") as consumer, broker.client("node-a") as node:
        for sub in (Topic.events(ANY, ANY), Topic.status(ANY), Topic.heartbeat(ANY), Topic.snapshots(ANY, ANY)):
            assert consumer.subscribe_wait(sub) == 1

        assert node.publish_wait(Topic.events("node-b", "cam1"), b"forged") == NOT_AUTHORIZED
        assert node.publish_wait(Topic.snapshots("node-b", "e1"), b"forged") == NOT_AUTHORIZED
        assert node.publish_wait(Topic.status("node-b"), b"forged", retain=True) == NOT_AUTHORIZED
        assert node.publish_wait(Topic.heartbeat("node-b"), b"forged") == NOT_AUTHORIZED
        assert node.publish_wait("vaktpost/v1/elsewhere", b"forged") == NOT_AUTHORIZED
        # Acks come from the consumer only.
        assert node.publish_wait(Topic.acks("node-a"), b"forged") == NOT_AUTHORIZED

        assert node.publish_wait(Topic.events("node-a", "cam1"), b"e") < 0x80
        assert node.publish_wait(Topic.status("node-a"), b"s", retain=True) < 0x80
        assert node.publish_wait(Topic.heartbeat("node-a"), b"h") < 0x80
        assert node.publish_wait(Topic.snapshots("node-a", "e1"), b"j") < 0x80

        # Messages from one publisher arrive in order: had a forged one got through,
        # it would come before these.
        got = [consumer.expect_message() for _ in range(4)]
        assert [(m.topic, m.payload) for m in got] == [
            (Topic.events("node-a", "cam1"), b"e"),
            (Topic.status("node-a"), b"s"),
            (Topic.heartbeat("node-a"), b"h"),
            (Topic.snapshots("node-a", "e1"), b"j"),
        ]


def test_node_receives_only_its_own_acks(broker: Broker) -> None:
    with broker.client("central") as consumer, broker.client("node-a") as a, broker.client("node-b") as b:
        # Mosquitto 2.0 grants these subscriptions; the ACL filters delivery instead.
        assert a.subscribe_wait(Topic.acks("node-b")) < 0x80
        assert a.subscribe_wait(f"{ROOT}/#") < 0x80
        assert b.subscribe_wait(Topic.acks("node-b")) < 0x80

        assert consumer.publish_wait(Topic.acks("node-b"), b"for-b") < 0x80
        assert b.expect_message().payload == b"for-b"
        assert consumer.publish_wait(Topic.acks("node-a"), b"for-a") < 0x80
        # In order from one publisher: node-a's first message is its own ack.
        msg = a.expect_message()
        assert (msg.topic, msg.payload) == (Topic.acks("node-a"), b"for-a")


def test_node_cannot_read_other_nodes_events(broker: Broker) -> None:
    with broker.client("node-a") as a, broker.client("node-b") as b:
        assert a.subscribe_wait(Topic.events(ANY, ANY)) < 0x80
        assert a.subscribe_wait(Topic.snapshots(ANY, ANY)) < 0x80
        assert a.subscribe_wait(Topic.acks("node-a")) < 0x80
        assert b.publish_wait(Topic.events("node-b", "cam1"), b"secret") < 0x80
        assert b.publish_wait(Topic.snapshots("node-b", "e1"), b"secret image") < 0x80
        with broker.client("central") as consumer:
            assert consumer.publish_wait(Topic.acks("node-a"), b"marker") < 0x80
        # The event and snapshot were published first; node-a sees only the later marker.
        assert a.expect_message().payload == b"marker"


def test_last_will_on_own_status_is_delivered_foreign_will_is_not(broker: Broker) -> None:
    will_with = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
    with broker.client("central") as consumer:
        assert consumer.subscribe_wait(Topic.status(ANY)) == 1

        foreign = broker.client("node-a", will=(Topic.status("node-b"), b"offline", 1, True))
        foreign.paho.disconnect(reasoncode=will_with)
        foreign.wait_disconnected()
        foreign.close()  # one connection per account: the broker takes the username as client id
        own = broker.client("node-a", will=(Topic.status("node-a"), b"offline", 1, True))
        own.paho.disconnect(reasoncode=will_with)

        msg = consumer.expect_message()
        assert (msg.topic, msg.payload) == (Topic.status("node-a"), b"offline")

    # The will was retained: a consumer connecting later still learns the state.
    with broker.client("central") as later:
        assert later.subscribe_wait(Topic.status(ANY)) == 1
        msg = later.expect_message()
        assert (msg.topic, msg.payload, msg.retain) == (Topic.status("node-a"), b"offline", True)


# --- ACL: consumer ----------------------------------------------------------------


def test_consumer_reads_all_nodes_and_writes_acks(broker: Broker) -> None:
    with broker.client("central") as consumer, broker.client("node-a") as a, broker.client("node-b") as b:
        assert consumer.subscribe_wait(Topic.events(ANY, ANY)) == 1
        assert consumer.subscribe_wait(Topic.snapshots(ANY, ANY)) == 1
        assert a.subscribe_wait(Topic.acks("node-a")) == 1

        assert a.publish_wait(Topic.events("node-a", "cam1"), b"ea") < 0x80
        assert consumer.expect_message().payload == b"ea"
        assert b.publish_wait(Topic.events("node-b", "door"), b"eb") < 0x80
        msg = consumer.expect_message()
        assert (msg.topic, msg.payload) == (Topic.events("node-b", "door"), b"eb")
        assert b.publish_wait(Topic.snapshots("node-b", "e1"), b"jb") < 0x80
        msg = consumer.expect_message()
        assert (msg.topic, msg.payload) == (Topic.snapshots("node-b", "e1"), b"jb")

        assert consumer.publish_wait(Topic.acks("node-a"), b"ack") < 0x80
        assert a.expect_message().payload == b"ack"


def test_consumer_cannot_forge_node_events(broker: Broker) -> None:
    with broker.client("central") as consumer:
        assert consumer.publish_wait(Topic.events("node-a", "cam1"), b"forged") == NOT_AUTHORIZED
        assert consumer.publish_wait(Topic.status("node-a"), b"forged") == NOT_AUTHORIZED
        assert consumer.publish_wait(Topic.snapshots("node-a", "e1"), b"forged") == NOT_AUTHORIZED


# --- operations -------------------------------------------------------------------


def test_new_node_enrolled_by_rerun_and_sighup(broker: Broker) -> None:
    old_password = broker.password("node-a")
    rc = broker.connack("node-c", "anything")
    assert rc.is_failure

    broker.add_nodes(["node-c"])  # init_broker again + SIGHUP

    assert broker.password("node-a") == old_password
    # The reload is asynchronous: poll until the broker accepts the new account.
    wait_until(lambda: broker.connack("node-c").value == 0, message="node-c accepted after SIGHUP")
    assert broker.connack("node-a").value == 0


def test_queued_events_survive_broker_restart(broker: Broker) -> None:
    """The consumer's persistent session and its queue are kept across a clean restart."""
    session = dict(clean_start=False, session_expiry=3600)
    consumer = broker.client("central", **session)
    assert consumer.subscribe_wait(Topic.events(ANY, ANY)) == 1
    consumer.close()

    with broker.client("node-a") as node:
        assert node.publish_wait(Topic.events("node-a", "cam1"), b"while-away") < 0x80
    broker.restart()

    consumer = broker.client("central", **session)
    assert consumer.connack_flags.session_present
    msg = consumer.expect_message()
    assert (msg.topic, msg.payload) == (Topic.events("node-a", "cam1"), b"while-away")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_tls_listener(broker_factory, tmp_path: Path) -> None:
    ca_crt, crt, key = make_test_ca(tmp_path)

    b = broker_factory(["node-a"], tls={"certfile": str(crt), "keyfile": str(key)})
    conf = b.conf_path.read_text()
    assert f"certfile {crt.resolve()}" in conf and f"keyfile {key.resolve()}" in conf

    with b.client("node-a", tls_ca=ca_crt) as node:
        assert node.publish_wait(Topic.events("node-a", "cam1"), b"x") < 0x80
    # Plain MQTT on the TLS port gets no CONNACK: the broker closes the connection.
    with pytest.raises(ConnectionError, match="before CONNACK"):
        b.client("node-a")


def test_payload_auditor_flags_image_data_outside_snapshots(tmp_path: Path) -> None:
    """The auditor every broker fixture runs must be able to fail (here on its own broker)."""
    b = start_broker(tmp_path / "audited", ["node-a"])
    try:
        auditor = PayloadAuditor(b)
        with b.client("node-a") as node:
            assert auditor.subscribed.wait(10), "auditor subscribed"
            jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
            assert node.publish_wait(Topic.snapshots("node-a", "e1"), jpeg) < 0x80
            assert node.publish_wait(Topic.events("node-a", "cam1"), b'{"x": "' + b"QUJD" * 60 + b'"}') < 0x80
            assert node.publish_wait(Topic.heartbeat("node-a"), jpeg) < 0x80
            # The snapshot is not for the auditor's observer account to read.
            wait_until(lambda: auditor.seen >= 2, message="auditor saw the event and the heartbeat")
        found = auditor.close()
    finally:
        b.close()
    assert len(found) == 2
    assert any("events/cam1" in v and "base64" in v for v in found)
    assert any("heartbeat" in v and "\\xff\\xd8\\xff" in v for v in found)
