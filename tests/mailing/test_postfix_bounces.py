"""The mail loop through a real MTA: Debian's Postfix, a private instance on
127.0.0.1 started by the test (tests/mailing/postfix_instance.py).

Postfix refuses an unknown local user at RCPT TO while ``local_recipient_maps``
holds the users; with it empty it takes the message, fails to deliver it, and
sends a DSN to the envelope sender, our VERP address, which its pipe(8)
transport hands to ``flask bounces ingest -`` in a process of its own.
Skipped where Postfix or root is missing; under CI=true that is a failure
(.ci/setup installs Postfix where it runs as root).
"""

from __future__ import annotations

import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consent.models import BounceReport
from extensions import db
from mailing import campaigns
from mailing.delivery import deliver
from mailing.models import OutboxMessage
from tests.conftest import service_unavailable
from tests.mailing.bounce_samples import ROOT
from tests.mailing.helpers import consented_contacts
from tests.mailing.postfix_instance import PostfixInstance, why_unavailable
from tests.mailing.test_campaigns import STAFF, TEXTS

LOCAL_DOMAIN = "ingest.test"
BOUNCE_DOMAIN = "bounces.example.com"
NOBODY_HERE = f"nobody-here@{LOCAL_DOMAIN}"
PIPE_USER = "nobody"


def _python_for(user: str) -> list[str] | None:
    """An interpreter ``user`` can run with this project's packages: this one,
    or the system's of the same version with this one's site-packages (a
    virtualenv made from an interpreter under /root is not theirs to run)."""
    site = sysconfig.get_paths()["purelib"]
    candidates = [[sys.executable], ["/usr/bin/python3"]]
    for interpreter in candidates:
        probe = subprocess.run(
            [
                "runuser",
                "-u",
                user,
                "--",
                "/usr/bin/env",
                f"PYTHONPATH={ROOT}:{site}",
                *interpreter,
                "-c",
                "import flask, flufl.bounce, sqlalchemy, app",
            ],
            capture_output=True,
            cwd="/",
            timeout=60,
            check=False,
        )
        if probe.returncode == 0:
            return [*interpreter]
    return None


def _searchable(folder: Path) -> list[tuple[Path, int]]:
    """Search permission for everyone on ``folder`` and its parents (pytest's
    temporary folders are the owner's alone; Postfix's daemons and the pipe's
    user must reach theirs). Returns the modes to put back."""
    changed = []
    for path in [*reversed(folder.parents), folder]:
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            changed.append((path, mode))
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH | stat.S_IROTH)
    return changed


def _open_to(user_path: Path) -> list[tuple[Path, int]]:
    """Let the pipe's user reach a SQLite file: read and write on the file and
    its folder (the journal). Returns the modes to put back."""
    folder = user_path.parent
    changed = _searchable(folder)
    changed.append((folder, folder.stat().st_mode))
    folder.chmod(stat.S_IMODE(folder.stat().st_mode) | 0o777)
    for file in folder.iterdir():
        changed.append((file, file.stat().st_mode))
        file.chmod(stat.S_IMODE(file.stat().st_mode) | 0o666)
    return changed


@pytest.fixture
def postfix(app: Any) -> Iterator[Any]:
    """Start a private Postfix: ``make(refuse_unknown=...)``."""
    reason = why_unavailable()
    if reason:
        service_unavailable(reason)
    # The checkout and its packages may sit in a folder that is its owner's
    # alone (a CI clone under mktemp -d): the pipe's user must reach them.
    restore = _searchable(ROOT) + _searchable(Path(sysconfig.get_paths()["purelib"]))
    interpreter = _python_for(PIPE_USER)
    if interpreter is None:
        for path, mode in reversed(restore):
            path.chmod(stat.S_IMODE(mode))
        service_unavailable(f"no Python the pipe's user {PIPE_USER} may run")
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    sqlite_file = Path(database.removeprefix("sqlite:///")) if "sqlite:" in database else None
    if sqlite_file is not None:
        restore += _open_to(sqlite_file)
    # Outside pytest's temporary folders, which are root's alone and which
    # other pytest runs prune: Postfix's daemons must reach theirs.
    folder = Path(tempfile.mkdtemp(prefix="postfix-test-"))
    folder.chmod(0o755)
    environment = {
        "FLASK_APP": "app",
        "CONSENT_ENV": "testing",
        "SECRET_KEY": app.config["SECRET_KEY"],
        "SUPPRESSION_KEY": app.config["SUPPRESSION_KEY"],
        "DATABASE_URL": database,
        "POLICY_FILE": app.config["POLICY_FILE"],
        "BOUNCE_ADDRESS": f"bounces@{BOUNCE_DOMAIN}",
        "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}",
    }
    # Exactly the command docs/bounces.md shows, with the test's settings.
    argv = " ".join(
        [
            "/usr/bin/env",
            *(f"{key}={shlex.quote(value)}" for key, value in environment.items()),
            *interpreter,
            "-m flask bounces ingest --recipient ${original_recipient} -",
        ]
    )
    started: list[PostfixInstance] = []
    previous = app.config.get("SMTP_URL"), app.config.get("BOUNCE_ADDRESS")

    def keep_open() -> None:
        """Another pytest session starting on this machine makes pytest-of-<user>
        its owner's alone again; the pipe exits 75 then and Postfix retries."""
        if sqlite_file is not None:
            _searchable(sqlite_file.parent)

    def make(*, refuse_unknown: bool) -> PostfixInstance:
        instance = PostfixInstance(
            folder / ("refusing" if refuse_unknown else "accepting"),
            local_domain=LOCAL_DOMAIN,
            bounce_domain=BOUNCE_DOMAIN,
            argv=argv,
            pipe_user=PIPE_USER,
            refuse_unknown=refuse_unknown,
        )
        instance.start()
        instance.keep_open = keep_open  # type: ignore[attr-defined]
        started.append(instance)
        app.config["SMTP_URL"] = instance.smtp_url
        app.config["BOUNCE_ADDRESS"] = f"bounces@{BOUNCE_DOMAIN}"
        return instance

    yield make
    for instance in started:
        instance.stop()
    app.config["SMTP_URL"], app.config["BOUNCE_ADDRESS"] = previous
    for path, mode in reversed(restore):
        path.chmod(stat.S_IMODE(mode))
    shutil.rmtree(folder, ignore_errors=True)
    from mailing.transport import close_connection

    close_connection()


def _campaign_to_nobody_here(app: Any) -> tuple[int, int]:
    (contact_id,) = consented_contacts(app, [(NOBODY_HERE, "Nobody", "en")])
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, TEXTS)
        campaigns.send_campaign(STAFF, campaign.id)
        outbox_id = db.session.scalar(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign.id)
        )
        db.session.remove()
    return contact_id, outbox_id


def test_postfix_refuses_an_unknown_recipient_at_rcpt_to(app, postfix) -> None:
    """With ``local_recipient_maps`` set, the refusal comes while sending: a 5xx
    answer to RCPT TO, which fails the outbox row for good (never retried)."""
    instance = postfix(refuse_unknown=True)
    _, outbox_id = _campaign_to_nobody_here(app)
    with app.app_context():
        result = deliver(outbox_id)
        row = db.session.get(OutboxMessage, outbox_id)
        status, error = row.status, row.last_error
        db.session.remove()
    assert result.status == "failed", instance.log_text()
    assert status == "failed"
    assert "550" in error and "5.1.1" in error
    assert "reject: RCPT" in instance.log_text()


def test_postfix_dsn_piped_into_flask_bounces_ingest_makes_email_undeliverable(
    app, postfix, admin_api
) -> None:
    """With ``local_recipient_maps`` empty, Postfix takes the message, bounces it,
    and pipes its own DSN (to our VERP address) into ``flask bounces ingest -``."""
    instance = postfix(refuse_unknown=False)
    contact_id, outbox_id = _campaign_to_nobody_here(app)
    with app.app_context():
        assert deliver(outbox_id).status == "sent", instance.log_text()
        db.session.remove()
    deadline = time.monotonic() + 60
    report = None
    while report is None and time.monotonic() < deadline:
        instance.keep_open()
        with app.app_context():
            report = db.session.scalar(sa.select(BounceReport))
            if report is not None:
                db.session.expunge(report)
            db.session.remove()
        time.sleep(0.3)
    assert report is not None, instance.log_text()
    assert (report.type, report.status, report.source) == ("hard", "5.1.1", "dsn")
    assert (report.matched_by, report.outbox_id) == ("verp", outbox_id)
    assert "unknown user" in (report.diagnostic or "")
    decisions = admin_api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    assert {d["reason"] for d in decisions if d["channel"] == "email"} == {"undeliverable"}
