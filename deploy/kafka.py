"""The local Kafka broker: jars from Maven Central, KRaft combined mode, bound to 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

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
        """Resolve the broker jars with Maven once; later starts reuse them."""
        if (self.libs / f"kafka_2.13-{self.settings.kafka_version}.jar").exists():
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
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self._server_properties())
        log4j = self.home / "log4j2.properties"
        log4j.write_text(LOG4J2.format(log=self.log_file.resolve()))
        java = str(java_home(self.settings) / "bin" / "java")
        classpath = f"{self.libs.resolve()}/*"
        if not (self.data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
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

    def _server_properties(self) -> str:
        s = self.settings
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={LOCAL_HOST}:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://{LOCAL_HOST}:{s.kafka_port},"
                f"CONTROLLER://{LOCAL_HOST}:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://{LOCAL_HOST}:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
        return proc.run_coroutine(lambda: _metadata_answers(self.address))

    def running(self) -> bool:
        return proc.read_pid(self.pid_file) is not None

    def stop(self) -> bool:
        return proc.terminate(self.pid_file)


def _host_port(servers: str) -> tuple[str, int]:
    host, _, port = servers.split(",")[0].rpartition(":")
    return host, int(port)


async def _metadata_answers(servers: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.list_topics(), 5)
        return True
    except Exception:
        return False
    finally:
        await admin.close()
