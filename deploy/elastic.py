"""The local Elasticsearch: Maven Central's integ-test-zip, single node, bound to 127.0.0.1."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import ApiError, TransportError

from app.elastic.client import es_sync_client
from app.settings import LOCAL_HOST, Settings
from deploy import proc
from deploy.java import java_home

ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"


def cluster_ready(settings: Settings) -> bool:
    """The configured Elasticsearch answers with a yellow or green cluster health."""
    try:
        client = es_sync_client(settings, request_timeout=5)
    except ValueError:  # unusable TLS settings: the start will say so
        return False
    try:
        return client.cluster.health(timeout="2s").get("status") in ("yellow", "green")
    except (ApiError, TransportError):
        return False
    finally:
        client.close()


ANALYSIS_PLUGIN = "laas-security-analysis"
ANALYSIS_SOURCE = Path(__file__).parent / "es_analysis" / "SecurityIndexAnalysisPlugin.java"


@dataclass(frozen=True)
class Security:
    """Security on: HTTPS with this PEM certificate and key, one file-realm superuser (who can
    make API keys). The stack runs without; tests use it to stand for a secured cluster.

    API keys live in the `.security` index, whose `email` analyzer needs three analysis
    components of the analysis-common module this distribution lacks; a small plugin
    (deploy/es_analysis, compiled here with the JDK's javac) provides them."""

    certfile: Path
    keyfile: Path
    username: str
    password: str


class Elasticsearch:
    """A single-node Elasticsearch run by a non-root user, loopback only; security off unless
    `security` is given."""

    name = "elasticsearch"

    def __init__(self, settings: Settings, *, security: Security | None = None) -> None:
        self.settings = settings
        self.security = security
        self.base = settings.state_dir / "elasticsearch"
        self.downloads = settings.state_dir / "downloads"
        self.dist = self.base / f"elasticsearch-{settings.es_version}"
        self.data = self.base / "data"
        self.logs = self.base / "logs"
        self.log_file = self.logs / "laas.log"
        self.console_log = self.logs / "console.log"
        self.pid_file = self.base / "elasticsearch.pid"

    @property
    def address(self) -> str:
        return self.settings.elasticsearch_url

    def prepare(self) -> None:
        """Fetch the zip with Maven once and unpack it (keeping file modes)."""
        if (self.dist / "bin" / "elasticsearch").exists():
            return
        version = self.settings.es_version
        archive = self.downloads / f"elasticsearch-{version}.zip"
        if not archive.exists():
            mvn = proc.require_command("mvn", "install Maven (Debian: apt-get install maven)")
            proc.run_logged(
                [
                    mvn,
                    "-q",
                    "-B",
                    "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
                    f"-Dartifact={ARTIFACT.format(version=version)}",
                    f"-DoutputDirectory={self.downloads.resolve()}",
                    "-Dmdep.stripVersion=false",
                ],
                what="downloading Elasticsearch with Maven",
                log_file=self.base / "maven.log",
            )
        unpack = self.base / "unpack.tmp"
        shutil.rmtree(unpack, ignore_errors=True)
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = Path(zf.extract(info, unpack))
                mode = info.external_attr >> 16
                if mode and not info.is_dir():
                    target.chmod(mode & 0o777)
        (unpack / f"elasticsearch-{version}").rename(self.dist)
        unpack.rmdir()

    def start(self) -> None:
        s = self.settings
        config = self.dist / "config"
        (config / "elasticsearch.yml").write_text(
            "\n".join(
                [
                    "cluster.name: laas",
                    "node.name: laas-1",
                    f"path.data: {self.data.resolve()}",
                    f"path.logs: {self.logs.resolve()}",
                    f"network.host: {LOCAL_HOST}",
                    f"http.port: {s.es_port}",
                    f"transport.port: {s.es_port + 100}",
                    "discovery.type: single-node",
                    *self._security_lines(config),
                    "action.destructive_requires_name: false",
                    "",
                ]
            )
        )
        options = config / "jvm.options.d"
        options.mkdir(exist_ok=True)
        (options / "laas.options").write_text(f"-Xms{s.es_heap}\n-Xmx{s.es_heap}\n")
        user = proc.service_user()
        proc.give_to(user, self.dist, self.data, self.logs)
        proc.spawn(
            [str(self.dist / "bin" / "elasticsearch")],
            log_file=self.console_log,
            pid_file=self.pid_file,
            env={"ES_JAVA_HOME": str(java_home(s)), "ES_PATH_CONF": str(config.resolve())},
            user=user,
        )

    def _security_lines(self, config: Path) -> list[str]:
        if self.security is None:
            return ["xpack.security.enabled: false"]
        sec = self.security
        for source, name in ((sec.certfile, "http.crt"), (sec.keyfile, "http.key")):
            shutil.copyfile(source, config / name)
        for name in ("users", "users_roles"):  # the file realm: one superuser
            (config / name).write_text("")
        self._install_analysis_plugin()
        proc.run_logged(
            [str(self.dist / "bin" / "elasticsearch-users"), "useradd", sec.username,
             "-p", sec.password, "-r", "superuser"],
            what="adding the Elasticsearch superuser", log_file=self.logs / "users.log",
            env={"ES_JAVA_HOME": str(java_home(self.settings)),
                 "ES_PATH_CONF": str(config.resolve())},
        )
        return ["xpack.security.enabled: true",
                "xpack.security.http.ssl.enabled: true",
                "xpack.security.http.ssl.certificate: http.crt",
                "xpack.security.http.ssl.key: http.key",
                "xpack.security.transport.ssl.enabled: false"]

    def _install_analysis_plugin(self) -> None:
        """Compile deploy/es_analysis against this distribution and install it as a plugin."""
        target = self.dist / "plugins" / ANALYSIS_PLUGIN
        jar = target / f"{ANALYSIS_PLUGIN}.jar"
        if jar.exists():
            return
        jdk = java_home(self.settings)
        javac = jdk / "bin" / "javac"
        if not javac.exists():
            raise proc.StackError(f"{javac} does not exist: the secured test node compiles a "
                                  "plugin; point LAAS_JAVA_HOME at a JDK (not a JRE)")
        classes = self.base / "es_analysis.build"
        shutil.rmtree(classes, ignore_errors=True)
        classes.mkdir(parents=True)
        log_file = self.logs / "plugin.log"
        proc.run_logged([str(javac), "--release", "17", "-cp", f"{self.dist / 'lib'}/*", "-d",
                         str(classes), str(ANALYSIS_SOURCE)],
                        what="compiling the analysis plugin", log_file=log_file)
        target.mkdir(parents=True, exist_ok=True)
        proc.run_logged([str(jdk / "bin" / "jar"), "cf", str(jar), "-C", str(classes), "."],
                        what="packaging the analysis plugin", log_file=log_file)
        (target / "plugin-descriptor.properties").write_text("\n".join([
            "description=Analysis components of the .security index (LaaS tests)",
            "version=1.0", f"name={ANALYSIS_PLUGIN}",
            "classname=org.laas.esanalysis.SecurityIndexAnalysisPlugin",
            "java.version=17", f"elasticsearch.version={self.settings.es_version}", ""]))

    def ready(self) -> bool:
        """Cluster health is yellow or green (asked with the configured credentials and TLS)."""
        return cluster_ready(self.settings)

    def running(self) -> bool:
        return proc.read_pid(self.pid_file) is not None

    def stop(self) -> bool:
        return proc.terminate(self.pid_file)
