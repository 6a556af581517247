"""Shared fixtures: a real Mosquitto (`broker`, `broker_factory`), PostgreSQL (`pg_url`,
`pg_url_fresh`) and a place log on both databases (`place_store`).

Tests using `broker*` are marked `mqtt`, tests using `pg_url*` are marked `postgres`
automatically, so ``-m "not mqtt"`` and ``-m "not postgres"`` work without decorators.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mqtt_harness import Broker, PayloadAuditor, start_broker

if TYPE_CHECKING:
    from vaktpost.broker.store import Store

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_MQTT_FIXTURES = {"broker", "broker_factory"}
_PG_FIXTURES = {"pg_url", "pg_url_fresh", "pg_server_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _MQTT_FIXTURES:
            item.add_marker(pytest.mark.mqtt)
        if names & _PG_FIXTURES:
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Remember the outcome so fixtures can print the broker log when a test failed.
    report = yield
    setattr(item, f"_vaktpost_rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "_vaktpost_rep_call", None)
    return rep is None or rep.failed


# --- MQTT -------------------------------------------------------------------------


def _require_mosquitto() -> None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")


@pytest.fixture
def broker_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Broker]]:
    """`make(nodes=["node-a", "node-b"], *, consumers=["central"], observers=[], name="broker", start=True)
    -> Broker` (accounts as in `mqtt_harness.start_broker`).
    Each call gets its own directory under tmp_path and its own free port; all are
    stopped at teardown (their logs printed if the test failed)."""
    _require_mosquitto()
    made: list[Broker] = []
    auditors: list[PayloadAuditor] = []

    def make(nodes: list[str] | None = None, **kwargs) -> Broker:
        kwargs.setdefault("name", f"broker{len(made) or ''}")
        b = start_broker(tmp_path, nodes, **kwargs)
        made.append(b)
        if not kwargs.get("tls"):
            # Every payload of every test broker is checked for image data (docs/privacy.md).
            auditors.append(PayloadAuditor(b))
        return b

    yield make
    violations = [v for a in auditors for v in a.close()]
    for b in made:
        try:
            b.close()
        finally:
            if _failed(request):
                print(f"\n--- mosquitto log ({b.dir}) ---\n{b.log_text()}")
    assert not violations, f"image data outside /snapshots/: {violations}"


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    """A started Mosquitto with accounts node-a, node-b, consumer `central`, the inbox and
    the observers `auditor` (the PayloadAuditor's) and `watcher`."""
    return broker_factory()


# --- PostgreSQL -------------------------------------------------------------------


def _admin_engine(url: str):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    return sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=False,
                                    connect_args={"connect_timeout": 3})


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """SQLAlchemy URL of a reachable PostgreSQL database with CREATE DATABASE rights:
    VAKTPOST_TEST_PG_URL, else the local default; skips when none answers."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    url = os.environ.get("VAKTPOST_TEST_PG_URL", DEFAULT_PG_URL)
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as e:  # any driver/connection error means: no PostgreSQL here
        if os.environ.get("VAKTPOST_TEST_PG_URL"):
            pytest.fail(f"VAKTPOST_TEST_PG_URL is set but unusable: {e}")
        pytest.skip(f"PostgreSQL not reachable at {DEFAULT_PG_URL} (set VAKTPOST_TEST_PG_URL): {e}")
    finally:
        engine.dispose()
    return url


def _create_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """Create a uniquely named database; return its URL and a function dropping it."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"vaktpost_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    engine = _admin_engine(server_url)
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        try:
            with engine.connect() as conn:
                # FORCE (PostgreSQL 13+) ends sessions a test left open.
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()

    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the whole test session (dropped at the end).
    Tests sharing it must tolerate each other's rows; use `pg_url_fresh` otherwise."""
    url, drop = _create_database(pg_server_url)
    yield url
    drop()


@pytest.fixture
def pg_url_fresh(pg_server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped afterwards)."""
    url, drop = _create_database(pg_server_url)
    yield url
    drop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def place_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty place log (vaktpost.broker.store.Store), once on SQLite and once on PostgreSQL
    (a schema of its own inside the session's `pg_url` database)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from vaktpost.broker.store import Store, normalise_url

    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'central.db'}")
        s.create_all()
        yield s
        s.close()
        return
    base = normalise_url(request.getfixturevalue("pg_url"))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    s = Store(url.render_as_string(hide_password=False))
    s.create_all()
    try:
        yield s
    finally:
        s.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
