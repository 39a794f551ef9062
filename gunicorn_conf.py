"""gunicorn's configuration for the web process, shipped in the wheel.

    gunicorn -c python:gunicorn_conf "app:create_app()"

Sized to the work the web process does: short requests that mostly wait on
the database (a permission check, a signup, a staff page), never a long job
(imports, campaigns and purges run in the dramatiq workers). Threads therefore
serve the waiting cheaply; processes use the cores. Every value can still be
overridden on the command line or in ``GUNICORN_CMD_ARGS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kernel import settings

# PORT: what process managers of the Procfile kind hand out.
bind = [f"{settings.checked_value('WEB_HOST')}:{settings.checked_value('PORT')}"]

# One process per core this process may use (a container's CPU set, not the
# host's) keeps every core busy; two at least, so that a process that is
# restarting (max_requests) or stuck leaves one serving; eight at most, so that
# processes x threads stays under PostgreSQL's 100 connections on a large host.
workers = settings.checked_value("WEB_CONCURRENCY") or max(2, min(len(os.sched_getaffinity(0)), 8))
# Requests wait on PostgreSQL far more than they compute: threads overlap that
# wait. Each thread can hold one database connection (SQLAlchemy's pool holds
# 5 + 10 overflow per process), so workers x threads stays well under
# PostgreSQL's max_connections (100) for the default sizes.
worker_class = "gthread"
threads = settings.checked_value("WEB_THREADS")

# With threads this is the process's heartbeat, not a limit on one request: a
# process whose main loop says nothing for this long (hung in C code, swapping)
# is killed and replaced. A slow request (a large CSV upload on a slow link)
# keeps its thread and does not trip it; long work itself runs in the workers.
timeout = 30
# On SIGTERM (deploy, docker stop, systemctl stop) a process stops accepting
# and finishes its requests for up to this long. Under the 30 s a container
# engine or systemd (TimeoutStopSec) waits before it kills.
graceful_timeout = 25
# Behind a reverse proxy that keeps connections open to us.
keepalive = 5

# Replace each process after a number of requests (spread so that they do not
# all restart together): memory a library leaks cannot grow without bound.
max_requests = 2000
max_requests_jitter = 200

# Not preloaded: every process must open its own database connections and broker
# client after the fork, never share the parent's sockets.
preload_app = False

# The worker's heartbeat file: in memory where there is some (a container's
# overlay file system can stall a write long enough to get a live worker killed).
# gunicorn makes its file there with mkstemp (a random name, mode 0600).
_SHARED_MEMORY = "/dev/shm"  # noqa: S108
if Path(_SHARED_MEMORY).is_dir():
    worker_tmp_dir = _SHARED_MEMORY

# X-Forwarded-* are the application's to judge (TRUSTED_PROXY_HOPS, app.py):
# one place decides which proxy to believe, so gunicorn believes none.
forwarded_allow_ips = ""

# Errors and lifecycle to stderr (the journal, the container log); the
# application logs each request itself, so gunicorn's access log stays off.
errorlog = "-"
accesslog = None
loglevel = "info"
# Shown by ps and top: which installation a process belongs to.
proc_name = "consent-web"


def child_exit(server: Any, worker: Any) -> None:
    """With Prometheus in multi-process mode, drop a dead process's live gauges."""
    if settings.checked_value("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
