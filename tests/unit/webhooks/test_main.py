"""`kafka-twilio webhooks` refuses to start without a token to check signatures with."""

from __future__ import annotations

import pytest

from consumer.errors import SettingsError
from consumer.settings import load_settings
from consumer.webhooks.main import main, tokens


def test_the_receiver_needs_the_auth_token_even_where_sending_uses_an_api_key() -> None:
    api_key = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_API_KEY_SID": "SK" + "0" * 32,
               "TWILIO_API_KEY_SECRET": "s"}  # fmt: skip
    settings = load_settings(environ=api_key)
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN"):
        tokens(settings)


def test_both_tokens_are_accepted_during_a_rotation() -> None:
    settings = load_settings(environ={"TWILIO_AUTH_TOKEN": "new", "TWILIO_AUTH_TOKEN_SECONDARY": "old"})
    assert tokens(settings) == ["new", "old"]


def test_the_command_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    assert "TWILIO_AUTH_TOKEN" in capsys.readouterr().err
