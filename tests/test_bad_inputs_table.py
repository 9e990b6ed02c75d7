"""README's table of bad inputs is exactly what tests/bad_inputs.py generates from the tested cases."""

from pathlib import Path

from tests import bad_inputs

REPO = Path(__file__).resolve().parent.parent


def test_readme_table_is_the_tested_cases():
    readme = (REPO / bad_inputs.README).read_text()
    assert bad_inputs.readme_block() in readme, (
        "README.md's bad-input table differs from the tested cases; replace it with the output of python -m tests.bad_inputs"
    )


def test_case_ids_are_unique():
    for _, cases in bad_inputs.SECTIONS:
        ids = [case.id for case in cases]
        assert len(ids) == len(set(ids)), ids
