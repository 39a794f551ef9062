"""Fixtures: a real database built by the real migrations, cleaned after each test.

``TEST_DATABASE_URL`` picks the database: unset, a SQLite file in a temporary
folder; ``postgresql://...``, a fresh database created on that server for this
run and dropped afterwards (so that parallel runs never meet).
Under ``CI=true`` a service the suite was told to use but cannot reach is an
error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

os.environ.setdefault("CONSENT_ENV", "testing")

from app import create_app
from extensions import db

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="run only the tests that reach the suite's database (docs/testing.md)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The second pass (PostgreSQL) leaves out what the first already proved.

    A test whose fixtures never reach ``database_url`` (and that is not marked
    ``database`` because it reads TEST_DATABASE_URL itself) runs the same code
    on either pass, so running it again on PostgreSQL only costs time. The
    rule is drawn from the fixtures, so a new test falls on the right side
    without a marker.
    """
    if not config.getoption("--database-tests-only"):
        return
    kept, dropped = [], []
    for item in items:
        reaches = "database_url" in getattr(item, "fixturenames", ())
        (kept if reaches or item.get_closest_marker("database") else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def service_unavailable(reason: str) -> None:
    """Skip for a missing service; under CI that is a failure."""
    if IN_CI:
        pytest.fail(f"CI requires it: {reason}", pytrace=False)
    pytest.skip(reason)


def _postgres_database(base_url: str) -> tuple[str, Callable[[], None]]:
    url = sa.make_url(base_url).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"consent_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise RuntimeError(f"PostgreSQL at {url.host}:{url.port} is unreachable: {exc}") from exc

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    wanted = os.environ.get("TEST_DATABASE_URL")
    if not wanted:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'consent.db'}"
        return
    try:
        url, drop = _postgres_database(wanted)
    except RuntimeError as exc:
        if IN_CI:
            pytest.exit(f"CI requires PostgreSQL: {exc}", returncode=3)
        pytest.skip(str(exc))
    yield url
    drop()


TEST_CONFIG = {
    "TESTING": True,
    "CONSENT_ENV": "testing",
    "SECRET_KEY": "test-secret-key-not-for-production",
    "SUPPRESSION_KEY": "test-suppression-key",
    "WTF_CSRF_ENABLED": False,
    "SESSION_COOKIE_SECURE": False,
    "RATELIMIT_ENABLED": False,
    "PUBLIC_BASE_URL": "http://localhost",
    # Signups answer at once here; tests/reliability/test_enumeration.py puts
    # the production floor back to prove it hides the difference.
    "SIGNUP_MIN_SECONDS": 0,
    # The webhook tests post to a real receiver on 127.0.0.1, which production
    # refuses; the tests of that refusal (tests/consent/test_webhook_targets.py)
    # and the fuzzing of every route turn it off again.
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": True,
}


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from flask_migrate import upgrade

    # The erasure journal of this run, emptied with the tables after each test.
    journal = tmp_path_factory.mktemp("journal") / "erasure-journal.jsonl"
    application = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "ERASURE_JOURNAL_PATH": str(journal),
        }
    )
    with application.app_context():
        upgrade(revision="heads")
    yield application


@pytest.fixture(autouse=True)
def _clean_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from empty tables (services commit, so no rollback trick)."""
    yield
    if "app" not in request.fixturenames:
        return
    application = request.getfixturevalue("app")
    Path(application.config["ERASURE_JOURNAL_PATH"]).unlink(missing_ok=True)
    with application.app_context():
        db.session.remove()
        tables = [t for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                written = _written_tables(conn, [t.name for t in tables])
                if written:
                    names = ", ".join(f'"{name}"' for name in written)
                    conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(table.delete())


# A table that was never written since its last TRUNCATE has an empty heap file
# (TRUNCATE gives it a new, empty one) and sequences never called. Anything a
# test did to it (rows inserted, even deleted again or rolled back; an id
# drawn) leaves the file longer or a sequence called, at once and whichever
# connection or process did it, unlike the statistics views, which lag.
_WRITTEN = sa.text(
    """
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace
      AND c.relname = ANY(:names)
      AND (pg_relation_size(c.oid) > 0
           OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                      WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid
                        AND d.deptype IN ('a', 'i')
                        AND CASE WHEN s.relkind = 'S'
                                 THEN pg_sequence_last_value(s.oid) IS NOT NULL END))
    """
)


def _written_tables(conn: sa.Connection, names: list[str]) -> list[str]:
    """The tables a test wrote, to be truncated; the others are left alone.

    TRUNCATE, not DELETE: DELETE leaves free space that the next test's rows
    fill out of insertion order, and a test that reads rows without an ORDER BY
    then fails now and then. TRUNCATE costs per table (new files for the table
    and its indexes), so truncating the few tables a test wrote instead of all
    of them is most of the PostgreSQL pass's saving (docs/testing.md)."""
    return [row[0] for row in conn.execute(_WRITTEN, {"names": names})]


@pytest.fixture
def app_ctx(app: Any) -> Iterator[Any]:
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def token_for(app: Any) -> Callable[[str], str]:
    """A fresh API token for a role."""
    from kernel.access import create_api_token

    def make(role: str) -> str:
        with app.app_context():
            _, raw = create_api_token(f"{role}-{uuid.uuid4().hex[:6]}", role)
            db.session.remove()
        return raw

    return make


class ApiClient:
    """The test client with a bearer token, speaking JSON."""

    def __init__(self, client: Any, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.client.post(path, json=json, headers=self.headers, **kwargs)

    def put(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.client.put(path, json=json, headers=self.headers, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.client.patch(path, json=json, headers=self.headers, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.client.delete(path, headers=self.headers, **kwargs)


@pytest.fixture
def api_as(client: Any, token_for: Callable[[str], str]) -> Callable[[str], ApiClient]:
    return lambda role: ApiClient(client, token_for(role))


@pytest.fixture
def admin_api(api_as: Callable[[str], ApiClient]) -> ApiClient:
    return api_as("admin")


@contextmanager
def statement_kinds(app: Any) -> Iterator[list[tuple[str, Any]]]:
    """Each SQL statement run inside the block, as (its first word, the
    connection's isolation level): how many round trips a request makes."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        level = conn.get_execution_options().get("isolation_level")
        seen.append((statement.split()[0].upper(), level))

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def count_rows(app: Any) -> dict[str, int]:
    """Rows per table: a test of bad input checks nothing changed."""
    with app.app_context(), db.engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in db.metadata.sorted_tables
        }


def known_since(app: Any, contact_id: int, moment: str) -> None:
    """Back-date a contact's creation to ``moment`` (ISO 8601, UTC).

    An interaction dated before a contact was created does not move its last
    interaction (X16): a test that logs history in the past needs a contact
    known since before it."""
    from datetime import UTC, datetime

    from crm.models import Contact

    created = datetime.fromisoformat(moment).replace(tzinfo=UTC)
    with app.app_context():
        db.session.execute(
            sa.update(Contact).where(Contact.id == contact_id).values(created_at=created)
        )
        db.session.commit()
        db.session.remove()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis, or a skip (a failure under CI)."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        service_unavailable(f"Redis at {url} is unreachable: {exc}")
    return url


@pytest.fixture
def runner_for() -> Callable[[Any], Any]:
    """Flask's CLI runner for an app: ``runner_for(app).invoke(args=[...])``."""
    return lambda application: application.test_cli_runner()


@pytest.fixture
def stub_worker(app: Any) -> Iterator[Any]:
    """A real dramatiq Worker on the in-memory broker, running actors in app context.

    Yields the broker; ``broker.join(queue)`` waits until a queue (retries
    included) is done.
    """
    from dramatiq import Worker

    from extensions import AppContextMiddleware, broker

    middleware = next((m for m in broker.middleware if isinstance(m, AppContextMiddleware)), None)
    if middleware is None:
        middleware = AppContextMiddleware(app)
        broker.add_middleware(middleware)
    middleware.app = app
    broker.flush_all()
    worker = Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield broker
    stop_worker(worker, broker)
    broker.flush_all()


@pytest.fixture
def import_worker(app: Any) -> Iterator[Callable[[], None]]:
    """A real dramatiq Worker for the ``imports`` queue alone: the API and the
    staff page hand every import to the worker. Yields ``finish()``, which waits
    until every queued import has run (and fails if one raised)."""
    from dramatiq import Worker

    from extensions import AppContextMiddleware, broker

    middleware = next((m for m in broker.middleware if isinstance(m, AppContextMiddleware)), None)
    if middleware is None:
        middleware = AppContextMiddleware(app)
        broker.add_middleware(middleware)
    middleware.app = app
    broker.flush("imports")
    worker = Worker(broker, queues={"imports"}, worker_timeout=50, worker_threads=1)
    worker.start()
    yield finish_imports
    stop_worker(worker, broker)
    broker.flush("imports")


def stop_worker(worker: Any, broker: Any) -> None:
    """Stop ``worker`` and take its middleware off the shared broker. A stopped
    worker's middleware would otherwise start a consumer for every queue a later
    test declares, and that consumer takes messages no thread of it will run
    (a later test's join then waits for ever)."""
    worker.stop()
    for middleware in [m for m in broker.middleware if getattr(m, "worker", None) is worker]:
        broker.middleware.remove(middleware)


def finish_imports() -> None:
    """Wait until the ``imports`` queue is empty (a worker must be running)."""
    from extensions import broker

    broker.join("imports", fail_fast=True, timeout=120_000)


def imported(api: ApiClient, response: Any, finish: Callable[[], None]) -> dict[str, Any]:
    """The report of an import the API answered 202 for, once the worker has run it."""
    assert response.status_code == 202, response.get_data(as_text=True)
    finish()
    batch = api.get(response.headers["Location"])
    assert batch.status_code == 200, batch.json
    return batch.json  # type: ignore[no-any-return]


# The browser tests (-m browser) --------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def live_server(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app on a real socket, with CSRF on as in production, and the demo data.

    ``PUBLIC_BASE_URL`` is this server, so that the links in the emails it
    sends open its own pages."""
    from werkzeug.serving import make_server

    from consent.demo import load_demo

    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    with app.app_context():
        load_demo()
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", base)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The machine's Chromium driven by Playwright, one per test module."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        service_unavailable(f"chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - a dev dependency
        service_unavailable(f"playwright is not installed: {exc}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def new_page(browser: Any, width: int = 1280, locale: str = "en-GB", **options: Any) -> Any:
    """A page in a fresh context (its own cookies); ``page.dialogs`` collects alerts.
    ``options`` go to Playwright's ``new_context``."""
    context = browser.new_context(
        viewport={"width": width, "height": 900}, locale=locale, **options
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    return page


def sign_in(page: Any, base: str, email: str, password: str | None = None) -> None:
    """Sign in on the staff sign-in page (the demo password unless told)."""
    from consent.demo import DEMO_PASSWORD

    page.goto(f"{base}/staff/")
    assert page.url.startswith(f"{base}/staff/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password or DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/staff/")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``$STAFF_SCREENSHOTS`` (docs/screenshots/ is made
    this way), else the test's temporary folder."""
    folder = Path(os.environ.get("STAFF_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
