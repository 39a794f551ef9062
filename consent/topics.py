"""Topics, channels and the country rules, read from the policy file (TOML)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app

from consent.models import Basis
from kernel.errors import InvalidInput


@dataclass(frozen=True)
class Topic:
    key: str
    labels: Mapping[str, str]
    bases: frozenset[Basis]

    @property
    def admits_legitimate_interest(self) -> bool:
        return Basis.LEGITIMATE_INTEREST in self.bases

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels.get("en") or self.key


@dataclass(frozen=True)
class MarketingPolicy:
    version: str
    topics: Mapping[str, Topic]
    channels: tuple[str, ...]
    legitimate_interest_countries: frozenset[str]
    double_opt_in_countries: frozenset[str]
    customer_grace: timedelta
    # Topics a form checkbox never opens without double opt-in, whatever the country.
    always_double_opt_in_topics: frozenset[str] = frozenset({"newsletter"})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MarketingPolicy:
        try:
            topics = {
                key: Topic(
                    key=key,
                    labels=dict(spec.get("label", {})),
                    bases=frozenset(Basis(b) for b in spec["bases"]),
                )
                for key, spec in data["topics"].items()
            }
            interest = data.get("legitimate_interest", {})
            return cls(
                version=str(data.get("policy_version", "1.0")),
                topics=topics,
                channels=tuple(data.get("channels", ["email"])),
                legitimate_interest_countries=frozenset(
                    c.upper() for c in interest.get("countries", [])
                ),
                double_opt_in_countries=frozenset(
                    c.upper() for c in data.get("double_opt_in", {}).get("countries", [])
                ),
                customer_grace=timedelta(days=int(interest.get("customer_grace_days", 0))),
                always_double_opt_in_topics=frozenset(
                    data.get("double_opt_in", {}).get("always_topics", ["newsletter"])
                ),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise RuntimeError(f"The policy file is malformed: {exc!r}") from exc

    def topic(self, key: str) -> Topic:
        try:
            return self.topics[key]
        except KeyError:
            raise InvalidInput(
                f"Unknown topic {key!r}; known topics: {', '.join(sorted(self.topics))}.",
                code="unknown_topic",
                fields={"topic": ["Unknown topic."]},
            ) from None

    def check_channel(self, channel: str) -> str:
        if channel not in self.channels:
            raise InvalidInput(
                f"Unknown channel {channel!r}; known channels: {', '.join(self.channels)}.",
                code="unknown_channel",
                fields={"channel": ["Unknown channel."]},
            )
        return channel

    def requires_double_opt_in(self, country: str | None) -> bool:
        # R8: unknown country counts as one that requires it.
        return country is None or country.upper() in self.double_opt_in_countries

    def requires_double_opt_in_for(self, topic: str, country: str | None) -> bool:
        """R8: whether a ticked form checkbox for ``topic`` still needs the email
        confirmation. Newsletter signups always do."""
        return topic in self.always_double_opt_in_topics or self.requires_double_opt_in(country)


def current_policy() -> MarketingPolicy:
    """The marketing policy of the running app (parsed once at start-up)."""
    return current_app.extensions["marketing_policy"]


def check_topics(topic_keys: Sequence[str]) -> tuple[str, ...]:
    """The topics a signup names, each once, in order; all must take consent."""
    policy = current_policy()
    if not topic_keys:
        raise InvalidInput("Choose at least one topic.", fields={"topics": ["Required."]})
    for key in topic_keys:
        if Basis.CONSENT not in policy.topic(key).bases:
            raise InvalidInput(f"Topic {key!r} does not take consent.", code="basis_not_admitted")
    return tuple(dict.fromkeys(topic_keys))
