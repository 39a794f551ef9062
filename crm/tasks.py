"""Dramatiq actors of the CRM package: the daily retention run, which also
announces the day to the packages above (``kernel.signals.day_started``).

Thin wrappers around ``crm.retention``; ids and times in, never data.
"""

from __future__ import annotations

import dramatiq

from crm import retention
from kernel.signals import day_started
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

# A run over millions of rows takes minutes; the daily run may take hours.
SIX_HOURS_MS = 6 * 60 * 60 * 1000


@dramatiq.actor(
    actor_name=retention.DAILY_RETENTION_JOB,
    queue_name="retention",
    max_retries=3,
    time_limit=SIX_HOURS_MS,
)
def run_daily_retention(*_former_chain_link: str) -> None:
    """Today's retention, sent once a day by the scheduler (``kernel.scheduling``).

    A message left from the former chain of delayed links (chain id, due time)
    runs it the same way and sends nothing further; ``run_daily`` skips a day
    already done, so a redelivery is harmless."""
    retention.run_daily()
    # The day's other duties belong to the packages above: the bases that lapsed
    # by time (R1, R3), the web visitors whose consent ended (R19), webhook
    # deliveries still to hand over. Each is safe to run twice in a day.
    day_started.send(signal_sender(), at=utcnow())
