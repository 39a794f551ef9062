"""The repository stands on its own: what the code and docs cite is in it, and true.

docs/rules.md is the list of rules the code cites ("R11", "docs/rules.md X9");
docs/architecture.md names the rooms. A rename or a deleted test must fail
here rather than leave a page pointing at nothing.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAPS = ("docs/rules.md", "docs/architecture.md")
# Documents outside the repository that code and docs once cited. Spelled in
# pieces so that this file does not cite them itself.
OUTSIDE = ("DESIGN" + ".md", "POLICIES" + ".md", "STYLE" + ".md", "reference/" + "policies")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    keep = {".py", ".md", ".toml", ".html", ".txt", ".cfg", ".ini", ""}
    return [ROOT / name for name in listed if Path(name).suffix in keep and (ROOT / name).is_file()]


def _defined_rule_ids() -> set[str]:
    text = (ROOT / "docs/rules.md").read_text()
    return set(re.findall(r"^### ([RX]\d+)\.", text, flags=re.MULTILINE))


def test_nothing_cites_a_document_outside_the_repository() -> None:
    citing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _tracked_text_files()
        for name in OUTSIDE
        if name in path.read_text(errors="replace")
    ]
    assert citing == []


def test_every_rule_cited_in_code_and_docs_is_defined_in_docs_rules() -> None:
    defined = _defined_rule_ids()
    assert {f"R{n}" for n in range(1, 26)} <= defined
    cited: dict[str, set[str]] = {}
    for path in _tracked_text_files():
        text = path.read_text(errors="replace")
        # R-numbers stand alone (R11, R13-R18); X-numbers are cited with the page.
        found = set(re.findall(r"(?<![\w-])(R\d{1,2})(?![\w])", text))
        found |= set(re.findall(r"docs/rules\.md,? (X\d+)", text))
        for rule in found - defined:
            cited.setdefault(rule, set()).add(str(path.relative_to(ROOT)))
    assert cited == {}


def _cited_code(page: str) -> set[str]:
    text = (ROOT / page).read_text()
    return set(re.findall(r"`((?:kernel|crm|consent|mailing)(?:\.\w+)+)`", text))


def _cited_tests(page: str) -> set[str]:
    text = (ROOT / page).read_text()
    return set(re.findall(r"`(tests/[\w/]+\.py(?:::\w+)?)", text))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("page", MAPS)
def test_every_function_a_page_names_exists(page: str) -> None:
    missing = sorted(name for name in _cited_code(page) if not _resolves(name))
    assert missing == []


@pytest.mark.parametrize("page", MAPS)
def test_every_test_a_page_names_exists(page: str) -> None:
    missing = []
    for cited in _cited_tests(page):
        path, _, name = cited.partition("::")
        file = ROOT / path
        if not file.is_file() or (name and f"def {name}(" not in file.read_text()):
            missing.append(cited)
    assert sorted(missing) == []
