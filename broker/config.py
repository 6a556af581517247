"""Central host configuration (YAML), validated by pydantic.

Every option is documented once, in its `description`; docs/central.md is the
reader-facing form. Errors reuse the node config's style: one line per problem,
naming the key (`vaktpost.edge.config.ConfigError`, `vaktpost.edge.config.format_errors`).

Relative paths (places_file, password_file, inbox.secret_key_file, TLS files, the
notifications.smtp files and the file of a ``sqlite:///relative.db`` URL) are taken
relative to the config file's directory, so a config works the same whatever
directory the service starts in.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from vaktpost.broker.incidents.kinds import DEFAULT_PRIORITY, IncidentType, Priority
from vaktpost.contract.config import (
    BrokerConnection,
    ConfigError,
    Duration,
    Strict,
    TimeZoneName,
    read_yaml,
    rebase,
    validate,
)

DEFAULT_DATABASE = "sqlite:///vaktpost-central.db"
# MQTT shared subscription group names are one topic level without wildcards.
GroupName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


# Session expiry of a consumer alone: the broker queues everything while it is away.
SESSION_EXPIRY_ALONE = 7 * 24 * 3600
# ... and of a member of a shared group. Mosquitto keeps handing a disconnected member its
# share while the session lives (its issue #2662), so a member killed for good would hold
# those events until then; the nodes resend what was not acked after their resend_after
# (30 s, doubling), and the other members store them (docs/central.md, "Several consumers").
SESSION_EXPIRY_IN_GROUP = 60


class CentralMqtt(BrokerConnection):
    username: str = Field("central", description="This consumer's account on the broker, which is also its "
                          "MQTT client id (the broker binds them): one account per consumer process")
    shared_group: GroupName | None = Field(
        None,
        description="Subscribe as $share/<group>/… so several consumers (each with its own account) "
        "split the messages between them; null = one consumer receives everything",
    )
    session_expiry_seconds: int = Field(
        SESSION_EXPIRY_ALONE,
        ge=0,
        le=0xFFFFFFFF,
        description="How long the broker keeps the session and queues events while the consumer is away "
        f"(default {SESSION_EXPIRY_ALONE} s alone, {SESSION_EXPIRY_IN_GROUP} s with shared_group)",
    )
    reconnect_max_seconds: int = Field(30, ge=1, le=3600, description="Cap of the reconnect backoff")

    @model_validator(mode="before")
    @classmethod
    def _group_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "client_id" in data:
            raise ValueError("client_id is no longer used: the broker takes the username as client id. Give each "
                             "consumer process its own account (vaktpost broker init --consumer NAME) and set "
                             "mqtt.username to it")
        if data.get("shared_group") and "session_expiry_seconds" not in data:
            data = {**data, "session_expiry_seconds": SESSION_EXPIRY_IN_GROUP}
        return data


DEFAULT_SNAPSHOT_MAX_BYTES = 2 * 1024 * 1024
# The highest snapshots.max_bytes; the broker's packet limit (broker/mosquitto.py) lets it through.
SNAPSHOT_MAX_BYTES_CEILING = 64 * 1024 * 1024


class SnapshotsSection(Strict):
    max_bytes: int = Field(
        DEFAULT_SNAPSHOT_MAX_BYTES,
        ge=1024,
        le=SNAPSHOT_MAX_BYTES_CEILING,
        description="Largest snapshot accepted, in bytes; a larger one goes to dead letters (its hash, not its bytes)",
    )


DAY = 86400.0
_RENAMED = {"snapshots_days": "snapshots", "events_days": "events", "purge_interval_hours": "purge_interval"}


def _keep_period(seconds: float) -> float:
    # A bare number is seconds, as everywhere else: `snapshots: 30` would purge all but the last half minute.
    if not DAY <= seconds <= 36500 * DAY:
        raise ValueError("must be between 1d and 36500d (a bare number is seconds: write 30d for 30 days)")
    return seconds


KeepPeriod = Annotated[Duration, AfterValidator(_keep_period)]


class RetentionSection(Strict):
    """How long the place log keeps data. Durations as in the node config: seconds or 30m, 12h, 7d."""

    snapshots: KeepPeriod = Field(30 * DAY, description="Delete snapshots this long after they were received")
    events: KeepPeriod = Field(
        365 * DAY,
        description="Delete events this long after they started (their snapshots with them), and dead letters "
        "this long after they were received",
    )
    incidents: KeepPeriod = Field(
        3 * 365 * DAY,
        description="Delete a resolved incident, with its history (audit rows), this long after it was "
        "resolved; audit rows of no incident go at the same age. Open incidents are kept. The default keeps "
        "two years and the same period a year earlier for the situational picture",
    )
    purge_interval: Duration = Field(
        DAY, le=365 * DAY, description="The consumer purges at start and then at this interval"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in _RENAMED.items():
                if old in data:
                    raise ValueError(f"{old} is now {new}, a duration such as 30d or 24h")
        return data

    @property
    def snapshots_age(self) -> timedelta:
        return timedelta(seconds=self.snapshots)

    @property
    def events_age(self) -> timedelta:
        return timedelta(seconds=self.events)

    @property
    def incidents_age(self) -> timedelta:
        return timedelta(seconds=self.incidents)


class InboxSection(Strict):
    """The facilities staff inbox (`vaktpost inbox`, docs/inbox.md)."""

    secret_key_file: Path | None = Field(
        None,
        description="File with the inbox's secret key (at least 32 random bytes, e.g. "
        "`head -c 48 /dev/urandom | base64 > inbox.key`, mode 0600); it signs the CSRF tokens. Required "
        "to run the inbox",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address the inbox listens on")
    port: int = Field(8080, ge=1, le=65535, description="Port the inbox listens on")
    forwarded: bool = Field(
        False,
        description="Behind a reverse proxy that terminates TLS: trust its X-Forwarded-Proto/-For headers "
        "(from forwarded_allow_ips), so cookies are Secure and the client address is the real one",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Comma-separated proxy addresses whose X-Forwarded-* headers are trusted"
    )
    timezone: TimeZoneName = Field("Europe/Stockholm", description="Time zone every time is shown in")
    session_lifetime: Duration = Field(12 * 3600, le=30 * DAY, description="A login lasts this long")
    login_max_failures: int = Field(
        10, ge=1, le=1000,
        description="Wrong passwords for one account, or from one client address, that lock the login",
    )
    login_lockout: Duration = Field(
        15 * 60, le=DAY,
        description="How long a locked login stays locked; failures older than this are forgotten",
    )
    node_offline_after: Duration = Field(
        90, le=DAY,
        description="A node whose last heartbeat is older than this is shown offline (3 missed heartbeats "
        "at the nodes' default 30 s)",
    )

class IncidentsSection(Strict):
    """How the consumer groups events into incidents (docs/central.md, "Incidents")."""

    gap: Duration = Field(
        600.0, le=7 * DAY,
        description="Events of the same place, camera and type (and zone, for people) join one incident "
        "while each starts within this long of the incident's last event",
    )
    offline_after_heartbeats: int = Field(
        3, ge=1, le=1000,
        description="A node that misses this many heartbeat intervals gets a node_offline incident",
    )
    heartbeat_interval: Duration | None = Field(
        None, le=DAY,
        description="The nodes' heartbeat interval; null = learnt per node from consecutive heartbeats",
    )
    priority: dict[IncidentType, Priority] = Field(
        default_factory=dict,
        description="Priority (low, normal, high) per incident type; types not listed keep their default "
        "(tamper, intrusion, node_offline high; motion low; others normal)",
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_names(cls, v: Any) -> Any:
        # Written by name in YAML (high), stored as the number that sorts.
        if not isinstance(v, dict):
            return v
        names = ", ".join(Priority.__members__)
        for k, p in v.items():
            if not (isinstance(p, str) and p in Priority.__members__):
                raise ValueError(f"{k}: priority must be one of {names}, got {p!r}")
        return {k: Priority[p] for k, p in v.items()}

    def priority_of(self, t: IncidentType) -> Priority:
        return self.priority.get(t, DEFAULT_PRIORITY[t])


class SmtpSection(Strict):
    """The mail server notifications are sent through."""

    host: str = Field(min_length=1, description="SMTP server host")
    port: int = Field(587, ge=1, le=65535, description="SMTP server port (587 is the submission port)")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before logging in; the "
                           "server's certificate is verified. false only for a relay on this host")
    ca_file: Path | None = Field(None, description="CA certificate the server's certificate is checked "
                                 "against; null = the system's trusted CAs")
    username: str | None = Field(None, description="Account to log in with; null = no login")
    password_file: Path | None = Field(None, description="File whose first line is the SMTP password")
    from_address: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$",
                              description="Sender address of the messages, e.g. vaktpost@kommun.se")
    timeout: Duration = Field(30.0, le=600, description="Give up on a connection or reply after this long")

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().splitlines()[0].strip()
        except (OSError, IndexError) as e:
            raise ConfigError(f"notifications.smtp.password_file: cannot read {self.password_file}: {e}") from None


class NotificationsSection(Strict):
    """Messages to staff about new incidents (docs/inbox.md, "Notifications")."""

    enabled: bool | None = Field(
        None,
        description="Send notifications; null = when smtp is set or a webhook subscription exists",
    )
    public_url: str | None = Field(
        None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The inbox's address as staff reach it, e.g. https://vaktpost.kommun.se; messages link "
        "to PUBLIC_URL/incidents/ID. Required when notifications are sent",
    )
    smtp: SmtpSection | None = Field(None, description="Mail server for email subscriptions; null = no email")
    language: Literal["sv", "en"] = Field("sv", description="Language of the messages")
    digest_hour: int = Field(7, ge=0, le=23, description="Local hour (inbox.timezone) at which digest "
                             "subscriptions get their daily message")
    poll_interval: Duration = Field(5.0, le=300, description="How often the worker looks for new incidents "
                                    "and messages due")
    retry_initial: Duration = Field(30.0, le=DAY, description="Wait after a first failed delivery; it doubles "
                                    "with every failure")
    retry_max: Duration = Field(3600.0, le=DAY, description="Longest wait between two delivery attempts")
    max_age: Duration = Field(2 * DAY, le=30 * DAY, description="A message not delivered this long after it was "
                              "queued is marked failed and no longer tried")
    webhook_timeout: Duration = Field(10.0, le=300, description="Give up on a webhook request after this long")

    @model_validator(mode="after")
    def _needs_url(self) -> NotificationsSection:
        if (self.enabled or self.smtp is not None) and self.public_url is None:
            raise ValueError("public_url is required to send notifications (the messages link to the inbox)")
        return self

    @property
    def link_base(self) -> str | None:
        return None if self.public_url is None else self.public_url.rstrip("/")


class CentralConfig(Strict):
    database: str = Field(
        DEFAULT_DATABASE,
        description="SQLAlchemy URL of the place log: sqlite:///path.db or postgresql://user@host/db "
        "(psycopg 3 is used for postgresql URLs)",
    )
    mqtt: CentralMqtt = Field(default_factory=CentralMqtt)
    places_file: Path | None = Field(None, description="Places registry imported at every start (optional)")
    snapshots: SnapshotsSection = Field(default_factory=SnapshotsSection,
                                        description="What the consumer accepts as an evidence snapshot")
    retention: RetentionSection = Field(default_factory=RetentionSection,
                                        description="How long the place log keeps snapshots, events and "
                                        "dead letters")
    inbox: InboxSection = Field(default_factory=InboxSection, description="The web inbox (docs/inbox.md)")
    incidents: IncidentsSection = Field(default_factory=IncidentsSection,
                                        description="Grouping events into incidents, node offline detection "
                                        "and priorities")
    notifications: NotificationsSection = Field(default_factory=NotificationsSection,
                                                description="Email and webhook messages about new incidents "
                                                "(docs/inbox.md)")

    @field_validator("database")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            make_url(v)
        except ArgumentError:
            raise ValueError(f"not a SQLAlchemy database URL: {v!r}") from None
        return v


def _rebase_sqlite(url: str, base: Path) -> str:
    """`sqlite:///rel.db` → absolute path under `base`; other URLs unchanged."""
    u = make_url(url)
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return url
    if u.database.startswith("file:") or Path(u.database).is_absolute():
        return url
    return u.set(database=str(base / u.database)).render_as_string(hide_password=False)


def _rebase_notifications(n: NotificationsSection, base: Path) -> NotificationsSection:
    if n.smtp is None:
        return n
    smtp = n.smtp.model_copy(update={k: rebase(getattr(n.smtp, k), base) or getattr(n.smtp, k)
                                     for k in ("ca_file", "password_file")})
    return n.model_copy(update={"smtp": smtp})


def resolve_paths(cfg: CentralConfig, base: Path) -> CentralConfig:
    """Make relative paths in `cfg` relative to `base` (the config file's directory)."""
    return cfg.model_copy(
        update={
            "inbox": cfg.inbox.model_copy(update={"secret_key_file": rebase(cfg.inbox.secret_key_file, base)
                                                  or cfg.inbox.secret_key_file}),
            "database": _rebase_sqlite(cfg.database, base),
            "mqtt": cfg.mqtt.rebased(base),
            "places_file": rebase(cfg.places_file, base) or cfg.places_file,
            "notifications": _rebase_notifications(cfg.notifications, base),
        }
    )


def parse_central(data: object, *, source: str = "config") -> CentralConfig:
    if data is None:
        data = {}  # an empty file means all defaults
    return validate(CentralConfig, data, source)


def load_central(path: str | Path) -> CentralConfig:
    path = Path(path)
    return resolve_paths(parse_central(read_yaml(path), source=str(path)), path.resolve().parent)
