"""Mosquitto configuration for a Vaktpost site: config file, password file, ACL, credentials.

`init_broker(DIR, nodes, consumers=..., observers=...)` writes a directory that runs
as is with ``mosquitto -c DIR/mosquitto.conf``:

- ``mosquitto.conf``: one listener, no anonymous access, the username as client id
  (``use_username_as_clientid``), persistence under ``DIR/data/``
- ``passwd``: hashed passwords (made by ``mosquitto_passwd``), one account per process:
  each node (username = node id), each central consumer, the inbox, each observer
- ``acl``: one block of explicit grants per account (docs/mqtt.md, "The ACL")
- ``credentials.yaml`` (mode 0600): the clear-text passwords, for configuring nodes
  and the central processes

Running init again on the same directory keeps every existing account and password
and adds the names not yet known, so it can be used to enrol new nodes, consumers and
observers. Accounts are never removed by init: delete them from ``credentials.yaml``
and re-run init.
A running Mosquitto re-reads the password file and ACL on SIGHUP.

When run as root, Mosquitto drops privileges to the ``mosquitto`` user (``nobody``
if that user is missing) *before* it reads the password file and ACL and writes its
persistence file. init therefore gives that user's group read access to the
directory, ``passwd`` and ``acl``, gives the user ``data/``, and refuses a directory
that user cannot reach. ``credentials.yaml`` stays readable by root only.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vaktpost.broker.config import SNAPSHOT_MAX_BYTES_CEILING
from vaktpost.contract.config import RESERVED_ACCOUNTS
from vaktpost.contract.topics import ROOT

CONF_FILE = "mosquitto.conf"
PASSWD_FILE = "passwd"
ACL_FILE = "acl"
CREDENTIALS_FILE = "credentials.yaml"
DATA_DIR = "data"
DEFAULT_CONSUMER = "central"
INBOX_ACCOUNT = "inbox"

# Same rule as edge.event.Ident: node ids are MQTT usernames and topic levels, so
# they must not contain '/', '+', '#' or anything else with meaning in a topic.
IDENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Where Debian puts the broker; not on a normal user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

# Retained for a consumer whose persistent session is offline. The default (1000)
# would drop events after a few minutes of consumer downtime on a busy site.
MAX_QUEUED_MESSAGES = 100_000
# ... and in bytes: above 100,000 events (about 1 KB each), so for events the count
# binds; snapshots fill it first. Nodes resend what the consumer never acked, so a
# full queue delays, never loses (docs/mqtt.md, "Limits").
MAX_QUEUED_BYTES = 512 * 1024 * 1024
# Largest MQTT packet accepted, announced to clients in CONNACK (Maximum Packet Size):
# a snapshot of the largest size the consumer can be set to accept, plus topic and
# header. The node's largest snapshot (4096 px wide, quality 100) is smaller. Anything
# bigger is refused before the broker buffers it, and its sender disconnected.
MAX_PACKET_SIZE = SNAPSHOT_MAX_BYTES_CEILING + 64 * 1024


class BrokerSetupError(ValueError):
    """The broker directory cannot be created or used; the message says why and what to do."""


class Account(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    username: str
    password: str


class Credentials(BaseModel):
    """Contents of ``credentials.yaml``: every MQTT account, one per process."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(description="Address clients on this host use to reach the broker")
    port: int = Field(ge=1, le=65535)
    consumers: dict[str, Account] = Field(min_length=1, description="Central consumers, one account per process")
    inbox: Account = Field(default_factory=lambda: _new_account(INBOX_ACCOUNT), description="The inbox (web app)")
    observers: dict[str, Account] = Field(default_factory=dict, description="Read-only integrator accounts")
    nodes: dict[str, Account] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _one_consumer_before(cls, data: Any) -> Any:
        # credentials.yaml of before: a single `consumer`; its account and password are kept.
        if isinstance(data, dict) and "consumer" in data and "consumers" not in data:
            data = dict(data)
            old = data.pop("consumer")
            data["consumers"] = {old["username"]: old} if isinstance(old, dict) and "username" in old else old
        return data

    @property
    def consumer(self) -> Account:
        """The first consumer account (the only one on a site with one consumer)."""
        return next(iter(self.consumers.values()))

    def all_accounts(self) -> list[Account]:
        return [*self.consumers.values(), self.inbox, *self.observers.values(), *self.nodes.values()]

    def account(self, username: str) -> Account:
        """The account named `username` (a node id, a consumer, an observer or the inbox)."""
        for a in self.all_accounts():
            if a.username == username:
                return a
        known = ", ".join(a.username for a in self.all_accounts())
        raise KeyError(f"no broker account {username!r}; known: {known}")


class TlsFiles(BaseModel):
    """Server-side TLS for the listener (``tls=`` of `init_broker`)."""

    model_config = ConfigDict(extra="forbid")
    certfile: Path = Field(description="Broker certificate (PEM)")
    keyfile: Path = Field(description="Broker private key (PEM)")
    cafile: Path | None = Field(None, description="CA that signs client certificates (with require_certificate)")
    require_certificate: bool = Field(False, description="Also demand a client certificate")


# --- small pure helpers -------------------------------------------------------------


def validate_ident(value: str, what: str = "node id") -> str:
    if not isinstance(value, str) or not IDENT_RE.fullmatch(value):
        raise BrokerSetupError(
            f"invalid {what} {value!r}: use 1-63 characters a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def client_host(bind_address: str) -> str:
    """Address a local client uses for a listener bound to `bind_address`."""
    return "127.0.0.1" if bind_address in ("", "0.0.0.0", "::", "*") else bind_address


def _grants(user: str, lines: list[str]) -> str:
    return "\n".join([f"user {user}", *lines]) + "\n"


def render_acl(creds: Credentials) -> str:
    """ACL text: one block per account, every grant spelled out (no ``pattern``: a
    pattern would apply to every account, so an observer or a consumer named X could
    publish as a node X; no ``#``), so a node can neither write acks nor read anything
    but its own acks, and observers and the inbox write nothing."""
    nodes = ROOT + "/+"
    header = """\
# Vaktpost broker ACL, generated by `vaktpost broker init`; edits are overwritten.
# One account per process; its username is its MQTT client id (use_username_as_clientid),
# so no account can take over another's session. Anonymous clients are refused.
"""
    blocks = [header]
    for name in creds.consumers:
        blocks.append(f"# Consumer {name}: reads every node's events, snapshots, status, heartbeat and config; "
                      "acks them.\n"
                      + _grants(name, [f"topic read {nodes}/events/+", f"topic read {nodes}/snapshots/+",
                                       f"topic read {nodes}/status", f"topic read {nodes}/heartbeat",
                                       f"topic read {nodes}/config", f"topic write {nodes}/acks"]))
    blocks.append("# The inbox (web app): reads status, heartbeats and config; writes nothing yet.\n"
                  + _grants(creds.inbox.username, [f"topic read {nodes}/status", f"topic read {nodes}/heartbeat",
                                                   f"topic read {nodes}/config"]))
    for name in creds.observers:
        blocks.append(f"# Observer {name} (read-only, for integrators): events, status, heartbeats and config; "
                      "no snapshots, no acks, no writes.\n"
                      + _grants(name, [f"topic read {nodes}/events/+", f"topic read {nodes}/status",
                                       f"topic read {nodes}/heartbeat", f"topic read {nodes}/config"]))
    for node in creds.nodes:
        own = f"{ROOT}/{node}"
        blocks.append(f"# Node {node}: its own events, snapshots, status (also its Last Will), heartbeat and "
                      "config; reads only its own acks.\n"
                      + _grants(node, [f"topic write {own}/events/+", f"topic write {own}/snapshots/+",
                                       f"topic write {own}/status", f"topic write {own}/heartbeat",
                                       f"topic write {own}/config", f"topic read {own}/acks"]))
    return "\n".join(blocks)


def render_conf(
    directory: Path,
    port: int,
    bind_address: str = "0.0.0.0",
    tls: TlsFiles | None = None,
    run_as: str | None = None,
) -> str:
    """mosquitto.conf text; every path absolute so the broker can start from any cwd."""
    d = directory.resolve()
    lines = [
        "# Vaktpost broker, generated by `vaktpost broker init`; edits are overwritten.",
        f"# Run: mosquitto -c {d / CONF_FILE}",
        "",
        "# One set of security settings for all listeners.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {d / PASSWD_FILE}",
        f"acl_file {d / ACL_FILE}",
    ]
    if run_as:
        lines.append(f"user {run_as}")
    lines += [
        "",
        f"listener {port} {bind_address}",
        "# The client id is the username (every listener needs this line): one account's",
        "# credentials cannot take over another's session, whatever client id they give.",
        "use_username_as_clientid true",
    ]
    if tls is not None:
        lines += [f"certfile {tls.certfile.resolve()}", f"keyfile {tls.keyfile.resolve()}"]
        if tls.cafile is not None:
            lines.append(f"cafile {tls.cafile.resolve()}")
        if tls.require_certificate:
            lines.append("require_certificate true")
    lines += [
        "",
        "# Keep queued QoS 1 messages and persistent sessions (consumers', nodes') across restarts.",
        "persistence true",
        f"persistence_location {d / DATA_DIR}/",
        "autosave_interval 10",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        "# Larger packets are refused and their sender disconnected; clients learn the limit from CONNACK.",
        f"max_packet_size {MAX_PACKET_SIZE}",
        "# Sessions of clients that never return are dropped after a month.",
        "persistent_client_expiration 30d",
        "# Events are small; send them at once.",
        "set_tcp_nodelay true",
        "",
        "# stderr ends up in the journal under systemd.",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "",
    ]
    return "\n".join(lines)


def _new_account(name: str) -> Account:
    return Account(username=name, password=secrets.token_urlsafe(24))


def merge_credentials(
    existing: Credentials | None,
    nodes: list[str],
    host: str,
    port: int,
    consumers: list[str] | None = None,
    observers: list[str] | None = None,
) -> Credentials:
    """Keep every existing account and password; create accounts for new names.
    `consumers` None: keep the existing consumers, or make `central` on a new site.
    A username belongs to one role only (node, consumer, observer, inbox)."""
    consumers = consumers or ([] if existing else [DEFAULT_CONSUMER])

    def merged(old: dict[str, Account], names: list[str]) -> dict[str, Account]:
        out = dict(old)
        for name in names:
            out.setdefault(name, _new_account(name))
        return out

    roles = {
        "consumer": merged(existing.consumers if existing else {}, consumers),
        "observer": merged(existing.observers if existing else {}, observers or []),
        "node": merged(existing.nodes if existing else {}, nodes),
        "inbox": {INBOX_ACCOUNT: existing.inbox if existing else _new_account(INBOX_ACCOUNT)},
    }
    seen: dict[str, str] = {}
    for role, accounts in roles.items():
        for name in accounts:
            if name in seen:
                raise BrokerSetupError(f"{role} name {name!r} is already taken (by the {seen[name]} account "
                                       "of that name); every account needs a username of its own")
            seen[name] = role
    return Credentials(host=host, port=port, consumers=roles["consumer"], inbox=roles["inbox"][INBOX_ACCOUNT],
                       observers=dict(sorted(roles["observer"].items())),
                       nodes=dict(sorted(roles["node"].items())))


# --- tools and files --------------------------------------------------------------


def find_tool(name: str) -> str:
    """Absolute path of a Mosquitto program, also looking in sbin directories."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_EXTRA_BIN_DIRS))
    if found is None:
        raise BrokerSetupError(f"{name} not found: install the mosquitto package (apt-get install mosquitto)")
    return found


def mosquitto_binary() -> str:
    return find_tool("mosquitto")


def mosquitto_command(directory: Path | str) -> list[str]:
    """The command that runs the broker configured in `directory`."""
    return [mosquitto_binary(), "-c", str(Path(directory).resolve() / CONF_FILE)]


def _write_file(path: Path, data: str, mode: int) -> None:
    """Write atomically; the file has `mode` from its creation, so secrets never sit world-readable."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_passwd(path: Path, accounts: list[Account]) -> None:
    """Hash all passwords with one `mosquitto_passwd -U` run over a 0600 temporary file."""
    tool = find_tool("mosquitto_passwd")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{a.username}:{a.password}\n" for a in accounts)
        result = subprocess.run([tool, "-U", tmp], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise BrokerSetupError(f"mosquitto_passwd failed: {(result.stderr or result.stdout).strip()}")
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_credentials(directory: Path | str) -> Credentials:
    path = Path(directory) / CREDENTIALS_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BrokerSetupError(f"{path} not found: run `vaktpost broker init {directory}` first") from None
    except (OSError, yaml.YAMLError) as e:
        raise BrokerSetupError(f"{path}: cannot read: {e}") from None
    try:
        return Credentials.model_validate(data)
    except ValidationError as e:
        raise BrokerSetupError(f"{path}: not a Vaktpost credentials file: {e}") from None


# --- privileges -------------------------------------------------------------------


def _broker_user(run_as: str | None) -> pwd.struct_passwd | None:
    """The account Mosquitto will run as, if started by us as root; None when not root
    (Mosquitto then keeps our identity and can read what we write)."""
    if os.geteuid() != 0:
        return None
    name = run_as or "mosquitto"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if run_as:
            raise BrokerSetupError(f"run_as user {run_as!r} does not exist") from None
    try:
        return pwd.getpwnam("nobody")  # Mosquitto's own fallback when "mosquitto" is missing
    except KeyError:
        raise BrokerSetupError("neither user 'mosquitto' nor 'nobody' exists; create one or pass run_as") from None


def _allowed(st: os.stat_result, user: pwd.struct_passwd, gids: set[int], what: str) -> bool:
    """Classic permission bits for `user`; `what` is "x" (enter a directory) or "r"."""
    if user.pw_uid == 0:
        return True
    shift = 0 if what == "x" else 2
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & (stat.S_IXUSR << shift))
    if st.st_gid in gids:
        return bool(st.st_mode & (stat.S_IXGRP << shift))
    return bool(st.st_mode & (stat.S_IXOTH << shift))


def _unreachable_parent(path: Path, user: pwd.struct_passwd) -> Path | None:
    gids = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for parent in reversed(path.resolve().parents):
        if not _allowed(parent.stat(), user, gids, "x"):
            return parent
    return None


def _check_reachable(directory: Path, user: pwd.struct_passwd) -> None:
    """Mosquitto opens files after dropping privileges; a parent like /root (0700)
    would make it fail at start with a bare 'Unable to open pwfile'. Say so now."""
    # The directory itself is made enterable by _apply_ownership; only its parents matter.
    parent = _unreachable_parent(directory, user)
    if parent is not None:
        raise BrokerSetupError(
            f"Mosquitto runs as user {user.pw_name!r}, which cannot enter {parent} "
            f"(on the way to {directory}). Put the broker directory elsewhere "
            f"(e.g. /etc/vaktpost/broker), allow it with `chmod o+x {parent}`, "
            "or pass run_as with a user that can."
        )


def _check_tls_readable(tls: TlsFiles, user: pwd.struct_passwd) -> None:
    """Mosquitto 2.0 also loads certificates and keys after dropping privileges."""
    gids = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for f in (tls.certfile, tls.keyfile, tls.cafile):
        if f is None:
            continue
        parent = _unreachable_parent(f, user)
        if parent is not None or not _allowed(f.stat(), user, gids, "r"):
            group = grp.getgrgid(user.pw_gid).gr_name
            raise BrokerSetupError(
                f"Mosquitto runs as user {user.pw_name!r}, which cannot read TLS file {f}"
                + (f" (cannot enter {parent})" if parent else "")
                + f". Fix with e.g. `chgrp {group} {f} && chmod 640 {f}`."
            )


def _apply_ownership(directory: Path, user: pwd.struct_passwd | None) -> None:
    data = directory / DATA_DIR
    os.chmod(directory, 0o750)
    os.chmod(data, 0o700)
    if user is None or user.pw_uid == 0:
        return
    # Root keeps ownership of config and secrets; the broker's group may read them.
    os.chown(directory, 0, user.pw_gid)
    os.chown(directory / PASSWD_FILE, 0, user.pw_gid)
    os.chown(directory / ACL_FILE, 0, user.pw_gid)
    # The persistence file is written by the broker itself.
    os.chown(data, user.pw_uid, user.pw_gid)
    for f in data.iterdir():
        os.chown(f, user.pw_uid, user.pw_gid)


# --- entry point ------------------------------------------------------------------


def init_broker(
    directory: Path | str,
    nodes: list[str],
    port: int = 1883,
    *,
    bind_address: str = "0.0.0.0",
    consumers: list[str] | None = None,
    observers: list[str] | None = None,
    tls: TlsFiles | dict[str, Any] | None = None,
    run_as: str | None = None,
) -> Credentials:
    """Create or update the broker directory; return all accounts.

    `nodes`, `consumers` and `observers` are added to the accounts already in
    ``DIR/credentials.yaml`` (passwords kept); the inbox account is made once.
    Without `consumers` a new directory gets one consumer, ``central``.
    `tls` (a `TlsFiles` or dict with certfile, keyfile, optional cafile and
    require_certificate) turns on TLS for the listener. `run_as` writes a
    ``user`` line: the account Mosquitto switches to when started as root
    (default: Mosquitto's own choice, ``mosquitto``).
    """
    directory = Path(directory)
    for node in nodes:
        validate_ident(node)
        if node in RESERVED_ACCOUNTS:
            raise BrokerSetupError(f"node id {node!r} is reserved for a central account; pick another node id")
    for name in consumers or []:
        validate_ident(name, "consumer name")
    for name in observers or []:
        validate_ident(name, "observer name")
        if name in RESERVED_ACCOUNTS:
            raise BrokerSetupError(f"observer name {name!r} is reserved for a central account; pick another name")
    if INBOX_ACCOUNT in (consumers or []):
        raise BrokerSetupError(f"consumer name {INBOX_ACCOUNT!r} is the inbox's account; pick another name")
    if not (isinstance(port, int) and 1 <= port <= 65535):
        raise BrokerSetupError(f"invalid port {port!r}: must be 1..65535")
    if not bind_address or any(c.isspace() for c in bind_address):
        raise BrokerSetupError(f"invalid bind address {bind_address!r}")
    try:
        tls_files = TlsFiles.model_validate(tls) if isinstance(tls, dict) else tls
    except ValidationError as e:
        raise BrokerSetupError(f"invalid tls settings: {e}") from None
    if tls_files is not None:
        for f in (tls_files.certfile, tls_files.keyfile, tls_files.cafile):
            if f is not None and not f.is_file():
                raise BrokerSetupError(f"TLS file {f} does not exist")
    find_tool("mosquitto_passwd")  # fail before writing anything
    user = _broker_user(run_as)

    directory.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _check_reachable(directory, user)
        if tls_files is not None:
            _check_tls_readable(tls_files, user)
    (directory / DATA_DIR).mkdir(exist_ok=True)
    existing = load_credentials(directory) if (directory / CREDENTIALS_FILE).exists() else None
    creds = merge_credentials(existing, list(dict.fromkeys(nodes)), client_host(bind_address), port,
                              consumers=list(dict.fromkeys(consumers or [])),
                              observers=list(dict.fromkeys(observers or [])))

    _write_passwd(directory / PASSWD_FILE, creds.all_accounts())
    _write_file(directory / ACL_FILE, render_acl(creds), 0o640)
    _write_file(directory / CONF_FILE, render_conf(directory, port, bind_address, tls_files, run_as), 0o644)
    _write_file(
        directory / CREDENTIALS_FILE,
        "# Vaktpost broker accounts: keep secret. Re-running init keeps these passwords.\n"
        + yaml.safe_dump(creds.model_dump(mode="json"), sort_keys=False),
        0o600,
    )
    _apply_ownership(directory, user)
    return creds
