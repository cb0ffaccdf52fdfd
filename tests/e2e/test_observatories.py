"""The observatory lists (REST and legacy) show telescopes, not the first admin's placeholder."""

from __future__ import annotations

from tests.conftest import System


def test_the_admin_placeholder_is_not_an_observatory(embedded: System) -> None:
    rest = embedded.client.get("/api/v1/observatories")
    legacy = embedded.client.get("/followup/observatories")
    assert rest.status_code == 200 and legacy.status_code == 200
    names = [site["name"] for site in rest.json()]
    assert names == ["Ostrowik 0.6m", "pt5m La Palma"]
    assert "admin" not in legacy.text
