"""Settings are validated once, every problem named by its variable, secrets never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.errors import SettingsError
from consumer.settings import load_settings

SID = "AC" + "a" * 32
KEY = "SK" + "b" * 32


def test_defaults_need_no_environment_at_all() -> None:
    s = load_settings(environ={})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka.topics == ["segment-events"]
    assert not s.twilio.configured
    assert s.twilio.api_base_url == "https://api.twilio.com"


def test_every_problem_is_reported_at_once_naming_the_variable() -> None:
    env = {"TWILIO_ACCOUNT_SID": "AC123", "CONSUMER_MAX_IN_FLIGHT": "0", "KAFKA_AUTO_OFFSET_RESET": "middle"}
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env)
    text = str(info.value)
    assert "TWILIO_ACCOUNT_SID: Value error, must be AC followed by 32 hex characters" in text
    assert "CONSUMER_MAX_IN_FLIGHT: Input should be greater than or equal to 1" in text
    assert "KAFKA_AUTO_OFFSET_RESET" in text


def test_the_process_environment_does_not_leak_into_an_explicit_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_GROUP_ID", "from-the-process")
    assert load_settings(environ={}).kafka.group_id == "kafka-twilio"


@pytest.mark.parametrize(("value", "expected"), [("a, b,c", ["a", "b", "c"]), ('["x", "y"]', ["x", "y"])])
def test_topics_take_a_comma_list_or_json(value: str, expected: list[str]) -> None:
    assert load_settings(environ={"KAFKA_TOPICS": value}).kafka.topics == expected


def test_kafka_client_settings_pass_through_with_dots() -> None:
    env = {"KAFKA_CLIENT_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_CLIENT_SASL_MECHANISM": "PLAIN"}
    config = load_settings(environ=env).kafka.client_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"


def test_region_and_edge_choose_the_host_and_must_come_together() -> None:
    s = load_settings(environ={"TWILIO_REGION": "ie1", "TWILIO_EDGE": "dublin"})
    assert s.twilio.api_base_url == "https://api.dublin.ie1.twilio.com"
    with pytest.raises(SettingsError, match="set both TWILIO_REGION and TWILIO_EDGE"):
        load_settings(environ={"TWILIO_REGION": "ie1"})


def test_an_api_key_is_preferred_and_its_secret_is_never_printed() -> None:
    s = load_settings(
        environ={
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_API_KEY_SID": KEY,
            "TWILIO_API_KEY_SECRET": "s3cr3t-value",
        }
    )
    assert s.twilio.basic_auth() == (KEY, "s3cr3t-value")
    assert "s3cr3t-value" not in repr(s)
    with pytest.raises(SettingsError, match="TWILIO_API_KEY_SECRET"):
        load_settings(environ={"TWILIO_API_KEY_SID": KEY})


def test_a_settings_file_fills_in_what_the_environment_does_not(tmp_path: Path) -> None:
    path = tmp_path / "consumer.env"
    path.write_text("# comment\nKAFKA_GROUP_ID='from-file'\nCONSUMER_MAX_IN_FLIGHT=32\n")
    s = load_settings(path, environ={"CONSUMER_MAX_IN_FLIGHT": "64"})
    assert s.kafka.group_id == "from-file"
    assert s.service.max_in_flight == 64
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(tmp_path / "missing.env", environ={})


def test_phone_validation_is_possible_by_default_and_strict_on_request() -> None:
    assert load_settings(environ={}).service.phone_validation == "possible"
    assert load_settings(environ={"CONSUMER_PHONE_VALIDATION": "strict"}).service.phone_validation == "strict"
    with pytest.raises(SettingsError, match="CONSUMER_PHONE_VALIDATION"):
        load_settings(environ={"CONSUMER_PHONE_VALIDATION": "lenient"})


def test_the_kafka_commands_read_only_the_kafka_settings() -> None:
    from consumer.settings import load_kafka_settings

    kafka = load_kafka_settings({"KAFKA_BOOTSTRAP_SERVERS": "k:9", "TWILIO_ACCOUNT_SID": "not checked here"})
    assert kafka.bootstrap_servers == "k:9"
    with pytest.raises(SettingsError, match="KAFKA_AUTO_OFFSET_RESET"):
        load_kafka_settings({"KAFKA_AUTO_OFFSET_RESET": "middle"})


def test_the_state_directory_is_temporary_unless_set_and_empty_means_unset() -> None:
    assert load_settings(environ={}).service.state_dir is None
    assert load_settings(environ={"CONSUMER_STATE_DIR": " "}).service.state_dir is None
    assert load_settings(environ={"CONSUMER_STATE_DIR": "/var/lib/x"}).service.state_dir == Path("/var/lib/x")


def test_the_account_concurrency_is_unset_by_default_and_never_negative() -> None:
    assert load_settings(environ={}).twilio.account_concurrency == 0
    with pytest.raises(
        SettingsError, match="TWILIO_ACCOUNT_CONCURRENCY: Input should be greater than or equal to 0"
    ):
        load_settings(environ={"TWILIO_ACCOUNT_CONCURRENCY": "-1"})
