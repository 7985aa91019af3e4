"""Every ```python block of the README and of docs/data-types.md runs as written (STYLE: the README snippet
is a test)."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_examples():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index):
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})


DATA_TYPES = (Path(__file__).resolve().parents[1] / "docs" / "data-types.md").read_text()
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DATA_TYPES, flags=re.S)


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_data_types_doc_block_runs(index):
    assert len(DOC_BLOCKS) == 3
    # a module of its own, as a user's file would be (the point type's network is imported by name)
    import sys
    import types

    module = types.ModuleType(f"docs_data_types_{index}")
    sys.modules[module.__name__] = module
    exec(compile(DOC_BLOCKS[index], f"docs/data-types.md[python block {index}]", "exec"), module.__dict__)
