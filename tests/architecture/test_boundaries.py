"""Who may import whom: the library imports no service, no service imports another, and only the
composition root (``cpcs_system``) puts them together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "cpcs_ingest": ROOT / "services/ingest/cpcs_ingest",
    "cpcs_reduce": ROOT / "services/reduce/cpcs_reduce",
    "cpcs_calibrate": ROOT / "services/calibrate/cpcs_calibrate",
    "cpcs_catalog_cache": ROOT / "services/catalog-cache/cpcs_catalog_cache",
    "cpcs_api": ROOT / "services/api/cpcs_api",
}
COMPOSITION_ROOT = "cpcs_system"
LIBRARY = ROOT / "shared/cpcs"


def _imported_modules(folder: Path) -> dict[str, set[str]]:
    """Modules imported by each non-test module under ``folder`` (dotted names as written)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        if "tests" in path.relative_to(folder).parts:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def _imported_packages(folder: Path) -> dict[str, set[str]]:
    """Top-level packages imported by each non-test module under ``folder``."""
    return {
        module: {name.split(".")[0] for name in names} for module, names in _imported_modules(folder).items()
    }


def test_the_library_imports_no_service_and_not_the_composition_root() -> None:
    forbidden = {*SERVICES, COMPOSITION_ROOT}
    offenders = {
        module: sorted(names & forbidden)
        for module, names in _imported_packages(LIBRARY).items()
        if names & forbidden
    }
    assert offenders == {}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_imports_only_the_library_and_itself(service: str) -> None:
    forbidden = ({*SERVICES} - {service}) | {COMPOSITION_ROOT}
    offenders = {
        module: sorted(names & forbidden)
        for module, names in _imported_packages(SERVICES[service]).items()
        if names & forbidden
    }
    assert offenders == {}


def test_the_boundary_check_sees_imports() -> None:
    """The walk finds the composition root's service imports (so an empty result above means something)."""
    imported = set().union(*_imported_packages(ROOT / "services/system/cpcs_system").values())
    assert {"cpcs_ingest", "cpcs_api", "cpcs_reduce", "cpcs_calibrate", "cpcs_catalog_cache"} <= imported


def test_only_tests_and_benchmarks_use_the_test_infrastructure() -> None:
    """The demo and the library make their data with ``cpcs.simulation``, never ``cpcs.testing``."""
    folders = [LIBRARY, ROOT / "services/system/cpcs_system", *SERVICES.values()]
    offenders = {
        module: sorted(name for name in names if name == "cpcs.testing" or name.startswith("cpcs.testing."))
        for folder in folders
        for module, names in _imported_modules(folder).items()
        if not module.startswith("shared/cpcs/testing/")
        and any(name == "cpcs.testing" or name.startswith("cpcs.testing.") for name in names)
    }
    assert offenders == {}
