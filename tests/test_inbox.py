"""The inbox's foundation without a browser: the real app served by uvicorn on a free port
(tests/inbox_harness.py) and spoken to over HTTP; accounts through the real CLI; the
pure parts (throttle, language, local time, node state) driven with given times."""

from __future__ import annotations

import hashlib
import http.cookiejar
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from inbox_harness import PASSWORD, Inbox, start_inbox, write_central
from sqlalchemy import select

from vaktpost.broker.config import load_central
from vaktpost.broker.inbox.accounts import Account, Accounts, users
from vaktpost.broker.inbox.health import node_state
from vaktpost.broker.inbox.i18n import choose_language, load_translations, local_time
from vaktpost.broker.inbox.server import read_secret_key
from vaktpost.broker.inbox.throttle import LoginThrottle
from vaktpost.broker.store import Store
from vaktpost.contract.config import ConfigError

VENDOR = Path(__file__).resolve().parent.parent / "broker" / "inbox" / "static" / "vendor"
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


class Client:
    """A browser-like HTTP client: keeps cookies, does not follow redirects."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.headers = headers or {}

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, method: str, path: str, form: dict[str, str] | None = None
                ) -> tuple[int, dict[str, list[str]], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            resp = self.opener.open(req)
        except urllib.error.HTTPError as e:
            resp = e
        headers: dict[str, list[str]] = {}
        for k, v in resp.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        return resp.status, headers, resp.read().decode(errors="replace")  # a JPEG too

    def csrf(self, path: str = "/login") -> str:
        _, _, body = self.request("GET", path)
        m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', body)
        assert m, body
        return m.group(1)

    def login(self, name: str, password: str = PASSWORD) -> int:
        status, _, _ = self.request("POST", "/login", {"csrf_token": self.csrf(), "name": name,
                                                       "password": password, "next": "/places"})
        return status


def logged_in(inbox: Inbox, name: str) -> Client:
    """A client logged in as `name` (with the harness's password)."""
    c = Client(inbox.url)
    assert c.login(name) == 303
    return c


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    with start_inbox(tmp_path) as running:
        yield running


# --- over HTTP ---------------------------------------------------------------------


def test_pages_need_a_login_and_the_login_page_is_swedish(inbox: Inbox) -> None:
    c = Client(inbox.url)
    status, headers, _ = c.request("GET", "/places")
    assert status == 303 and headers["location"] == ["/login?next=/places"]
    status, _, body = c.request("GET", "/login")
    assert status == 200 and "Logga in" in body and "Användarnamn" in body and 'lang="sv"' in body
    status, _, body = c.request("GET", "/login?lang=en")
    assert "User name" in body and 'lang="en"' in body
    assert "User name" in c.request("GET", "/login")[2], "the choice is remembered"


def test_login_sets_a_safe_session_cookie_and_logout_ends_the_session(inbox: Inbox) -> None:
    c = Client(inbox.url)
    token = c.csrf()
    status, headers, _ = c.request("POST", "/login", {"csrf_token": token, "name": "anna", "password": PASSWORD,
                                                      "next": "/places"})
    assert status == 303 and headers["location"] == ["/places"]
    cookie = next(h for h in headers["set-cookie"] if h.startswith("vaktpost_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain http
    session = cookie.split(";")[0].split("=", 1)[1]
    assert c.request("GET", "/places")[0] == 200
    assert c.request("POST", "/logout", {"csrf_token": token})[0] == 303
    # The old cookie is dead on the server too, not only deleted in this browser.
    other = Client(inbox.url, headers={"Cookie": f"vaktpost_session={session}"})
    assert other.request("GET", "/places")[0] == 303


def test_a_post_without_the_csrf_token_is_refused(inbox: Inbox) -> None:
    c = Client(inbox.url)
    assert c.login("anna") == 303
    assert c.request("POST", "/logout", {})[0] == 403
    assert c.request("POST", "/logout", {"csrf_token": "0" * 64})[0] == 403
    assert c.request("POST", "/login", {"name": "anna", "password": PASSWORD})[0] == 403
    assert c.request("GET", "/places")[0] == 200, "still logged in: the forged logout did nothing"


def test_ten_wrong_passwords_lock_the_account_and_the_address(tmp_path: Path) -> None:
    # Behind a trusted proxy, so that X-Forwarded-For gives each client its own address.
    with start_inbox(tmp_path, forwarded=True) as running:
        first = Client(running.url, headers={"X-Forwarded-For": "192.0.2.1"})
        for _ in range(10):
            assert first.login("anna", "fel-lösenord") == 401
        assert first.login("anna") == 429, "locked even with the right password"
        assert first.login("bo") == 429, "the address is locked for every account"
        second = Client(running.url, headers={"X-Forwarded-For": "192.0.2.2"})
        assert second.login("anna") == 429, "the account is locked from every address"
        assert second.login("bo") == 303


def test_an_operator_sees_only_places_of_their_districts(inbox: Inbox) -> None:
    anna = Client(inbox.url)
    anna.login("anna")
    _, _, body = anna.request("GET", "/places")
    assert "Norrskolan" in body and "Söderparken" not in body and "Hamnen" not in body
    assert anna.request("GET", "/places/norrskolan")[0] == 200
    assert anna.request("GET", "/places/soderparken")[0] == 404
    assert anna.request("GET", "/places/hamnen")[0] == 404
    assert anna.request("GET", "/places/no-such-place")[0] == 404
    admin = Client(inbox.url)
    admin.login("admin")
    _, _, body = admin.request("GET", "/places")
    assert all(name in body for name in ("Norrskolan", "Söderparken", "Hamnen"))


def test_node_health_is_shown_in_local_time(inbox: Inbox) -> None:
    c = Client(inbox.url)
    c.login("admin")
    _, _, body = c.request("GET", "/places/norrskolan")
    assert "online" in body and "51,5 °C" in body  # Swedish decimal comma
    beat = inbox.store.list_nodes()[0]["heartbeat_at"].astimezone(ZoneInfo("Europe/Stockholm"))
    assert beat.strftime("%H:%M:%S") in body
    _, _, body = c.request("GET", "/places/soderparken")
    assert "offline" in body and "inga livstecken" in body


def test_cookies_are_secure_behind_a_tls_proxy(tmp_path: Path) -> None:
    with start_inbox(tmp_path, forwarded=True) as running:
        c = Client(running.url, headers={"X-Forwarded-Proto": "https"})
        _, headers, _ = c.request("GET", "/login")
        assert all("Secure" in h for h in headers["set-cookie"])


# --- accounts through the CLI ------------------------------------------------------


def vaktpost(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vaktpost.cli", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd)


def test_users_add_list_remove(tmp_path: Path) -> None:
    config = write_central(tmp_path)
    add = vaktpost("users", "add", "anna", "--config", str(config), "--role", "operator", "--district", "Norr",
                   "--district", "Öster", "--password-stdin", stdin="hemligt-ord\n", cwd=tmp_path)
    assert add.returncode == 0, add.stderr
    listed = vaktpost("users", "list", "--config", str(config), cwd=tmp_path)
    assert listed.stdout.split() == ["anna", "operator", "Norr,", "Öster"]
    store = Store(load_central(config).database)
    with store.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    store.close()
    assert stored.startswith("$argon2id$") and "hemligt-ord" not in stored
    again = vaktpost("users", "add", "anna", "--config", str(config), "--role", "viewer", "--district", "Norr",
                     "--password-stdin", stdin="hemligt-ord\n", cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert vaktpost("users", "remove", "anna", "--config", str(config), cwd=tmp_path).returncode == 0
    assert vaktpost("users", "list", "--config", str(config), cwd=tmp_path).stdout.strip() == ""


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--role", "operator"], "hemligt-ord\n", "at least one --district"),
    (["--role", "admin", "--district", "Norr"], "hemligt-ord\n", "give no --district"),
    (["--role", "boss"], "hemligt-ord\n", "role must be one of admin, operator, viewer"),
    (["--role", "admin"], "kort\n", "at least 8 characters"),
])
def test_users_add_mistakes_are_one_line(tmp_path: Path, args: list[str], stdin: str, message: str) -> None:
    config = write_central(tmp_path)
    run = vaktpost("users", "add", "x", "--config", str(config), *args, "--password-stdin", stdin=stdin,
                   cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and message in run.stderr, run.stderr


def test_inbox_without_its_key_file_is_one_line(tmp_path: Path) -> None:
    config = write_central(tmp_path)
    (tmp_path / "inbox.key").unlink()
    run = vaktpost("inbox", "--config", str(config), "--port", "0", cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: inbox.secret_key_file: {tmp_path / 'inbox.key'}: no such file "
        "(create one with: head -c 48 /dev/urandom | base64 > FILE && chmod 600 FILE)"]


def test_secret_key_must_be_set_and_long_enough(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not set"):
        read_secret_key(None)
    (tmp_path / "short.key").write_text("abc\n")
    with pytest.raises(ConfigError, match="has 3 bytes, needs at least 32"):
        read_secret_key(tmp_path / "short.key")


# --- pure parts ------------------------------------------------------------------------


def test_throttle_locks_after_max_failures_and_forgets_after_the_window() -> None:
    t = LoginThrottle(3, timedelta(minutes=15))
    for i in range(2):
        t.failed("anna", "10.0.0.1", T0 + timedelta(seconds=i))
    assert not t.locked("anna", "10.0.0.1", T0 + timedelta(seconds=2))
    t.failed("anna", "10.0.0.1", T0 + timedelta(seconds=2))
    assert t.locked("anna", "10.0.0.9", T0 + timedelta(minutes=1)), "the account, from any address"
    assert t.locked("bo", "10.0.0.1", T0 + timedelta(minutes=1)), "the address, for any account"
    assert not t.locked("bo", "10.0.0.9", T0 + timedelta(minutes=1))
    assert not t.locked("anna", "10.0.0.1", T0 + timedelta(minutes=15, seconds=3)), "unlocked after the window"


def test_language_is_swedish_unless_asked_for() -> None:
    assert choose_language(None, {}) == "sv"
    assert choose_language("en", {}) == "en"
    assert choose_language(None, {"vaktpost_lang": "en"}) == "en"
    assert choose_language("sv", {"vaktpost_lang": "en"}) == "sv"
    assert choose_language("de", {}) == "sv"
    assert load_translations("sv").gettext("Log in") == "Logga in"


def test_times_are_shown_in_stockholm_time() -> None:
    zone = ZoneInfo("Europe/Stockholm")
    assert "13:00:00" in local_time(T0, zone, "sv")  # winter: UTC+1
    assert "14:00:00" in local_time(datetime(2025, 7, 1, 12, 0, tzinfo=UTC), zone, "sv")  # summer: UTC+2
    assert local_time(None, zone, "sv") == "—"


def test_node_state() -> None:
    after = timedelta(seconds=90)
    assert node_state(None, T0, after) == ("unknown", "never")
    assert node_state({"state": "online", "heartbeat_at": T0 - timedelta(seconds=30)}, T0, after)[0] == "online"
    assert node_state({"state": "online", "heartbeat_at": T0 - timedelta(minutes=5)}, T0, after) == \
        ("offline", "stale")
    assert node_state({"state": "offline", "heartbeat_at": T0}, T0, after) == ("offline", "status")


def test_vendored_htmx_matches_its_recorded_checksum() -> None:
    manifest = (VENDOR / "VENDORED.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| ([\w.-]+) \| ([\d.]+) \| `([0-9a-f]{64})` \|", manifest, re.MULTILINE)
    assert rows, "no files listed in VENDORED.md"
    for file, _package, _version, sha256 in rows:
        assert hashlib.sha256((VENDOR / file).read_bytes()).hexdigest() == sha256, file


def test_every_text_has_a_swedish_translation() -> None:
    folder = VENDOR.parent.parent
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "tr": (2,)}
    # The notifications, the incident labels, the situational picture, the measures and the camera
    # register share the inbox's catalogue.
    used = {m[2] for source in (folder, folder.parent / "notify", folder.parent / "incidents",
                                folder.parent / "lagesbild", folder.parent / "measures", folder.parent / "register")
            for m in extract_from_dir(str(source), method_map, options, keywords=keywords)}
    with (folder / "locale" / "sv" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    assert used and used <= translated, f"untranslated: {sorted(used - translated)}"


def test_accounts_and_sessions_on_both_databases(place_store: Store) -> None:
    accounts = Accounts(place_store.engine)
    accounts.create_tables()
    accounts.add("anna", "operator", ["Norr", "Öster", "Norr"], "hemligt-ord", now=T0)
    assert accounts.verify_password("anna", "fel-ord") is None
    assert accounts.verify_password("nobody", "hemligt-ord") is None
    anna = accounts.verify_password("anna", "hemligt-ord")
    assert anna == Account("anna", "operator", frozenset({"Norr", "Öster"}))
    token = accounts.start_session("anna", now=T0, lifetime=timedelta(hours=12))
    assert accounts.session_account(token, now=T0 + timedelta(hours=11)) == anna
    assert accounts.session_account(token, now=T0 + timedelta(hours=12)) is None, "expired"
    accounts.remove("anna")
    assert accounts.session_account(token, now=T0) is None and accounts.list() == []
