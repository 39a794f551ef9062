"""A real Postfix from Debian's packages, as a private instance for one test.

Its own configuration, queue and data directories under a temporary folder,
an SMTP listener on 127.0.0.1 and a free port, no chroot: nothing of the
machine's own Postfix (if any) is read or touched. ``postfix -c DIR start``
works without systemd; starting it needs root, as Postfix's master does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
# The services a private instance needs (Debian's master.cf, chroot off).
_MASTER = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
# Returned mail for the bounce domain: piped into `flask bounces ingest -`.
bounceingest unix - n n - - pipe
  flags=Rq user={pipe_user} argv={argv}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def why_unavailable() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if not os.path.exists(POSTFIX):
        return "postfix is not installed (apt-get install postfix; .ci/setup does it as root)"
    if os.geteuid() != 0:
        return "postfix needs root to start its master process"
    return None


class PostfixInstance:
    """One private Postfix: ``local_domain`` delivered locally (its unknown
    users refused at RCPT TO unless ``refuse_unknown`` is off), ``bounce_domain``
    piped to ``argv`` as ``pipe_user``."""

    def __init__(
        self,
        folder: Path,
        *,
        local_domain: str,
        bounce_domain: str,
        argv: str,
        pipe_user: str = "nobody",
        refuse_unknown: bool = True,
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.config = folder / "etc"
        self.queue = folder / "spool"
        self.data = folder / "data"
        self.log = folder / "maillog"
        for path in (self.config, self.queue, self.data):
            path.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data, "postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(folder),
            "myhostname": f"mx.{local_domain}",
            "mydomain": local_domain,
            "mydestination": local_domain,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "alias_maps": "",
            "alias_database": "",
            "transport_maps": f"inline:{{{bounce_domain}=bounceingest:}}",
            "bounceingest_destination_recipient_limit": "1",
            "recipient_delimiter": "+",
            "smtputf8_enable": "no",
            # No DNS here: every domain is resolved by the transport map or is local.
            "disable_dns_lookups": "yes",
            "smtp_host_lookup": "native",
            "delay_warning_time": "0",
            # A pipe that exits 75 (EX_TEMPFAIL) is tried again a second later.
            "bounce_queue_lifetime": "1h",
            "maximal_queue_lifetime": "1h",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "shlib_directory": "/usr/lib/postfix",
        }
        if not refuse_unknown:
            # An empty map: unknown local users are accepted at RCPT TO and
            # bounced afterwards, with a DSN to the envelope sender.
            main["local_recipient_maps"] = ""
        (self.config / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in main.items())
        )
        (self.config / "master.cf").write_text(
            _MASTER.format(listen=f"127.0.0.1:{self.port}", pipe_user=pipe_user, argv=argv)
        )

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        done = self._postfix("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stdout}{done.stderr}{self.log_text()}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"postfix did not listen on {self.port}: {self.log_text()}")

    def stop(self) -> None:
        self._postfix("stop")

    def flush(self) -> None:
        self._postfix("flush")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def smtp_url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
