"""Tokens: stored as digests, compared in constant time, repeated failures slowed down everywhere."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import event, select

from cpcs.auth import new_token
from cpcs.db.models import Token
from cpcs.domain import accounts
from cpcs.security import AuthThrottle, TooManyAttempts
from cpcs.settings import Settings
from tests.security.conftest import ALERT, SystemFactory, add_alert, bearer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_stored_only_as_sha256_digests(make_system: SystemFactory) -> None:
    system = make_system()
    with system.context.db.transaction() as session:
        stored = set(session.scalars(select(Token.digest)).all())
    for token in (system.admin_token, system.observer_token, system.other_token):
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_the_found_row_is_compared_in_constant_time(
    make_system: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = make_system()
    calls: list[tuple[str, str]] = []

    def recording(a: str, b: str) -> bool:
        calls.append((a, b))
        return False  # pretend the row did not match: the token must then be refused

    monkeypatch.setattr(accounts, "digests_match", recording)
    response = system.client.get(
        "/api/v1/points", params={"mine": True}, headers=bearer(system.observer_token)
    )
    assert response.status_code == 401
    assert calls == [(hashlib.sha256(system.observer_token.encode()).hexdigest(),) * 2]


def test_throttle_counts_per_token_and_per_client_in_a_sliding_window() -> None:
    clock = Clock()
    throttle = AuthThrottle(window_s=60, per_token=3, per_client=5, clock=clock)
    for _ in range(3):
        throttle.check("10.0.0.1", "AAAAAAAAwrong1")
        throttle.failed("10.0.0.1", "AAAAAAAAwrong1")
    with pytest.raises(TooManyAttempts) as blocked:
        throttle.check("10.0.0.1", "AAAAAAAAwrong1")
    assert blocked.value.http_status == 429 and blocked.value.retry_after_s == 60
    throttle.check("10.0.0.2", "AAAAAAAAwrong1")  # another client is not affected
    throttle.check("10.0.0.1", "AAAAAAAAsame-prefix")  # nor another token of this client

    clock.now += 30
    throttle.failed("10.0.0.1", "CCCCCCCCx")
    throttle.failed("10.0.0.1", "DDDDDDDDx")  # the fifth failure of this client: still 401
    with pytest.raises(TooManyAttempts):  # the sixth: 429
        throttle.failed("10.0.0.1", "DDDDDDDDy")
    throttle.check("10.0.0.1", "EEEEEEEEnever-seen")  # yet a token not proven wrong is still tried
    clock.now += 30.5  # the first three left the window: that token may be tried again
    throttle.check("10.0.0.1", "AAAAAAAAwrong1")
    throttle.failed("10.0.0.1", "FFFFFFFFx")  # 4 failures of the client left in the window


def test_a_success_forgets_its_tokens_failures() -> None:
    clock = Clock()
    throttle = AuthThrottle(window_s=60, per_token=2, per_client=100, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1", "GOODGOODtoken")  # e.g. revoked, then restored by an admin
    with pytest.raises(TooManyAttempts):
        throttle.check("10.0.0.1", "GOODGOODtoken")
    throttle.succeeded("10.0.0.1", "GOODGOODtoken")
    throttle.check("10.0.0.1", "GOODGOODtoken")


def test_memory_is_bounded() -> None:
    clock = Clock()
    throttle = AuthThrottle(window_s=60, per_token=3, per_client=1000, max_tracked=100, clock=clock)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 250}.{n % 250}", f"{n:08d}")
    assert len(throttle._failures) <= 100


def test_bearer_failures_get_429_but_correct_tokens_still_work(make_system: SystemFactory) -> None:
    system = make_system(auth_failures_per_token=3, auth_failures_per_client=30)
    client, wrong = system.client, "WRONGWRONG-" + new_token()
    answers = [client.get("/api/v1/points", headers=bearer(wrong)).status_code for _ in range(5)]
    assert answers == [401, 401, 401, 429, 429]
    refused = client.get("/api/v1/points", headers=bearer(wrong))
    assert refused.json()["error"] == "too_many_failed_tokens"
    assert 50 <= int(refused.headers["retry-after"]) <= 60
    # The observer's own token, from the same address, is answered as usual.
    assert client.get("/api/v1/points", headers=bearer(system.observer_token)).status_code == 200
    # 30 different wrong tokens from this address: the later ones get 429 ...
    answers = [
        client.get("/api/v1/points", headers=bearer(f"guess{n:03d}-{new_token()}")).status_code
        for n in range(30)
    ]
    assert answers[:27] == [401] * 27 and answers[27:] == [429] * 3
    # ... but every valid token from it still works, one never used from here included.
    assert client.get("/api/v1/points", headers=bearer(system.other_token)).status_code == 200
    assert client.get("/api/v1/points", headers=bearer(system.admin_token)).status_code == 200
    assert client.get("/api/v1/points", headers=bearer(system.observer_token)).status_code == 200


def test_refused_attempts_do_not_reach_the_database(make_system: SystemFactory) -> None:
    system = make_system(auth_failures_per_token=2)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    wrong = "nope-nope-" + new_token()
    for _ in range(2):
        system.client.get("/api/v1/points", headers=bearer(wrong))
    event.listen(system.context.db.engine, "before_cursor_execute", record)
    try:
        assert system.client.get("/api/v1/points", headers=bearer(wrong)).status_code == 429
    finally:
        event.remove(system.context.db.engine, "before_cursor_execute", record)
    assert not any("tokens" in s for s in statements), statements


@pytest.mark.parametrize("where", ["query", "legacy-form", "legacy-upload-form", "legacy-upload-query"])
def test_every_way_of_sending_a_token_is_throttled(make_system: SystemFactory, where: str) -> None:
    system = make_system(auth_failures_per_token=2, auth_failures_per_client=100)
    client, wrong = system.client, "bad-" + new_token()
    add_alert(system)

    def attempt() -> int:
        if where == "query":
            return client.get("/api/v1/points", params={"hashtag": wrong}).status_code
        if where == "legacy-form":
            form = {"ivorn": "ivo://X", "ra": "1", "dec": "2", "hashtag": wrong}
            return client.post("/followup/newevent", data=form).status_code
        form = {"EventID": ALERT, "outputFormat": "json"}
        params = {}
        if where == "legacy-upload-form":
            form["hashtag"] = wrong
        else:
            params["hashtag"] = wrong
        files = {"sexCat": ("a.cat", b"# 1 NUMBER\n1\n")}
        return client.post("/followup/cgi/upload", data=form, files=files, params=params).status_code

    assert [attempt() for _ in range(3)] == [401, 401, 429]


def test_tokens_outside_http_are_not_throttled(make_system: SystemFactory) -> None:
    """The CLI and the workers check tokens without a client: no counter applies."""
    system = make_system(auth_failures_per_token=1)
    with system.context.db.transaction() as session:
        for _ in range(3):
            with pytest.raises(accounts.AuthenticationError):
                accounts.authenticate(session, "wrong-token")


def test_the_admin_secret_is_never_shown_by_the_settings() -> None:
    secret = new_token()
    settings = Settings(admin_token=secret)
    assert secret not in repr(settings) and secret not in str(settings.model_dump())


def test_every_endpoint_reads_the_token_the_same_way() -> None:
    from starlette.requests import Request

    from cpcs.web import token_from_request

    def request(headers: dict[str, str], query: str = "") -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return Request(
            {"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": query.encode()}
        )

    both = request({"Authorization": "Bearer header-token"}, "hashtag=query-token")
    assert token_from_request(both, "form-token") == "header-token"  # the header first
    assert token_from_request(request({}, "hashtag=query-token"), "form-token") == "form-token"
    assert token_from_request(request({}, "hashtag=query-token")) == "query-token"
    assert token_from_request(request({"Authorization": "Basic abc"})) is None
    assert token_from_request(request({"Authorization": "bearer  spaced "})) == "spaced"
    assert token_from_request(request({"Authorization": "Bearer "}), "form-token") == "form-token"
