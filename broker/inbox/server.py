"""Serving the inbox: the secret key, the app over the configured database, uvicorn."""

from __future__ import annotations

import socket
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from vaktpost.broker.config import CentralConfig
from vaktpost.broker.inbox.app import create_app
from vaktpost.broker.store import Store
from vaktpost.contract.config import ConfigError

MIN_SECRET_BYTES = 32
KEY_HINT = "create one with: head -c 48 /dev/urandom | base64 > FILE && chmod 600 FILE"


def read_secret_key(path: Path | None) -> bytes:
    """The inbox's secret key; ConfigError (one line) when it is not set, missing or short."""
    if path is None:
        raise ConfigError(f"inbox.secret_key_file is not set in the central config ({KEY_HINT})")
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise ConfigError(f"inbox.secret_key_file: {path}: no such file ({KEY_HINT})") from None
    except OSError as e:
        raise ConfigError(f"inbox.secret_key_file: {path}: {e.strerror}") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"inbox.secret_key_file: {path}: has {len(key)} bytes, needs at least "
                          f"{MIN_SECRET_BYTES} ({KEY_HINT})")
    return key


def build_app(cfg: CentralConfig, store: Store) -> FastAPI:
    app = create_app(store, cfg.inbox, read_secret_key(cfg.inbox.secret_key_file))
    app.state.retention = cfg.retention  # the camera register shows the central retention
    return app


def uvicorn_config(app: FastAPI, cfg: CentralConfig, *, log_level: str = "info") -> uvicorn.Config:
    # Proxy headers only when configured, and only from the listed proxies: otherwise any
    # client could claim https or another address (and dodge the login throttle).
    return uvicorn.Config(app, log_level=log_level, proxy_headers=cfg.inbox.forwarded,
                          forwarded_allow_ips=cfg.inbox.forwarded_allow_ips, server_header=False)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one, see getsockname())."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def listen_url(sock: socket.socket) -> str:
    """The inbox's address on the bound `sock`, as a browser takes it."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(cfg: CentralConfig, host: str | None = None, port: int | None = None) -> None:
    """Run the inbox until Ctrl-C (uvicorn handles the signals)."""
    store = Store(cfg.database)
    try:
        app = build_app(cfg, store)
        sock = bind(host or cfg.inbox.host, cfg.inbox.port if port is None else port)
        print(f"inbox: {listen_url(sock)}", flush=True)
        uvicorn.Server(uvicorn_config(app, cfg)).run(sockets=[sock])
    finally:
        store.close()
