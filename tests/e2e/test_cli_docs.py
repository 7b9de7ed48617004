"""docs/cli.md is what docs/gen_cli.py produces: the page of each command's output cannot drift from the CLI."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # every documented command run as a process
def test_the_cli_page_is_what_the_script_produces():
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    produced = module.generate()
    assert produced == (ROOT / "docs" / "cli.md").read_text(), \
        "docs/cli.md differs from the CLI's output: run `python docs/gen_cli.py` and commit the page"
    for section in ("## Trace an invoice", "## The quarantine, a page at a time", "## Verify the store"):
        assert section in produced
