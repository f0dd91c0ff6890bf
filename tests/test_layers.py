"""Layering: the import contracts in pyproject.toml hold, checked by import-linter and by hand."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "ingest_server" / "web"
PLUGIN = ROOT / "pytest_testoqa"
LINT_TIMEOUT = 300
IMPORT_TIMEOUT = 60
SUMMARY = re.compile(r"Contracts: (\d+) kept, (\d+) broken\.")
LAYERS = [
    "ingest_server.web",
    "ingest_server.services",
    "ingest_server.repositories",
    "ingest_server.db",
]


def contracts() -> list[dict[str, Any]]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        config = tomllib.load(file)
    found: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return found


def imported_modules(path: Path) -> set[str]:
    """Return every absolute module name the file imports, at any depth of the file."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def test_layers_contract_declared() -> None:
    layered = [c for c in contracts() if c["type"] == "layers"]
    assert len(layered) == 1
    assert layered[0]["layers"] == LAYERS


def test_plugin_contract_declared() -> None:
    forbidden = [
        c
        for c in contracts()
        if c["type"] == "forbidden" and c["source_modules"] == ["pytest_testoqa"]
    ]
    assert len(forbidden) == 1
    assert "ingest_server" in forbidden[0]["forbidden_modules"]


def test_web_contract_declared() -> None:
    forbidden = [
        c
        for c in contracts()
        if c["type"] == "forbidden" and c["source_modules"] == ["ingest_server.web"]
    ]
    assert len(forbidden) == 1
    assert "sqlalchemy" in forbidden[0]["forbidden_modules"]


def test_import_contracts_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), f"import-linter is not installed next to {sys.executable}"

    # --no-cache keeps the check from writing a cache directory into the repository.
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    summary = SUMMARY.search(output)
    assert summary is not None, output
    assert int(summary[1]) == len(contracts()), output
    assert int(summary[2]) == 0, output
    for contract in contracts():
        assert f"{contract['name']} KEPT" in output, contract["name"]


def test_web_source_lacks_sqlalchemy() -> None:
    sources = sorted(
        path for path in WEB.rglob("*") if path.is_file() and "__pycache__" not in path.parts
    )
    assert sources, f"no files under {WEB}"
    for path in sources:
        text = path.read_text(errors="replace")
        assert "import sqlalchemy" not in text, path
        assert "from sqlalchemy" not in text, path


def test_web_imports_no_lower_layers() -> None:
    """Handlers reach data only through services: no SQLAlchemy, Alembic, repositories or db."""
    forbidden = ("sqlalchemy", "alembic", "ingest_server.repositories", "ingest_server.db")
    for path in sorted(WEB.rglob("*.py")):
        for module in imported_modules(path):
            assert not any(is_within(module, name) for name in forbidden), f"{path}: {module}"


def test_plugin_source_lacks_server() -> None:
    paths = sorted(PLUGIN.rglob("*.py"))
    assert paths, f"no Python files under {PLUGIN}"
    for path in paths:
        for module in imported_modules(path):
            assert not is_within(module, "ingest_server"), f"{path}: {module}"


def test_plugin_import_loads_no_server() -> None:
    """Importing every plugin module in a fresh interpreter loads no ingest_server module."""
    script = (
        "import pkgutil, sys, pytest_testoqa\n"
        "for info in pkgutil.walk_packages(pytest_testoqa.__path__, 'pytest_testoqa.'):\n"
        "    __import__(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ingest_server'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
