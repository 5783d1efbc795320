"""The local Kafka broker: jars from Maven Central, KRaft combined mode, bound to 127.0.0.1.

With `kafka_local_auth` (the default) the broker's client listener requires SASL/SCRAM-SHA-256
and the StandardAuthorizer enforces ACLs: `laas` (LaaS's processes) is a super user,
`laas-producer` (direct producers) may write `logs.raw` and nothing else. The passwords are
made at the first format into `state_dir/kafka/credentials.json` (0600), and a kcat/librdkafka
configuration for direct producers into `state_dir/kafka/producer.conf`. The controller
listener stays plaintext on loopback (operator access: the ACLs are set through it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from app.kafka.client import (
    LAAS_USER,
    LOCAL_MECHANISM,
    PRODUCER_USER,
    client_options,
    credentials_file,
    librdkafka_config,
)
from app.kafka.topics import RAW, topic_name
from app.settings import LOCAL_HOST, Settings
from deploy import proc
from deploy.java import java_home

POM = Path(__file__).with_name("kafka-pom.xml")

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class Kafka:
    """Kafka 4.x broker + controller in one JVM, data and logs under the state directory."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / "kafka"
        self.libs = settings.state_dir / "downloads" / f"kafka-{settings.kafka_version}"
        self.data = self.home / "data"
        self.config = self.home / "server.properties"
        self.log_file = self.home / "logs" / "server.log"
        self.console_log = self.home / "logs" / "console.log"
        self.pid_file = self.home / "kafka.pid"

    @property
    def address(self) -> str:
        return self.settings.kafka_servers

    def prepare(self) -> None:
        """Resolve the broker jars (and AclCommand's) with Maven once; later starts reuse them."""
        version = self.settings.kafka_version
        if all((self.libs / f"{jar}-{version}.jar").exists()
               for jar in ("kafka_2.13", "kafka-tools")):
            return
        mvn = proc.require_command("mvn", "install Maven (Debian: apt-get install maven)")
        self.libs.mkdir(parents=True, exist_ok=True)
        proc.run_logged(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-DoutputDirectory={self.libs.resolve()}",
                "-DincludeScope=runtime",
            ],
            what="resolving the Kafka jars with Maven",
            log_file=self.home / "logs" / "maven.log",
        )

    def start(self) -> None:
        auth = self.settings.kafka_local_auth
        formatted = (self.data / "meta.properties").exists()
        if auth and formatted and not credentials_file(self.settings).exists():
            raise proc.StackError(
                f"the local Kafka in {self.data} was formatted without logins (before SASL): "
                f"delete {self.data} to have it made again with SASL and ACLs (its topics are "
                "lost), or set LAAS_KAFKA_LOCAL_AUTH=false to keep it without logins")
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        passwords = self._passwords() if auth else {}
        self.config.write_text(self._server_properties(passwords))
        self.config.chmod(0o600)  # holds the broker's own password
        log4j = self.home / "log4j2.properties"
        log4j.write_text(LOG4J2.format(log=self.log_file.resolve()))
        java = str(java_home(self.settings) / "bin" / "java")
        classpath = f"{self.libs.resolve()}/*"
        if not formatted:
            scram = [arg for user, password in passwords.items() for arg in (
                "--add-scram", f"{LOCAL_MECHANISM}=[name={user},password={password}]")]
            cluster_id = new_cluster_id()
            proc.run_logged(
                [
                    java,
                    f"-Dlog4j2.configurationFile={log4j.resolve()}",
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    cluster_id,
                    "--config",
                    str(self.config.resolve()),
                    "--standalone",
                    *scram,
                ],
                what="formatting the Kafka storage",
                log_file=self.console_log,
            )
        proc.spawn(
            [
                java,
                "-Xms512m",
                "-Xmx1g",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j.resolve()}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(self.config.resolve()),
            ],
            log_file=self.console_log,
            pid_file=self.pid_file,
        )

    def _passwords(self) -> dict[str, str]:
        """The users' passwords: made once (0600), then read; producer.conf written beside."""
        path = credentials_file(self.settings)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            made = {user: secrets.token_urlsafe(24) for user in (LAAS_USER, PRODUCER_USER)}
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(made, handle)
        conf = self.home / "producer.conf"
        conf.touch(mode=0o600)
        conf.write_text(librdkafka_config(self.settings, PRODUCER_USER))
        passwords: dict[str, str] = json.loads(path.read_text())
        return passwords

    def grant(self) -> None:
        """The ACLs of direct producers: write (and describe) `logs.raw`, idempotently."""
        if not self.settings.kafka_local_auth:
            return
        java = str(java_home(self.settings) / "bin" / "java")
        base = [java, f"-Dlog4j2.configurationFile={(self.home / 'log4j2.properties').resolve()}",
                "-cp", f"{self.libs.resolve()}/*", "org.apache.kafka.tools.AclCommand",
                "--bootstrap-controller", f"{LOCAL_HOST}:{self.settings.kafka_controller_port}",
                "--add", "--allow-principal", f"User:{PRODUCER_USER}"]
        raw = topic_name(self.settings, RAW)
        proc.run_logged([*base, "--operation", "Write", "--operation", "Describe",
                         "--topic", raw], what=f"granting {PRODUCER_USER} write on {raw}",
                        log_file=self.console_log)
        proc.run_logged([*base, "--operation", "IdempotentWrite", "--cluster"],
                        what=f"granting {PRODUCER_USER} idempotent writes",
                        log_file=self.console_log)

    def _server_properties(self, passwords: dict[str, str]) -> str:
        """The broker's configuration; with `passwords` (by user) SASL logins and ACLs."""
        s = self.settings
        if passwords:
            password, producer = passwords[LAAS_USER], passwords[PRODUCER_USER]
            client = "SASL_PLAINTEXT"
            auth = [
                # PLAIN too, for direct producers on librdkafka < 2.6.1 (Debian 12's kcat),
                # whose SCRAM fails against Kafka 4 (librdkafka PR 4895)
                f"sasl.enabled.mechanisms={LOCAL_MECHANISM},PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{LAAS_USER}="{password}" user_{PRODUCER_USER}="{producer}";',
                f"sasl.mechanism.inter.broker.protocol={LOCAL_MECHANISM}",
                f"listener.name.sasl_plaintext.{LOCAL_MECHANISM.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{LAAS_USER}" password="{password}";',
                "authorizer.class.name="
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # ANONYMOUS: the plaintext controller listener (loopback; the broker's own
                # controller traffic and the operator's AclCommand)
                f"super.users=User:{LAAS_USER};User:ANONYMOUS",
                "allow.everyone.if.no.acl.found=false",
            ]
        else:
            client, auth = "PLAINTEXT", []
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={LOCAL_HOST}:{s.kafka_controller_port}",
                f"listeners={client}://{LOCAL_HOST}:{s.kafka_port},"
                f"CONTROLLER://{LOCAL_HOST}:{s.kafka_controller_port}",
                f"advertised.listeners={client}://{LOCAL_HOST}:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                f"inter.broker.listener.name={client}",
                f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client}:{client}",
                *auth,
                f"log.dirs={self.data.resolve()}",
                f"num.partitions={s.partitions}",
                "offsets.topic.replication.factor=1",
                "share.coordinator.state.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "",
            ]
        )

    def ready(self) -> bool:
        """The broker answers a metadata request."""
        if not proc.port_open(*_host_port(self.address)):
            return False
        try:
            options = client_options(self.settings)
        except RuntimeError:  # no credentials yet: not ours to log in to
            return False
        return proc.run_coroutine(lambda: _metadata_answers(options))

    def running(self) -> bool:
        return proc.read_pid(self.pid_file) is not None

    def stop(self) -> bool:
        return proc.terminate(self.pid_file)


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64. Never one starting with '-', which
    StorageTool's argument parser reads as an option (as Kafka's own `Uuid.randomUuid` avoids;
    it failed 1 in 64 fresh formats)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _host_port(servers: str) -> tuple[str, int]:
    host, _, port = servers.split(",")[0].rpartition(":")
    return host, int(port)


async def _metadata_answers(options: dict[str, object]) -> bool:
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.list_topics(), 5)
        return True
    except Exception:
        return False
    finally:
        await admin.close()
