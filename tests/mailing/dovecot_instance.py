"""A real IMAP server: Debian's Dovecot, a private instance for one test.

Its own configuration, run and mail folders under a temporary folder, IMAP
on 127.0.0.1 and a free port, one user with a fixed password; nothing of
the machine's own Dovecot (if any) is read or touched. Starting it needs
root, as Dovecot's master does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-password"

_CONFIG = """\
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
instance_name = dovecot-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{folder}/mail/%u
first_valid_uid = 1
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def why_unavailable() -> str | None:
    if not os.path.exists(DOVECOT):
        return "dovecot is not installed (apt-get install dovecot-imapd; .ci/setup does it as root)"
    if os.geteuid() != 0:
        return "dovecot needs root to start its master process"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DovecotInstance:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.config = folder / "dovecot.conf"
        nobody = pwd.getpwnam("nobody")
        for name in ("run", "state", "mail", "home"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        for name in ("mail", "home"):
            shutil.chown(folder / name, nobody.pw_uid, nobody.pw_gid)
        self.config.write_text(
            _CONFIG.format(
                folder=folder,
                port=self.port,
                password=PASSWORD,
                uid=nobody.pw_uid,
                gid=nobody.pw_gid,
            )
        )

    def start(self) -> None:
        # Its daemon keeps the standard streams it was given: none, so nothing waits on them.
        done = subprocess.run(  # Debian's dovecot, our own arguments
            [DOVECOT, "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {self.log_text()}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log_text()}")

    def stop(self) -> None:
        subprocess.run(
            [DOVECOT, "-c", str(self.config), "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )

    def log_text(self) -> str:
        log = self.folder / "dovecot.log"
        return log.read_text(errors="replace") if log.exists() else ""

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"
