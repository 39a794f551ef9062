"""Unbound singletons, attached to the app in ``create_app``.

The dramatiq broker is chosen here, at import time, because dramatiq binds
every actor to the broker that is current when the actor is declared: it
must exist before any ``tasks.py`` module is imported.
"""

from __future__ import annotations

import threading

import dramatiq
import marshmallow as ma
import sqlalchemy as sa
from dramatiq.broker import MessageProxy
from flask import Flask
from flask.ctx import AppContext
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from kernel import settings


class Base(DeclarativeBase):
    # Named constraints make Alembic migrations identical on SQLite and PostgreSQL.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection: object, connection_record: object) -> None:
    # SQLite ignores ON DELETE CASCADE unless asked on every connection.
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # Write-ahead log: a writer waiting for the write lock holds nothing the
        # holder needs to commit (a marketing send holds it until SMTP accepted
        # its message, mailing.delivery.deliver), and readers never wait.
        cursor.execute("PRAGMA journal_mode=WAL")
        # Writers queue for that lock: wait for it rather than fail after 5 s.
        cursor.execute("PRAGMA busy_timeout=30000")
        # With the write-ahead log this is still safe against corruption; a power
        # cut may lose the last commits, not the database.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class _SQLiteWriters:
    """One writing transaction at a time per process on SQLite, queued on a lock.

    SQLite has one write lock per database. A connection that finds it taken
    sleeps in growing steps (1, 2, 5, 10, 15, 20 ms ...) and retries, so under
    concurrent writes (every permission check writes its audit entry, R25) a
    request can sleep long after the lock was freed: the long tail of the
    single check on SQLite (docs/benchmarks.md). Within a process the writers
    now wait on a lock that wakes the next one the moment the holder is done;
    between processes SQLite's busy handler still decides.

    A thread takes the lock just before its first write statement (where
    SQLite takes its own) and gives it back when it returns a connection to
    the pool, after the commit or rollback. It is the thread's, not the
    connection's: work done after a commit on a second connection (webhook
    hand-over in ``after_commit``) must not wait for the first one's return.
    """

    _READS = ("SELECT", "PRAGMA", "SAVEPOINT", "RELEASE", "ROLLBACK")

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._holder = threading.local()
        self.timeout = timeout

    def before_statement(self, statement: str) -> None:
        if getattr(self._holder, "held", False):
            return
        if statement.lstrip()[:9].upper().startswith(self._READS):
            return
        if not self._lock.acquire(timeout=self.timeout):
            import sqlite3

            raise sqlite3.OperationalError("database is locked")
        self._holder.held = True

    def connection_returned(self) -> None:
        if getattr(self._holder, "held", False):
            self._holder.held = False
            self._lock.release()


_sqlite_writers = _SQLiteWriters(timeout=30.0)


def _queue_sqlite_writer(
    connection: sa.Connection, cursor: object, statement: str, *args: object
) -> None:
    _sqlite_writers.before_statement(statement)


def _release_sqlite_writer(dbapi_connection: object, connection_record: object) -> None:
    _sqlite_writers.connection_returned()


def queue_sqlite_writers(engine: sa.Engine) -> None:
    """Make the writers of this process queue on one lock, if ``engine`` is SQLite's.

    Attached per engine, so that PostgreSQL's engine carries no listener."""
    if engine.dialect.name != "sqlite":
        return
    if not sa.event.contains(engine, "before_cursor_execute", _queue_sqlite_writer):
        sa.event.listen(engine, "before_cursor_execute", _queue_sqlite_writer)
        sa.event.listen(engine, "checkin", _release_sqlite_writer)


migrate = Migrate(render_as_batch=True, compare_type=True)


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(required=True)
    message = ma.fields.String(required=True)
    # Not ``fields``: that name is the schema's own table of its fields.
    field_errors = ma.fields.Dict(data_key="fields")


class ErrorSchema(ma.Schema):
    """Every error the service answers: ``{"error": {"code", "message", "fields"}}``."""

    error = ma.fields.Nested(ErrorDetailSchema, required=True)


class ConsentApi(Api):
    ERROR_SCHEMA = ErrorSchema


api = ConsentApi()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def build_broker(url: str | None) -> dramatiq.Broker:
    """The broker named by ``DRAMATIQ_BROKER_URL``; an in-memory one without it."""
    if url and url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        namespace = settings.value("DRAMATIQ_NAMESPACE")
        return RedisBroker(url=url, namespace=namespace)
    if url and url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    if url:
        raise RuntimeError(f"DRAMATIQ_BROKER_URL must start with redis:// or amqp://, got {url!r}")
    from dramatiq.brokers.stub import StubBroker

    return StubBroker()


broker = build_broker(settings.value("DRAMATIQ_BROKER_URL"))
dramatiq.set_broker(broker)


def broker_was_emptied() -> bool:
    """Whether the broker lost its stored messages since this was last asked.

    A Redis restarted without its data (``--save ""``, a lost disk) or flushed
    forgets every message, with no error anywhere. A mark is kept beside the
    queues: its absence means everything stored with it is gone, and the one
    caller that sets it again gets True (once per loss; the first call ever
    too). Other brokers keep their messages (RabbitMQ's durable queues) or
    never outlive the process that uses them (the in-memory one): False.
    Raises when the broker is unreachable.
    """
    client = getattr(broker, "client", None)
    namespace = getattr(broker, "namespace", None)
    if client is None or namespace is None:
        return False
    return bool(client.set(f"{namespace}:__outbox_mark__", "1", nx=True))


class AppContextMiddleware(dramatiq.Middleware):
    """Runs every actor inside an application context of ``app``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._contexts: dict[int, AppContext] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        import threading

        context = self.app.app_context()
        context.push()
        self._contexts[threading.get_ident()] = context

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        import threading

        context = self._contexts.pop(threading.get_ident(), None)
        if context is not None:
            db.session.remove()
            context.pop()

    after_skip_message = after_process_message
