"""How every LaaS Kafka client connects: bootstrap servers, security protocol and login.

The local stack's broker (`kafka_local_auth`, the default) requires SASL/SCRAM-SHA-256: LaaS's
processes log in as `laas`, a super user; direct producers as `laas-producer`, whose ACLs allow
writing `logs.raw` and nothing else. The passwords are made when the broker is first formatted
and kept in `state_dir/kafka/credentials.json` (0600). For an existing Kafka the settings
`kafka_security_protocol`, `kafka_sasl_*` and `kafka_ssl_cafile` apply. Every aiokafka client
takes `client_options(settings)`, every Faust app `faust_credentials(settings)`.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.settings import Settings

LAAS_USER = "laas"
PRODUCER_USER = "laas-producer"
LOCAL_MECHANISM = "SCRAM-SHA-256"


class KafkaCredentialsMissing(RuntimeError):
    """The local stack's Kafka passwords are not there (the broker was never formatted)."""


def credentials_file(settings: Settings) -> Path:
    return settings.kafka_credentials_file or settings.state_dir / "kafka" / "credentials.json"


def local_credentials(settings: Settings) -> dict[str, str]:
    """The local broker's passwords by user."""
    path = credentials_file(settings)
    try:
        found: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise KafkaCredentialsMissing(
            f"{path} is missing: start the local Kafka with `laas stack up` (or set "
            "LAAS_KAFKA_LOCAL_AUTH=false for a broker without logins)") from exc
    return found


@dataclass(frozen=True)
class KafkaLogin:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    cafile: Path | None = None


def kafka_login(settings: Settings, user: str = LAAS_USER) -> KafkaLogin:
    """How `user` (LaaS itself by default) logs in to the configured Kafka: `user` picks one of
    the local stack's logins; a Kafka of your own has the one login of the settings."""
    if settings.kafka_bootstrap is None:  # the local stack
        if not settings.kafka_local_auth:
            return KafkaLogin()
        return KafkaLogin("SASL_PLAINTEXT", LOCAL_MECHANISM, user,
                          local_credentials(settings)[user])
    password = settings.kafka_sasl_password
    return KafkaLogin(settings.kafka_security_protocol, settings.kafka_sasl_mechanism,
                      settings.kafka_sasl_username,
                      password.get_secret_value() if password is not None else None,
                      settings.kafka_ssl_cafile)


def client_options(settings: Settings, user: str = LAAS_USER) -> dict[str, Any]:
    """Keyword arguments of an aiokafka client (producer, consumer, admin) for `user`."""
    login = kafka_login(settings, user)
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_servers,
                               "security_protocol": login.protocol}
    if login.protocol.startswith("SASL"):
        options |= {"sasl_mechanism": login.mechanism, "sasl_plain_username": login.username,
                    "sasl_plain_password": login.password}
    if login.protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(login)
    return options


def _ssl_context(login: KafkaLogin) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(login.cafile) if login.cafile else None)


def faust_credentials(settings: Settings) -> Any:
    """The `broker_credentials` of a Faust app (None: plaintext without login)."""
    import faust

    login = kafka_login(settings)
    context = _ssl_context(login) if login.protocol.endswith("SSL") else None
    if login.protocol.startswith("SASL"):
        return faust.SASLCredentials(username=login.username, password=login.password,
                                     mechanism=login.mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def cluster_env(settings: Settings) -> dict[str, str]:
    """`LAAS_*` variables that point another process (with a state directory of its own) at
    the Kafka these settings log in to, as a Kafka of its own (bootstrap, protocol, login)."""
    login = kafka_login(settings)
    env = {"LAAS_KAFKA_BOOTSTRAP": settings.kafka_servers,
           "LAAS_KAFKA_SECURITY_PROTOCOL": login.protocol}
    if login.mechanism:
        env |= {"LAAS_KAFKA_SASL_MECHANISM": login.mechanism,
                "LAAS_KAFKA_SASL_USERNAME": login.username or "",
                "LAAS_KAFKA_SASL_PASSWORD": login.password or ""}
    if login.cafile:
        env["LAAS_KAFKA_SSL_CAFILE"] = str(login.cafile)
    return env


def librdkafka_config(settings: Settings, user: str = PRODUCER_USER) -> str:
    """A librdkafka (kcat -F) configuration file's text for `user`. On the local broker it
    logs in with PLAIN (loopback only): librdkafka before 2.6.1, Debian 12's included, fails
    SCRAM against Kafka 4."""
    login = kafka_login(settings, user)
    lines = [f"bootstrap.servers={settings.kafka_servers}",
             f"security.protocol={login.protocol.lower()}"]
    if login.protocol.startswith("SASL"):
        mechanism = "PLAIN" if settings.kafka_bootstrap is None else login.mechanism
        lines += [f"sasl.mechanisms={mechanism}", f"sasl.username={login.username}",
                  f"sasl.password={login.password}"]
    if login.cafile:
        lines.append(f"ssl.ca.location={login.cafile}")
    return "\n".join(lines) + "\n"
