"""How LaaS's Kafka clients log in (app/kafka/client.py): the local stack's SASL users, or the
settings of a Kafka of your own."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr

from app.kafka.client import (
    KafkaCredentialsMissing,
    client_options,
    cluster_env,
    faust_credentials,
    librdkafka_config,
)
from app.settings import Settings, load_settings


def _local(tmp_path: Path, **extra: object) -> Settings:
    creds = tmp_path / "kafka" / "credentials.json"
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({"laas": "pw-laas", "laas-producer": "pw-producer"}))
    return load_settings(state_dir=tmp_path, kafka_bootstrap=None, kafka_credentials_file=None,
                         **extra)


def test_the_local_stack_logs_in_with_scram(tmp_path: Path) -> None:
    settings = _local(tmp_path)
    assert client_options(settings) == {
        "bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "laas",
        "sasl_plain_password": "pw-laas"}
    assert client_options(settings, "laas-producer")["sasl_plain_password"] == "pw-producer"
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.mechanism.value) == ("laas", "SCRAM-SHA-256")
    # kcat (librdkafka < 2.6.1 fails SCRAM against Kafka 4): PLAIN, the producer's login
    assert librdkafka_config(settings).splitlines()[1:] == [
        "security.protocol=sasl_plaintext", "sasl.mechanisms=PLAIN",
        "sasl.username=laas-producer", "sasl.password=pw-producer"]


def test_without_credentials_the_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KafkaCredentialsMissing, match="laas stack up"):
        client_options(Settings(state_dir=tmp_path, kafka_bootstrap=None,
                                kafka_credentials_file=None))
    plain = Settings(state_dir=tmp_path, kafka_bootstrap=None, kafka_local_auth=False)
    assert client_options(plain) == {"bootstrap_servers": "127.0.0.1:9092",
                                     "security_protocol": "PLAINTEXT"}
    assert faust_credentials(plain) is None


def test_an_existing_cluster_with_sasl_ssl(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_bootstrap="kafka.example:9096",
                        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="svc-laas",
                        kafka_sasl_password=SecretStr("s3cret"))
    options = client_options(settings)
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        "bootstrap_servers": "kafka.example:9096", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc-laas",
        "sasl_plain_password": "s3cret"}
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(settings)
    assert credentials.protocol.value == "SASL_SSL" and credentials.password == "s3cret"
    env = cluster_env(settings)
    assert env["LAAS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    fields = {k.removeprefix("LAAS_").lower(): v for k, v in env.items()}
    again = load_settings(state_dir=tmp_path, **fields)
    assert again.kafka_sasl_username == "svc-laas"


def test_a_bad_protocol_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="kafka_security_protocol"):
        Settings(kafka_security_protocol="TLS")
