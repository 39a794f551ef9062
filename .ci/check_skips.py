"""Under CI=true, a test skipped for a missing service is a failure."""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET

SERVICES = re.compile(
    r"postgres|redis|rabbit|chromium|smtp|postfix|imap|dovecot|flufl-samples|axe", re.IGNORECASE
)


def main(report: str) -> int:
    skipped = [
        (case.get("classname"), case.get("name"), skip.get("message", ""))
        for case in ET.parse(report).iter("testcase")  # noqa: S314 - our own pytest report
        for skip in case.findall("skipped")
    ]
    for name in skipped:
        print(f"skipped: {name[0]}::{name[1]}: {name[2]}")
    if os.environ.get("CI", "").lower() != "true":
        return 0
    missing = [s for s in skipped if SERVICES.search(s[2])]
    if missing:
        print(f"CI=true: {len(missing)} test(s) skipped for a missing service", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
