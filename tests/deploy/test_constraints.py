"""constraints.txt pins every dependency pyproject names, at a release pyproject allows."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared.extend(extra)
    return [Requirement(text) for text in declared]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    missing, outside = [], []
    for requirement in _declared():
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            missing.append(requirement.name)
        elif not requirement.specifier.contains(pinned, prereleases=True):
            outside.append(f"{requirement.name}=={pinned} not in {requirement.specifier}")
    assert not missing, f"not pinned in constraints.txt (run 'make lock'): {missing}"
    assert not outside, f"pins outside pyproject's ranges (run 'make lock'): {outside}"


def test_extras_of_declared_dependencies_are_pinned_too() -> None:
    # psycopg[binary] installs psycopg-binary: an unpinned extra would float.
    pins = _pins()
    assert canonicalize_name("psycopg-binary") in pins


def test_make_install_uses_the_constraints_and_its_stamp_follows_them() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    stamp = next(line for line in makefile.splitlines() if line.startswith("STAMP :="))
    assert "constraints.txt" in stamp
