"""The base every config file of the project is built on (node, central, places).

One error type and one error format: `validate` turns pydantic's errors into one
line per problem naming the key (``cameras[0].zones[1].polygon: needs at least 3
points``). Also the value types both sides share: identifiers, time zones,
durations, and how to reach the broker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

# Node, camera and place ids: also MQTT topic levels and usernames, so no wildcards or slashes.
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
# Broker accounts of the central side: a node may not take one of these as its id.
RESERVED_ACCOUNTS = frozenset({"central", "inbox", "observer"})


class ConfigError(ValueError):
    """A config file that cannot be used; the message names key and problem."""


class Strict(BaseModel):
    """A config section: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r}") from None
    return v


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(v: object) -> object:
    """Seconds, or a string such as 90s, 30m, 12h, 7d (other values are left to pydantic)."""
    if isinstance(v, str):
        text = v.strip()
        if text[-1:] in _UNITS and text[:-1].replace(".", "", 1).isdigit():
            return float(text[:-1]) * _UNITS[text[-1]]
        raise ValueError(f"expected seconds or a duration such as 30m, 12h, 7d, got {v!r}")
    return v


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


def rebase(path: Path | None, base: Path) -> Path | None:
    """`path` under `base` when it is relative; None when there is no path or it is absolute."""
    return None if path is None or path.is_absolute() else base / path


class TlsSection(Strict):
    ca_file: Path = Field(description="CA certificate that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="Client certificate (optional)")
    key_file: Path | None = Field(None, description="Client key (optional)")


class BrokerConnection(Strict):
    """What node and central consumer both need to reach the broker."""

    host: str = Field("localhost", description="Broker host")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS)")
    password: str | None = Field(None, description="Password; prefer password_file")
    password_file: Path | None = Field(None, description="File whose first line is the password")
    tls: TlsSection | None = Field(None, description="TLS files; omit for plain TCP on a trusted LAN")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds")

    @model_validator(mode="after")
    def _one_password(self) -> BrokerConnection:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    def rebased(self, base: Path) -> Self:
        """This connection with its relative file paths (password, TLS) taken from `base`,
        the config file's directory, so a config reads the same from any working directory."""
        updates: dict[str, object] = {}
        if p := rebase(self.password_file, base):
            updates["password_file"] = p
        if self.tls is not None:
            tls = {k: rebase(getattr(self.tls, k), base) for k in ("ca_file", "cert_file", "key_file")}
            updates["tls"] = self.tls.model_copy(update={k: v for k, v in tls.items() if v is not None})
        return self.model_copy(update=updates)

    def resolved_password(self) -> str | None:
        if self.password_file is not None:
            try:
                return self.password_file.read_text().splitlines()[0].strip()
            except (OSError, IndexError) as e:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file}: {e}") from None
        return self.password


def format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part in ("list[list[float]]", "ArmedSchedule") or part.startswith(("list[", "function-")):
                continue  # union branch names say nothing to a user
            else:
                loc += ("." if loc else "") + str(part)
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '(top)'}: {msg}")
    return "\n".join(dict.fromkeys(lines))


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: object, source: str, shape: str = "a mapping at the top level") -> M:
    """`data` as `model`, or one ConfigError naming `source` with a line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected {shape}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}:\n{format_errors(e)}") from None


def read_yaml(path: str | Path) -> object:
    """The YAML document in `path`; ConfigError naming the file when it can't be read."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
