"""Sending a job to an actor by its name, so that job-sending code never imports tasks.

Each package's ``tasks.py`` declares its actors and imports the modules whose
functions they run. Those modules in turn need to send jobs (hand the outbox
over, ask for a link to be mailed). They name the actor by a constant they own
(``mailing.outbox.DELIVERY_JOB``), the actor is declared under that name, and
this module looks it up on the broker: the dependency points one way only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import dramatiq

from kernel.errors import N_, Unavailable

log = logging.getLogger(__name__)

BROKER_DOWN = N_("The service is briefly unavailable; please try again in a few minutes.")


def job(actor_name: str) -> dramatiq.Actor[Any, Any]:
    """The actor declared under ``actor_name`` (in some package's ``tasks.py``)."""
    return dramatiq.get_broker().get_actor(actor_name)


def send_job(actor_name: str, *args: Any, **options: Any) -> None:
    """Send one message; raises whatever the broker raises."""
    job(actor_name).send_with_options(args=args, **options)


def send_or_unavailable(actor_name: str, *args: Any) -> None:
    """Send a job that is the only record of a person's request: a broker that
    is down becomes ``Unavailable`` (a 503, the same answer for every address)
    rather than an answer of "done" for nothing."""
    try:
        send_job(actor_name, *args)
    except Exception as exc:
        log.warning("A request's job (%s) was not handed to the broker (%s).", actor_name, exc)
        raise Unavailable(BROKER_DOWN) from None


def due_again(first: datetime, last: datetime, now: datetime, least: timedelta) -> bool:
    """Whether a job handed over at ``first``, and again at ``last``, may be
    handed over once more at ``now`` although its message may only be waiting
    behind longer jobs: after ``least``, then after as long again as it has
    waited (``least``, 2 x ``least``, 4 x ...), so that a message truly lost is
    replaced soon and one merely waiting gains a duplicate only every doubling
    of its wait (six behind a six-hour job, for five minutes), not every sweep."""
    return now - last >= max(least, last - first)
