"""X-Forwarded-For names the client only when a configured proxy sends it (served by uvicorn for real)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from cpcs.auth import new_token
from cpcs.settings import Settings
from cpcs_system.launcher import http_server_options
from tests.security.conftest import LiveServer, SystemFactory, bearer


def attempts(server: LiveServer, token: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return [
            client.get("/api/v1/points", headers={**bearer(token), "X-Forwarded-For": address}).status_code
            for address in forwarded_for
        ]


def test_a_rotating_forwarded_for_does_not_escape_the_throttle(make_system: SystemFactory) -> None:
    system = make_system(auth_failures_per_token=3, auth_failures_per_client=5)
    assert system.context.settings.trusted_proxy_list == ()  # the default: no proxy is trusted
    wrong = "WRONG-" + new_token()
    with LiveServer(system.assembly.app, **http_server_options(system.context.settings)) as server:
        rotating = [f"198.51.100.{n}" for n in range(8)]
        assert attempts(server, wrong, rotating) == [401, 401, 401] + [429] * 5
        guesses = [f"guess{n}-{new_token()}" for n in range(4)]
        answers = [attempts(server, guess, [f"203.0.113.{n}"])[0] for n, guess in enumerate(guesses)]
        assert answers == [401, 401, 429, 429]  # 3 + 2 = 5 failures of this peer, then 429
        assert attempts(server, system.observer_token, ["192.0.2.1"]) == [200]


def test_behind_a_configured_proxy_forwarded_clients_are_distinct(make_system: SystemFactory) -> None:
    system = make_system(auth_failures_per_token=3, auth_failures_per_client=5, trusted_proxies="127.0.0.0/8")
    wrong = "WRONG-" + new_token()
    with LiveServer(system.assembly.app, **http_server_options(system.context.settings)) as server:
        assert attempts(server, wrong, ["198.51.100.7"] * 4) == [401, 401, 401, 429]
        assert attempts(server, wrong, ["198.51.100.8"] * 2) == [401, 401]  # another client
        # Prepending an address does not make 198.51.100.7 someone else: the proxy's entry counts.
        assert attempts(server, wrong, ["198.51.100.9, 198.51.100.7"]) == [429]
        guesses = [f"guess{n}-{new_token()}" for n in range(6)]
        answers = [attempts(server, guess, ["198.51.100.7"])[0] for guess in guesses]
        assert answers == [401, 401, 429, 429, 429, 429]  # past 5 failures of that client
        # Its valid tokens still work, and other clients behind the proxy are untouched.
        assert attempts(server, system.other_token, ["198.51.100.7"]) == [200]
        assert attempts(server, f"fresh-{new_token()}", ["198.51.100.10"]) == [401]


@pytest.mark.parametrize("value", ["*", "gateway", "10.0.0.0/33"])
def test_trusted_proxies_must_be_addresses_or_networks(value: str) -> None:
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies=value)


def test_the_server_trusts_exactly_the_configured_proxies() -> None:
    assert http_server_options(Settings())["proxy_headers"] is False
    options = http_server_options(Settings(trusted_proxies="10.0.0.5, 172.28.0.0/24"))
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.0.0.5", "172.28.0.0/24"]
