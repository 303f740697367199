"""docs/SECURITY.md cannot rot: every test it cites exists, every ASVS requirement the issue names
has exactly one row, the coverage line adds up, and its numbers are the suite's."""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import cache
from pathlib import Path

from hypothesis import settings

from .conftest import FUZZ_PROFILES
from .corpus import CASES

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "SECURITY.md").read_text(encoding="utf-8")
CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
CITED_CASE = re.compile(r"`corpus:([\w-]+)`")
ROW = re.compile(r"^\| (\d+\.\d+\.\d+) \| (.+?) \| (met \(config\)|met|partial|app|N/A) \| (.+) \|$")

# The ASVS 5.0 requirements issue 5 names (ids from OWASP/ASVS 5.0/en): V7 7.1.1 to 7.6.2, V9, V3.3,
# V3.5, 10.4.5/10.4.8/10.4.9, 11.5.1, 16.2.5, 16.3.1.
REQUIRED = {
    *(f"7.1.{i}" for i in range(1, 4)),
    *(f"7.2.{i}" for i in range(1, 5)),
    *(f"7.3.{i}" for i in range(1, 3)),
    *(f"7.4.{i}" for i in range(1, 6)),
    *(f"7.5.{i}" for i in range(1, 4)),
    *(f"7.6.{i}" for i in range(1, 3)),
    *(f"9.1.{i}" for i in range(1, 4)),
    *(f"9.2.{i}" for i in range(1, 5)),
    *(f"3.3.{i}" for i in range(1, 6)),
    *(f"3.5.{i}" for i in range(1, 8)),
    "10.4.5", "10.4.8", "10.4.9", "11.5.1", "16.2.5", "16.3.1",
}


@cache
def _functions(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(
        n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    )


def _rows() -> list[tuple[str, str, str, str]]:
    return [m.groups() for line in DOC.splitlines() if (m := ROW.match(line))]  # type: ignore[misc]


def test_every_cited_test_exists() -> None:
    cited = CITED_TEST.findall(DOC)
    assert len(cited) > 50
    missing = [f"{p}::{name}" for p, name in cited if not (ROOT / p).is_file() or name not in _functions(p)]
    assert not missing, "docs/SECURITY.md cites tests that do not exist:\n" + "\n".join(missing)
    cases = {c.id for c in CASES}
    unknown = [c for c in CITED_CASE.findall(DOC) if c not in cases]
    assert not unknown, f"docs/SECURITY.md cites corpus cases that do not exist: {unknown}"


def test_every_required_asvs_requirement_has_exactly_one_row() -> None:
    ids = Counter(row[0] for row in _rows())
    assert not [i for i, n in ids.items() if n > 1], ids
    assert set(ids) == REQUIRED, (sorted(REQUIRED - set(ids)), sorted(set(ids) - REQUIRED))


def test_every_row_is_proved_by_a_test_or_says_why_not() -> None:
    for asvs_id, _, status, proof in _rows():
        if status == "N/A":
            assert len(proof.split()) >= 5, f"{asvs_id}: say why it does not apply"
        else:
            cited = CITED_TEST.search(proof) or CITED_CASE.search(proof)
            assert cited, f"{asvs_id}: cite the test that proves it"


def test_the_coverage_line_adds_up() -> None:
    counts = Counter(status for _, _, status, _ in _rows())
    line = (
        f"Coverage: {len(REQUIRED)} requirements — {counts['met']} met, "
        f"{counts['met (config)']} met (config), "
        f"{counts['app']} app, {counts['partial']} partial, {counts['N/A']} N/A."
    )
    assert line in " ".join(DOC.split()), line


def test_the_documented_numbers_are_the_suites() -> None:
    fuzz_source = (ROOT / "tests" / "security" / "test_fuzz.py").read_text()
    per_strategy = fuzz_source.count('@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])')
    properties = fuzz_source.count("@fuzz_settings") - per_strategy + 3 * per_strategy
    assert properties == 16 and f"{properties} properties" in DOC
    for profile, label in (("", "default"), ("slow", "`slow`"), ("deep", "`deep`")):
        n = settings.get_profile(FUZZ_PROFILES[profile]).max_examples
        total = f"{n * properties:,}".replace(",", " ")
        assert total in DOC, (label, total)
    pairs = sum(len(c.strategies) for c in CASES)
    assert f"{len(CASES)} named cases, {pairs} (case, strategy) requests" in DOC
    load_doc = (ROOT / "tests" / "security" / "test_load.py").read_text()
    command = "KEYFOB_SLOW=1 .venv/bin/python -m pytest tests/security/test_load.py -m slow"
    assert command in DOC and command in load_doc
    assert 'export KEYFOB_FUZZ_PROFILE="${KEYFOB_FUZZ_PROFILE:-slow}"' in (ROOT / ".ci" / "run").read_text()
