"""Privacy-policy versions and the consent wordings shown under them (R23).

Publishing makes a version current; consents given afterwards record it
(``consent.ledger.Evidence.policy_version``) and the SHA-256 of the exact
wording the person saw (``wording_hash``). Publishing sends the
``policy_published`` signal after the commit; on a major version the mailing
layer sends the transactional notice to every registered address (R24).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from consent.models import PolicyVersion, PolicyWording
from consent.topics import current_policy
from crm import services as crm
from extensions import db
from kernel.access import Actor
from kernel.countries import normalise_language
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.signals import policy_published
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow


@dataclass(frozen=True)
class WordingInput:
    key: str
    language: str
    text: str


def wording_hash(text: str) -> str:
    """The SHA-256 of a wording exactly as shown (UTF-8), as consents record it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def publish_policy(
    actor: Actor,
    version: str,
    *,
    is_major: bool = False,
    url: str | None = None,
    text: str | None = None,
    summary: str | None = None,
    wordings: Sequence[WordingInput] = (),
) -> PolicyVersion:
    """Publish a new privacy-policy version; it becomes the current one at once.

    A version is never edited or re-published: a change is a new version.
    """
    version = (version or "").strip()
    if not version:
        raise InvalidInput(
            "A policy version needs its name, e.g. 1.3.", fields={"version": ["Required."]}
        )
    if not (url or text):
        raise InvalidInput(
            "Give the policy's text or the URL where it is published.",
            code="missing_policy",
            fields={"url": ["url or text required."]},
        )
    if db.session.scalar(sa.select(PolicyVersion.id).where(PolicyVersion.version == version)):
        raise Conflict(
            f"Version {version} is already published; publish a new version instead.",
            code="policy_version_exists",
        )
    policy = PolicyVersion(
        version=version,
        published_at=utcnow(),
        published_by=actor.label,
        is_major=is_major,
        url=url,
        text=text,
        summary=summary,
    )
    db.session.add(policy)
    db.session.flush()
    seen = set()
    for wording in wordings:
        language = normalise_language(wording.language)
        key = (wording.key.strip(), language)
        if not key[0] or not wording.text.strip():
            raise InvalidInput(
                "Each wording needs a key and its text.", fields={"wordings": ["Incomplete."]}
            )
        if key in seen:
            raise InvalidInput(
                f"Two wordings for {key[0]!r} in {language}.",
                code="duplicate_wording",
                fields={"wordings": ["Duplicate."]},
            )
        seen.add(key)
        db.session.add(
            PolicyWording(
                policy_version_id=policy.id,
                key=key[0],
                language=language,
                text=wording.text,
                sha256=wording_hash(wording.text),
            )
        )
    crm.audit(actor, "policy.publish", None, detail=f"{version}{' (major)' if is_major else ''}")
    db.session.commit()
    policy_published.send(signal_sender(), policy_version_id=policy.id, is_major=is_major)
    return policy


def list_policies() -> list[PolicyVersion]:
    return list(
        db.session.scalars(
            sa.select(PolicyVersion).order_by(
                PolicyVersion.published_at.desc(), PolicyVersion.id.desc()
            )
        )
    )


def get_policy(version: str) -> PolicyVersion:
    policy = db.session.scalar(sa.select(PolicyVersion).where(PolicyVersion.version == version))
    if policy is None:
        raise NotFound(f"No published policy version {version!r}.", code="policy_not_found")
    return policy


def wordings_of(policy: PolicyVersion) -> list[PolicyWording]:
    return list(
        db.session.scalars(
            sa.select(PolicyWording)
            .where(PolicyWording.policy_version_id == policy.id)
            .order_by(PolicyWording.key, PolicyWording.language)
        )
    )


def current_policy_version() -> PolicyVersion | None:
    """The latest published version, or None before anything was published."""
    return db.session.scalar(
        sa.select(PolicyVersion)
        .order_by(PolicyVersion.published_at.desc(), PolicyVersion.id.desc())
        .limit(1)
    )


def current_version_label() -> str:
    """The version new consents are recorded under: the latest published one, or
    ``policy_version`` from the policy file until a version is published."""
    published = current_policy_version()
    return published.version if published else current_policy().version


def current_wording(key: str, language: str) -> PolicyWording | None:
    """The wording to show for ``key`` in ``language`` (English as fallback) under
    the current version; record its ``sha256`` as the consent's ``wording_hash``."""
    published = current_policy_version()
    if published is None:
        return None
    rows = {
        w.language: w
        for w in db.session.scalars(
            sa.select(PolicyWording).where(
                PolicyWording.policy_version_id == published.id, PolicyWording.key == key
            )
        )
    }
    return rows.get(language) or rows.get("en")


def check_consent_version(version: str | None, wording_sha256: str | None = None) -> None:
    """R23: a consent names a version that was actually published (once any is)
    and, when that version published its consent wordings, the hash of one of
    them: a caller cannot claim a version or a wording nobody was shown.

    A version published without wordings (only its URL or text) cannot vouch
    for a hash, so any hash is taken with it; the ledger still keeps it."""
    if version is None:
        return
    any_published = db.session.scalar(sa.select(PolicyVersion.id).limit(1)) is not None
    if not any_published:
        return
    published = db.session.scalar(
        sa.select(PolicyVersion.id).where(PolicyVersion.version == version)
    )
    if published is None:
        raise InvalidInput(
            f"Policy version {version!r} was never published; consents must name the version "
            "the person was shown.",
            code="unknown_policy_version",
            fields={"basis": {"evidence": {"policy_version": ["Not a published version."]}}},
        )
    if wording_sha256 is None:
        return
    hashes = set(
        db.session.scalars(
            sa.select(PolicyWording.sha256).where(PolicyWording.policy_version_id == published)
        )
    )
    if hashes and wording_sha256 not in hashes:
        raise InvalidInput(
            f"The wording (or wording_hash) is not one published with policy version "
            f"{version!r}; send the exact text the person was shown under that version.",
            code="unknown_wording",
            fields={"basis": {"evidence": {"wording_hash": ["Not a wording of this version."]}}},
        )


def version_published_at(version: str | None) -> datetime | None:
    """When ``version`` was published; None for one never published (the policy
    file's label, from before versions were published here)."""
    if version is None:
        return None
    return db.session.scalar(
        sa.select(PolicyVersion.published_at).where(PolicyVersion.version == version)
    )


def latest_major_version() -> PolicyVersion | None:
    """The newest version published as a major change (R24), if any."""
    return db.session.scalar(
        sa.select(PolicyVersion)
        .where(PolicyVersion.is_major.is_(True))
        .order_by(PolicyVersion.published_at.desc(), PolicyVersion.id.desc())
        .limit(1)
    )
