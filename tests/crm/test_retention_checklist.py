"""Data held in other systems (R16-R18): every such rule names who purges it, and
the preview is a checklist the admin marks done, recorded with who and when."""

from __future__ import annotations

import html
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm import retention
from crm.models import AuditEntry, RetentionChecklistMark
from crm.retention import RetentionPolicy
from extensions import db
from kernel.access import Actor
from kernel.errors import InvalidInput
from kernel.timestamps import utcnow
from tests.staff.helpers import client_as

RULE_SETS = Path(__file__).resolve().parents[2] / "policies" / "retention"
ADMIN = Actor(kind="user", name="admin@example.com", role="admin")


def load(name: str) -> RetentionPolicy:
    with open(RULE_SETS / name, "rb") as handle:
        return RetentionPolicy.from_mapping(tomllib.load(handle))


@pytest.mark.parametrize("path", sorted(RULE_SETS.glob("*.toml")), ids=lambda p: p.name)
def test_each_policy_file_loads_and_names_who_purges_what_it_holds_elsewhere(path: Path) -> None:
    policy = load(path.name)
    for rule in policy.external_rules:
        assert rule.held_in and rule.purged_by, rule.name
    for rule in policy.held_rules:
        assert rule.purged_by is None, rule.name


def test_a_rule_held_elsewhere_without_purged_by_is_refused_with_a_clear_message() -> None:
    spec = {
        "name": "server-logs",
        "category": "server_log",
        "held_in": "the web servers",
        "months": 6,
        "counts_from": "record_date",
    }
    with pytest.raises(RuntimeError) as refused:
        RetentionPolicy.from_mapping({"retention": {"rules": [spec]}})
    message = str(refused.value)
    assert "'server-logs'" in message and "the web servers" in message
    assert "purged_by" in message
    blank = RetentionPolicy.from_mapping
    with pytest.raises(RuntimeError, match="purged_by"):
        blank({"retention": {"rules": [{**spec, "purged_by": "  "}]}})
    with pytest.raises(RuntimeError, match="purged_by is for data held elsewhere"):
        blank(
            {
                "retention": {
                    "rules": [
                        {
                            "name": "c",
                            "category": "contact",
                            "years": 7,
                            "counts_from": "created",
                            "purged_by": "someone",
                        }
                    ]
                }
            }
        )


def test_the_preview_lists_what_is_due_where_and_who_purges_it(app_ctx) -> None:
    policy = load("002-hms.toml")
    preview = retention.preview(date(2026, 12, 6), policy=policy)
    items = {item.rule.name: item for item in preview.checklist}
    assert set(items) == {r.name for r in policy.external_rules}
    chat = items["chat-transcripts"]
    # 45 days: transcripts from 2026-10-21 or earlier are due on 2026-12-06.
    assert chat.due_through == date(2026, 10, 21)
    assert chat.rule.held_in == "the live-chat service"
    assert "marketing team" in (chat.rule.purged_by or "")
    assert not chat.is_done and chat.mark is None


def test_marking_done_records_who_and_when_in_a_table_and_the_audit_log(app_ctx) -> None:
    policy = load("000-axsensor.toml")
    today = utcnow().date()
    due = policy_rule(policy, "server-logs").latest_due_anchor_day(today)
    mark = retention.mark_done(ADMIN, "server-logs", due, policy)
    assert (mark.rule, mark.done_through, mark.done_by) == ("server-logs", due, ADMIN.label)
    assert mark.done_at is not None
    again = retention.mark_done(ADMIN, "server-logs", due, policy)
    assert again.id == mark.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RetentionChecklistMark)) == 1
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "retention.purged_elsewhere")
    ).one()
    assert entry.actor == ADMIN.label and "server-logs through" in (entry.detail or "")
    item = next(i for i in retention.checklist(today, policy) if i.rule.name == "server-logs")
    assert item.is_done
    # A later day has more due: the item is open again until marked anew.
    later = next(
        i
        for i in retention.checklist(today + timedelta(days=40), policy)
        if i.rule.name == "server-logs"
    )
    assert not later.is_done and later.mark is not None


def test_marking_an_unknown_rule_or_a_day_not_yet_due_is_refused(app_ctx) -> None:
    policy = load("000-axsensor.toml")
    with pytest.raises(InvalidInput, match="No retention rule 'customers'"):
        retention.mark_done(ADMIN, "customers", date(2020, 1, 1), policy)
    with pytest.raises(InvalidInput, match="is due yet"):
        retention.mark_done(ADMIN, "server-logs", utcnow().date(), policy)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RetentionChecklistMark)) == 0


def test_cli_preview_shows_the_checklist_and_done_marks_it(app, runner_for, monkeypatch) -> None:
    monkeypatch.setitem(app.extensions, "retention_policy", load("003-advox.toml"))
    runner = runner_for(app)
    shown = runner.invoke(args=["retention", "preview"])
    assert shown.exit_code == 0, shown.output
    assert "[ ] sms-traffic: held in the SMS platform" in shown.output
    assert "purged by: the SMS platform's traffic-data clean-up job" in shown.output
    with app.app_context():
        due = policy_rule(load("003-advox.toml"), "sms-traffic").latest_due_anchor_day(
            utcnow().date()
        )
    done = runner.invoke(args=["retention", "done", "sms-traffic", "--through", due.isoformat()])
    assert done.exit_code == 0, done.output
    assert "recorded by cli:" in done.output
    again = runner.invoke(args=["retention", "preview", "--json"])
    items = {i["rule"]: i for i in __import__("json").loads(again.output)["checklist"]}
    assert items["sms-traffic"]["is_done"] is True
    assert items["sms-traffic"]["last_done"]["done_by"].startswith("cli:")
    assert items["sms-traffic-settled"]["is_done"] is False
    refused = runner.invoke(args=["retention", "done", "customers", "--through", "2020-01-01"])
    assert refused.exit_code != 0 and "No retention rule 'customers'" in refused.output
    bad = runner.invoke(args=["retention", "done", "sms-traffic", "--through", "soon"])
    assert bad.exit_code != 0 and "YYYY-MM-DD" in bad.output


def test_the_staff_retention_page_is_a_checklist_the_admin_marks_done(app, monkeypatch) -> None:
    monkeypatch.setitem(app.extensions, "retention_policy", load("000-axsensor.toml"))
    admin = client_as(app, "admin")
    page = admin.get("/staff/admin/retention").get_data(as_text=True)
    text = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))
    assert "log rotation on the web servers (IT operations)" in text
    assert "the accounting system's yearly close (finance team)" in text
    with app.app_context():
        due = policy_rule(load("000-axsensor.toml"), "server-logs").latest_due_anchor_day(
            utcnow().date()
        )
    response = admin.post(
        "/staff/admin/retention/checklist",
        data={"rule": "server-logs", "done_through": due.isoformat()},
    )
    assert response.status_code == 303
    after = admin.get("/staff/admin/retention").get_data(as_text=True)
    assert f"Done through {due.isoformat()}" in " ".join(re.sub(r"<[^>]+>", " ", after).split())
    with app.app_context():
        mark = db.session.scalars(sa.select(RetentionChecklistMark)).one()
        assert mark.done_by.startswith("user:")
    # Only admins may.
    sales = client_as(app, "sales")
    denied = sales.post(
        "/staff/admin/retention/checklist",
        data={"rule": "server-logs", "done_through": due.isoformat()},
    )
    assert denied.status_code in (302, 303, 403)
    with app.app_context():
        assert (
            db.session.scalar(sa.select(sa.func.count()).select_from(RetentionChecklistMark)) == 1
        )


def policy_rule(policy: RetentionPolicy, name: str) -> retention.Rule:
    return next(r for r in policy.rules if r.name == name)
