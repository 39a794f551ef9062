"""The records of processing (GDPR art. 30), generated from what the service enforces.

Never written by hand: every line comes from the running configuration, so
the record cannot drift from what the service does. Purposes and their legal
bases are the policy file's topics; the grounds of legitimate interest, their
countries and time limits are its ``[legitimate_interest.*]`` tables;
retention per category is its ``[retention]`` rules (``crm.retention``, the
same rules the daily purge runs); recipients are the webhook receivers
registered here, the mail transport and bounce processors the settings name,
and any other processor listed in the file's ``[[processors]]``.

The record names the policy version it was generated from, when that version
was published, and when the file was last changed, so a printed copy says
which configuration it describes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from consent import webhooks
from consent.models import Basis
from consent.policies import version_published_at
from consent.topics import InterestGround, MarketingPolicy, current_policy
from crm.retention import current_retention_policy
from crm.retention.rules import RetentionPolicy
from kernel.timestamps import utcnow


@dataclass(frozen=True)
class Purpose:
    key: str
    label: str
    bases: tuple[str, ...]  # "consent", "legitimate_interest"
    marketing: bool


@dataclass(frozen=True)
class Ground:
    kind: str  # "customer" or "industry_list"
    countries: tuple[str, ...]
    topics: tuple[str, ...]
    lapse_months: int
    grace_days: int


@dataclass(frozen=True)
class Retention:
    name: str
    category: str
    kinds: tuple[str, ...]
    rule: str  # Rule.explain(): "delete contact 7 years after last_interaction..."
    description: str
    held_in: str | None  # None: this service purges it


@dataclass(frozen=True)
class Recipient:
    name: str
    kind: str  # "webhook", "mail", "bounces", "processor"
    purpose: str
    where: str  # a host, a folder, a country: never a credential


@dataclass(frozen=True)
class ProcessingRecords:
    policy_version: str
    published_at: datetime | None
    file_changed_at: datetime | None
    generated_at: datetime
    purposes: tuple[Purpose, ...]
    grounds: tuple[Ground, ...]
    double_opt_in_countries: tuple[str, ...]
    retention: tuple[Retention, ...]
    do_not_contact_years: int | None
    web_visits_kept_days: int
    recipients: tuple[Recipient, ...]


def processing_records(language: str = "en") -> ProcessingRecords:
    """The record as the running configuration makes it, now."""
    policy = current_policy()
    config = current_app.config
    return ProcessingRecords(
        policy_version=policy.version,
        published_at=version_published_at(policy.version),
        file_changed_at=_file_changed_at(config.get("POLICY_FILE")),
        generated_at=utcnow(),
        purposes=_purposes(policy, language),
        grounds=tuple(_ground(g) for g in (policy.customer, policy.industry_list)),
        double_opt_in_countries=tuple(sorted(policy.double_opt_in_countries)),
        retention=_retention(current_retention_policy()),
        do_not_contact_years=policy.do_not_contact_years,
        web_visits_kept_days=policy.web_visits_kept.days,
        recipients=_recipients(config, config.get("POLICY") or {}),
    )


def _file_changed_at(path: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
    except (OSError, TypeError, ValueError):
        return None


def _purposes(policy: MarketingPolicy, language: str) -> tuple[Purpose, ...]:
    order = (Basis.CONSENT, Basis.LEGITIMATE_INTEREST)
    return tuple(
        Purpose(
            key=topic.key,
            label=topic.label(language),
            bases=tuple(b.value for b in order if b in topic.bases),
            marketing=topic.marketing,
        )
        for topic in policy.topics.values()
    )


def _ground(ground: InterestGround) -> Ground:
    return Ground(
        kind=ground.kind,
        countries=tuple(sorted(ground.countries)),
        topics=tuple(sorted(ground.topics)),
        lapse_months=ground.lapse_months,
        grace_days=ground.grace.days,
    )


def _retention(policy: RetentionPolicy) -> tuple[Retention, ...]:
    return tuple(
        Retention(
            name=rule.name,
            category=rule.category,
            kinds=rule.kinds,
            rule=rule.explain(),
            description=rule.description,
            held_in=rule.held_in,
        )
        for rule in policy.rules
    )


def _host(url: str) -> str:
    """Where a URL points, without the user, password, path or query it may carry."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _recipients(config: Mapping[str, Any], policy_file: Mapping[str, Any]) -> tuple[Recipient, ...]:
    found: list[Recipient] = [
        Recipient(
            name=endpoint.description or _host(endpoint.url),
            kind="webhook",
            purpose=f"change feed: {endpoint.event_types or 'every event'}",
            where=_host(endpoint.url),
        )
        for endpoint in webhooks.list_endpoints()
        if endpoint.is_active
    ]
    smtp = config.get("SMTP_URL")
    found.append(
        Recipient(
            name="mail transport",
            kind="mail",
            purpose="delivers confirmation, notice and campaign mail",
            where=_host(smtp) if smtp else "files on this server (no SMTP_URL)",
        )
    )
    providers = (
        ("BOUNCE_IMAP_URL", "returned-mail mailbox", None),
        ("SES_SNS_TOPIC_ARNS", "Amazon SES (bounce and complaint notices)", "AWS SNS"),
        ("POSTMARK_WEBHOOK_AUTH", "Postmark (bounce and complaint notices)", "Postmark"),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "SendGrid (bounce and complaint notices)", "SendGrid"),
    )
    for setting, name, where in providers:
        value = config.get(setting)
        if value:
            found.append(
                Recipient(
                    name=name,
                    kind="bounces",
                    purpose="reports returned mail and complaints",
                    where=where or _host(str(value)),
                )
            )
    found.extend(_listed_processors(policy_file.get("processors", [])))
    return tuple(found)


def _listed_processors(listed: Sequence[Any]) -> list[Recipient]:
    """The policy file's ``[[processors]]``: name, purpose and where (a country
    or a host), for the processors this service cannot see on its own (the
    CRM, the hosting provider)."""
    processors = []
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, Mapping) and entry.get("name"):
            processors.append(
                Recipient(
                    name=str(entry["name"]),
                    kind="processor",
                    purpose=str(entry.get("purpose", "")),
                    where=str(entry.get("where", "")),
                )
            )
    return processors
