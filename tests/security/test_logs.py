"""No token reaches a log line, even when it is in a URL, a header or an exception's message."""

from __future__ import annotations

import logging
import sys

import pytest

from cpcs.auth import new_token
from cpcs.logs import JsonFormatter, RedactingFormatter, redact
from cpcs_ingest.service import IngestService
from tests.security.conftest import ALERT, SystemFactory, add_alert, bearer


@pytest.mark.parametrize(
    "template",
    [
        "HTTP Request: POST http://x/followup/cgi/upload?hashtag={t}&EventID=1 401",
        "form {{'hashtag': '{t}', 'EventID': 'ivo://Gaia16aye'}}",
        '{{"hashtag": "{t}"}}',
        "headers: Authorization: Bearer {t}",
        "[(b'authorization', b'Bearer {t}')]",
        "token={t}; next",
        "failed for {t}",
    ],
)
def test_redact_removes_token_like_values(template: str) -> None:
    token = new_token()
    line = redact(template.format(t=token))
    assert token not in line and "[redacted]" in line


def test_redact_keeps_ordinary_text() -> None:
    text = "accepted catalogue (sextractor_ascii) for ivo://Gaia16aye; code=invalid_token; 3 tokens"
    assert redact(text) == text
    digest = "ab" * 32
    assert redact(f"stored {digest}") == f"stored {digest}"


def test_a_failed_uploads_logs_do_not_contain_the_token(
    make_system: SystemFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = make_system()
    add_alert(system)
    token, client = system.observer_token, system.client
    caplog.set_level(logging.DEBUG)

    # A bad catalogue with the token in the URL (the test client logs the URL), then in the form.
    bad = {"sexCat": ("a.cat", b"not a catalogue\n")}
    form = {"EventID": ALERT, "outputFormat": "json"}
    in_url = client.post("/followup/cgi/upload", params={"hashtag": token}, data=form, files=bad)
    assert in_url.status_code == 422
    in_form = client.post("/followup/cgi/upload", data={**form, "hashtag": token}, files=bad)
    assert in_form.status_code == 422

    # A server fault whose message carries the token (our bug, logged with its traceback).
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"could not store the upload of hashtag={token} ({token})")

    monkeypatch.setattr(IngestService, "accept", broken)
    crashed = client.post(
        "/api/v1/uploads", data={"alert": ALERT}, files={"file": ("a.cat", b"x")}, headers=bearer(token)
    )
    assert crashed.status_code == 500 and token not in crashed.text and "Traceback" not in crashed.text

    raw = "\n".join(r.getMessage() + str(r.exc_info and r.exc_info[1]) for r in caplog.records)
    assert token in raw  # the records themselves did carry it: the formatters must remove it
    json_lines = [JsonFormatter().format(r) for r in caplog.records]
    text_lines = [RedactingFormatter("%(message)s").format(r) for r in caplog.records]
    assert any("Traceback" in line for line in json_lines)
    for line in json_lines + text_lines:
        assert token not in line


@pytest.mark.parametrize(
    "value", ["x\n2026-01-01 INFO cpcs: forged", "x\r\nforged", "x\u2028forged", "\u202eeya61aiaG"]
)
def test_a_value_cannot_forge_a_text_log_line(value: str) -> None:
    formatter = RedactingFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord("cpcs", logging.INFO, __file__, 1, "accepted catalogue for %s", (value,), None)
    line = formatter.format(record)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\u202e" not in line
    assert line.startswith("INFO cpcs: accepted catalogue for x") or "\\u202e" in line


def test_a_traceback_keeps_its_lines_but_its_message_is_escaped() -> None:
    formatter = RedactingFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("cpcs", logging.ERROR, __file__, 1, "failed %s", ("a\nb",), sys.exc_info())
    first, *rest = formatter.format(record).split("\n")
    assert first == "ERROR failed a\\nb"
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: boom"
