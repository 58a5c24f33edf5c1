"""docs/SECURITY.md stays true: every test it names exists (file, function, token case)."""

import ast
import re
from pathlib import Path

import pytest

from tests.unit.token_cases import BAD_TOKENS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "SECURITY.md").read_text()
TEST_REF = re.compile(r"`((?:unit|system)/[\w/]+\.py)(?:::(\w+)(?:\[(\w+)\])?)?")
CASE_REF = re.compile(r"`\.\.\.\[(\w+)\]`")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


REFERENCES = sorted(set(TEST_REF.findall(DOC)))
CASES = sorted(set(CASE_REF.findall(DOC)) | {case for _, _, case in REFERENCES if case})


@pytest.mark.parametrize(("file", "test", "case"), REFERENCES)
def test_each_named_test_exists(file, test, case):
    path = ROOT / "tests" / file
    assert path.exists(), file
    if test:
        assert test in defined_tests(path), f"{file}::{test}"


@pytest.mark.parametrize("case", CASES)
def test_each_named_token_case_exists(case):
    assert case in {bad.id for bad in BAD_TOKENS}


def test_the_document_names_tests_at_all():
    assert len(REFERENCES) > 30
    assert len(CASES) > 8
