"""Layering rules from style.md, checked on the source so they cannot quietly erode."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import repo_root


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((repo_root() / folder).rglob("*.py"))


def test_moderation_never_imports_the_web_layer() -> None:
    for path in _modules("moderation"):
        assert not {m for m in _imports(path) if m.startswith(("portal.web", "starlette"))}, path


def test_web_handlers_never_import_a_database_driver() -> None:
    for path in _modules("portal/web"):
        bad = {m for m in _imports(path) if m.split(".")[0] in {"psycopg", "sqlite3"}}
        assert not bad, f"{path}: {bad}"


def test_domain_modules_do_not_know_about_http() -> None:
    domain = [
        "ratings",
        "ledger",
        "merkle",
        "canonical",
        "rollups",
        "accounts",
        "directory",
        "credentials",
        "regions",
        "audit",
    ]
    for name in domain:
        imports = _imports(repo_root() / "portal" / f"{name}.py")
        assert not {m for m in imports if m.startswith(("starlette", "portal.web"))}, name


def test_only_ratings_py_inserts_ratings() -> None:
    """Design: one path for every rating. Nothing else writes the ratings table."""
    for path in _modules("portal"):
        if path.name == "ratings.py" or "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert "Rating.__table__.insert" not in text, path
        assert "INSERT INTO ratings" not in text.upper().replace("  ", " "), path
