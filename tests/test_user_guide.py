"""The user guide (docs/guide/) has a page for every command, made from real runs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from vmemmap.cli import main

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide"


def _script():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("make_user_guide", ROOT / "scripts" / "make_user_guide.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_the_generator_plans_a_page_for_every_command() -> None:
    planned = {p.name for p in _script().PAGES}
    assert set(main.commands) <= planned, set(main.commands) - planned


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_a_page_with_its_help_and_real_output(name: str) -> None:
    page = GUIDE / f"{name}.md"
    assert page.exists(), f"run: python3 scripts/make_user_guide.py {name}"
    text = page.read_text()
    assert text.startswith(f"# `vmemmap {name}`")
    assert "## Help" in text and f"Usage: vmemmap {name}" in text
    # at least one example ran (an output block other than the help) or says why it could not
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2 or "Not run when this page was made" in text
    assert "Traceback" not in text


def test_index_links_every_page() -> None:
    index = (GUIDE / "README.md").read_text()
    for name in main.commands:
        assert f"({name}.md)" in index
