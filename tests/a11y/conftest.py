"""axe-core in Chromium: what the accessibility tests share.

axe-core is the npm package pinned in package.json (``npm ci``, run by
.ci/setup, puts it in node_modules/). Without it the tests skip saying so, and
.ci/check_skips.py turns that skip into a failure under CI=true.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_page, service_unavailable

AXE_SCRIPT = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0 and 2.1, levels A and AA: the level the European Accessibility Act
# asks of consumer-facing pages (through EN 301 549).
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# axe's "best practice" rules for the page's structure, which WCAG's own
# criteria (1.3.1, 2.4.1, 2.4.6) ask for in words but axe files apart: one main
# landmark, content inside landmarks, headings in order starting with one h1, a
# skip link that leads somewhere.
STRUCTURE_RULES = [
    "heading-order",
    "page-has-heading-one",
    "landmark-one-main",
    "landmark-unique",
    "landmark-no-duplicate-banner",
    "landmark-no-duplicate-main",
    "landmark-banner-is-top-level",
    "landmark-main-is-top-level",
    "region",
    "skip-link",
]
_RUN = """async ([tags, rules]) => {
  const runs = [
    await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]}),
    await axe.run(document, {runOnly: {type: "rule", values: rules}, resultTypes: ["violations"]}),
  ];
  return runs.flatMap((result) => result.violations).map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    targets: v.nodes.map((n) => n.target.join(" ")),
    summary: v.nodes.length ? v.nodes[0].failureSummary : "",
  }));
}"""


@pytest.fixture(scope="session")
def axe_script() -> str:
    if not AXE_SCRIPT.is_file():
        service_unavailable(
            f"axe-core is not installed at {AXE_SCRIPT}: run `npm ci` (.ci/setup does)"
        )
    return AXE_SCRIPT.read_text(encoding="utf-8")


@dataclass
class Axe:
    """Runs axe-core on pages and keeps every violation, named by page."""

    script: str
    found: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def page(self, browser: Any, locale: str = "en-GB", width: int = 1280) -> Any:
        # The strict content security policy forbids injected scripts; only
        # the test's own axe-core is let through, never the pages' own code.
        return new_page(browser, width=width, locale=locale, bypass_csp=True)

    def check(self, page: Any, name: str) -> None:
        """Run axe-core on what ``page`` shows now; remember violations under ``name``."""
        page.wait_for_load_state("load")
        page.add_script_tag(content=self.script)
        violations = page.evaluate(_RUN, [WCAG_TAGS, STRUCTURE_RULES])
        self.checked.append(name)
        for v in violations:
            self.found.append(
                f"{name} ({page.url}): {v['id']} [{v['impact']}] {v['help']}\n"
                f"    targets: {', '.join(v['targets'][:8])}\n"
                f"    {v['summary'].strip().replace(chr(10), ' ')}\n"
                f"    help: {v['helpUrl']}"
            )

    def assert_clean(self) -> None:
        assert self.checked, "no page was checked"
        if self.found:
            pytest.fail(
                f"{len(self.found)} axe-core violation(s) at WCAG 2.1 AA on "
                f"{len(self.checked)} page(s):\n" + "\n".join(self.found),
                pytrace=False,
            )


@pytest.fixture
def axe(axe_script: str) -> Axe:
    return Axe(axe_script)


_LINK = re.compile(r"https?://[^\s<>\"]+")


@pytest.fixture
def mail_links(
    app: Any, stub_worker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], str]]:
    """``mail_links(address, "/confirm/")``: the link in the newest email to
    ``address`` whose URL holds the part. The real mail actor writes the
    emails to a folder (no SMTP_URL), as in development."""
    folder = tmp_path / "mail"
    monkeypatch.setitem(app.config, "MAIL_FOLDER", str(folder))
    monkeypatch.setitem(app.config, "SMTP_URL", None)

    def link(address: str, part: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stub_worker.join("mail", timeout=20_000)
            for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                body = message.get_body(preferencelist=("plain",))
                if address in str(message["To"]) and body is not None:
                    for url in _LINK.findall(body.get_content()):
                        if part in url:
                            return url.rstrip(".,)")
            time.sleep(0.1)
        raise AssertionError(f"no email to {address} with a link to {part}")

    yield link
