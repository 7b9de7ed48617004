"""The CLI's shape: each command module owns its Typer app, `main` only assembles them (no import circle), and
the settings are read from the environment in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import ledger.cli.main as main

CLI = Path(main.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_command_modules_never_import_main_and_main_assembles_them_all():
    modules = sorted(CLI.glob("*_commands.py"))
    assert modules
    for path in modules:
        assert "ledger.cli.main" not in _imports(path), path.name
    assert {m.__name__.rsplit(".", 1)[1] for m in main.MODULES} == {p.stem for p in modules}


def test_only_the_runtime_reads_the_settings():
    for path in CLI.glob("*.py"):
        text = path.read_text()
        if path.name != "runtime.py":
            assert "Settings.from_env" not in text and "LEDGER_" not in text.split("environ", 1)[-1][:20], path.name


def test_nothing_outside_the_cli_imports_it():
    root = CLI.parent
    for path in root.rglob("*.py"):
        if CLI in path.parents or path.parent == CLI:
            continue
        assert not any(name.startswith("ledger.cli") for name in _imports(path)), path
