"""The mutant list of ``python -m benchmarks.mutants`` (run by hand) stays usable: every mutant's old
text occurs exactly once in its file (else the code moved and the mutant must move with it), its
tests exist, and docs/testing.md lists it. Running the mutants is not done here (minutes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import mutants

ROOT = Path(__file__).resolve().parent.parent


def test_every_mutant_applies_exactly_once():
    mutants.check_applicable(ROOT)
    names = [m.name for m in mutants.MUTANTS]
    assert len(set(names)) == len(names)
    for m in mutants.MUTANTS:
        assert m.old != m.new
        for test in m.tests:
            assert (ROOT / test.split("::")[0]).is_file(), (m.name, test)
            if "::" in test:
                path, func = test.split("::")[:2]
                assert f"def {func}(" in (ROOT / path).read_text(), (m.name, test)


def test_docs_list_every_mutant():
    doc = (ROOT / "docs" / "testing.md").read_text()
    missing = [m.name for m in mutants.MUTANTS if f"`{m.name}`" not in doc]
    assert not missing, f"docs/testing.md does not list {missing}"


def test_a_moved_text_fails_loudly():
    m = mutants.MUTANTS[0]
    with pytest.raises(ValueError, match="occurs 0 times"):
        mutants.mutated("nothing here", m)
    with pytest.raises(ValueError, match="occurs 2 times"):
        mutants.mutated(m.old + m.old, m)
