"""`vaktpost config example`: a commented example node config.

The comments are the fields' own descriptions from edge/config/__init__.py, so each option
is documented once; this module only supplies example values.
"""

from __future__ import annotations

import types
import typing

import yaml
from pydantic import BaseModel

from vaktpost.edge.config import NodeConfig

EXAMPLE: dict = {
    "node": {"id": "ekbacken-1", "timezone": "Europe/Stockholm"},
    "mqtt": {
        "host": "central.example.org", "port": 8883, "password_file": "/etc/vaktpost/mqtt-password",
        "tls": {"ca_file": "/etc/vaktpost/ca.crt"}, "keepalive": 30, "heartbeat_seconds": 30,
    },
    "spool": {"path": "/var/lib/vaktpost/outbox.db", "max_events": 100000, "when_full": "drop_oldest"},
    "cameras": [{
        "id": "yard",
        "source": "rtsp://user:pass@192.168.1.20/stream1",
        "fps": 5,
        "privacy_masks": [[[0.0, 0.0], [0.3, 0.0], [0.3, 0.25], [0.0, 0.25]]],
        "motion_masks": [[[0.7, 0.0], [1.0, 0.0], [1.0, 0.2], [0.7, 0.2]]],
        "zones": [{
            "name": "schoolyard",
            "polygon": [[0.1, 0.4], [0.9, 0.4], [0.9, 1.0], [0.1, 1.0]],
            "armed": {
                "ranges": [
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "18:00", "to": "07:00"},
                    {"days": ["sat", "sun"], "from": "00:00", "to": "24:00"},
                ],
                "exceptions": ["2026-12-12"],
                "armed_dates": ["2026-12-24"],
            },
        }],
        "motion": {"width": 320, "threshold": 25, "min_duration": 1.0, "merge_gap": 3.0},
        "reconnect_max_seconds": 30,
        "lost_after_seconds": 10,
    }],
}


def _model_of(annotation) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `list[Zone] | ArmedSchedule`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, (type, types.GenericAlias)) or typing.get_args(arg):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _model_for(annotation, value) -> type[BaseModel] | None:
    if isinstance(value, dict):
        # Prefer the model whose fields match the example's keys (unions).
        candidates = [a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        for c in candidates:
            names = {f.alias or n for n, f in c.model_fields.items()}
            if set(value) <= names:
                return c
    return _model_of(annotation)


def _flatten(annotation):
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _flatten(arg)


def _dump(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=200).strip().removesuffix("...").strip()


def _value_of(field, data: dict, key: str):
    """The example's value for `key`, else the field's default (its factory's output)."""
    if key in data:
        return data[key]
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    return value.model_dump(by_alias=True, mode="json") if isinstance(value, BaseModel) else value


def _emit(model: type[BaseModel], data: dict, indent: int, lines: list[str], first_prefix: str = "") -> None:
    """Every field of `model` with its description: the example's value where it has one,
    the default otherwise, so the example lists every option there is."""
    pad = " " * indent
    unknown = set(data) - {(f.alias or n) for n, f in model.model_fields.items()}
    if unknown:
        raise KeyError(f"example keys not in {model.__name__}: {sorted(unknown)}")
    first = True
    for name, f in model.model_fields.items():
        key = f.alias or name
        if key not in data and f.is_required():
            continue
        value = _value_of(f, data, key)
        prefix = first_prefix if first and first_prefix else pad
        first = False
        if f.description:
            lines.append(f"{pad}# {f.description}")
        sub = _model_for(f.annotation, value[0] if isinstance(value, list) and value else value)
        if isinstance(value, dict) and value and sub is not None:
            lines.append(f"{prefix}{key}:")
            _emit(sub, value, indent + 2, lines)
        elif isinstance(value, list) and value and isinstance(value[0], dict) and sub is not None:
            lines.append(f"{prefix}{key}:")
            for item in value:
                _emit(sub, item, indent + 4, lines, first_prefix=" " * (indent + 2) + "- ")
        else:
            lines.append(f"{prefix}{key}: {_dump(value)}")


def example_yaml() -> str:
    lines = ["# Vaktpost node configuration (check it with: vaktpost config check FILE)",
             "# Polygons are [[x, y], ...] in normalised image coordinates, 0..1."]
    _emit(NodeConfig, EXAMPLE, 0, lines)
    return "\n".join(lines) + "\n"
