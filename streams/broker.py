"""A single-node Kafka broker for development and CI, run from Maven Central jars.

The broker is one JVM that acts as both KRaft controller and broker, listens on
127.0.0.1 only, and keeps everything (jars, configuration, data, log, pid file) under
`BrokerSettings.home`. It is not meant for production: there is one replica of every
partition and no authentication.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from herald.config import BrokerSettings
from herald.errors import HeraldError

__all__ = ["BrokerError", "BrokerStatus", "LocalBroker"]

logger = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_MAX_INITIAL_HEAP_MB = 256
# The collector options of Kafka's start script (`bin/kafka-run-class.sh`). With G1's default
# pause goal of 200 ms, the broker's young collections took 14 ms at the median and up to
# 39 ms in a run of `python -m bench.triggers`, against 9 and 21 ms with these.
_JVM_OPTIONS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
_POLL_INTERVAL_S = 0.5
_LOG_TAIL_LINES = 20
_MAX_ERROR_LINES = 10
_PROBE_TIMEOUT_S = 5.0


class BrokerError(HeraldError):
    """The local broker could not be installed, formatted, started or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    """The broker state that `LocalBroker.status` observed.

    Attributes:
        pid: The broker process recorded in the pid file, if it is alive.
        reachable: Whether an admin client listed topics on the broker's port.
        bootstrap_servers: The address clients use.
    """

    pid: int | None
    reachable: bool
    bootstrap_servers: str

    @property
    def running(self) -> bool:
        """Whether a broker process started from this home is alive."""
        return self.pid is not None


class LocalBroker:
    """Installs, starts and stops the development broker described by `BrokerSettings`.

    Every method is idempotent: `install` and `format` skip work already done, `start`
    returns at once when a broker already responds on the port, and `stop` succeeds when
    nothing runs. The broker process outlives the Python process that started it; only
    `stop` (or a signal) ends it.
    """

    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        self._home = settings.home.resolve()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> BrokerSettings:
        """The settings this broker was created with."""
        return self._settings

    @property
    def bootstrap_servers(self) -> str:
        """The `host:port` that clients of this broker connect to."""
        return f"{_HOST}:{self._settings.port}"

    @property
    def log_path(self) -> Path:
        """The file that receives the broker's console output."""
        return self._home / "broker.log"

    @property
    def _lib_dir(self) -> Path:
        return self._home / "lib"

    @property
    def _pom_path(self) -> Path:
        return self._home / "pom.xml"

    @property
    def _pid_path(self) -> Path:
        return self._home / "broker.pid"

    @property
    def _properties_path(self) -> Path:
        return self._home / "server.properties"

    @property
    def _log4j_path(self) -> Path:
        return self._home / "log4j2.xml"

    @property
    def _data_dir(self) -> Path:
        return self._home / "data"

    def install(self) -> bool:
        """Copy the broker's jars from Maven into `<home>/lib`, unless they are current.

        The jars are current when the lib folder has jars and the pom that resolved them
        matches the pom packaged with Herald. Maven downloads into a temporary folder that
        replaces the lib folder only after it succeeds, so a failed run leaves no partial
        classpath behind.

        Returns:
            True when Maven ran, False when the jars were already current.

        Raises:
            BrokerError: Maven is not installed or failed.
        """
        pom_text = _package_file("pom.xml")
        if self._jars_present() and self._installed_pom_text() == pom_text:
            return False

        self._home.mkdir(parents=True, exist_ok=True)
        self._pom_path.write_text(pom_text)
        staging_dir = self._home / "lib.partial"
        shutil.rmtree(staging_dir, ignore_errors=True)
        logger.info("Resolving Kafka jars with Maven", extra={"lib_dir": str(self._lib_dir)})
        _run_tool(
            [
                _require_tool("mvn", "Maven"),
                "-B",
                "-q",
                "-f",
                str(self._pom_path),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging_dir}",
            ],
            cwd=self._home,
            failure_message="Maven could not resolve the Kafka jars",
        )
        shutil.rmtree(self._lib_dir, ignore_errors=True)
        staging_dir.rename(self._lib_dir)
        return True

    def format(self) -> bool:
        """Format the KRaft log directory with a new cluster id, once.

        Returns:
            True when the storage was formatted now, False when it already was.

        Raises:
            BrokerError: the jars are missing or Kafka's StorageTool failed.
        """
        if (self._data_dir / "meta.properties").exists():
            return False

        self._require_jars()
        self._write_config()
        cluster_id = self._run_storage_tool("random-uuid").strip()
        self._run_storage_tool(
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self._properties_path),
            "--ignore-formatted",
        )
        logger.info("Formatted Kafka storage", extra={"cluster_id": cluster_id})
        return True

    def start(self) -> bool:
        """Start the broker in the background and wait until it serves admin requests.

        Installs the jars and formats storage first when needed. The broker runs in its
        own session, so it survives the caller, and writes its output to `log_path`.

        Returns:
            True when this call launched the broker, False when a broker already
            responded on the port or a broker from this home was already starting.

        Raises:
            BrokerError: the broker did not respond within `start_timeout_s` or exited.
                The message quotes the first errors and the last lines of the broker log.
        """
        if _lists_topics(self.bootstrap_servers):
            return False

        existing_pid = self._running_pid()
        if existing_pid is not None:
            self._wait_until_reachable(existing_pid)
            return False

        self.install()
        self._write_config()
        self.format()
        pid = self._launch()
        self._wait_until_reachable(pid)
        logger.info("Kafka broker started", extra={"pid": pid, "bootstrap": self.bootstrap_servers})
        return True

    def stop(self) -> bool:
        """Stop the broker with SIGTERM, then SIGKILL after `stop_timeout_s`.

        SIGTERM lets Kafka shut down cleanly, so the next start does not recover logs.

        Returns:
            True when a broker process was stopped, False when none was running.
        """
        pid = self._running_pid()
        if pid is None:
            self._pid_path.unlink(missing_ok=True)
            return False

        os.kill(pid, signal.SIGTERM)
        if not self._wait_for_exit(pid, self._settings.stop_timeout_s):
            logger.warning(
                "Kafka broker ignored SIGTERM, sending SIGKILL",
                extra={"pid": pid, "stop_timeout_s": self._settings.stop_timeout_s},
            )
            os.kill(pid, signal.SIGKILL)
            self._wait_for_exit(pid, self._settings.stop_timeout_s)
        self._pid_path.unlink(missing_ok=True)
        logger.info("Kafka broker stopped", extra={"pid": pid})
        return True

    def status(self) -> BrokerStatus:
        """Report whether a broker from this home runs and whether the port responds."""
        return BrokerStatus(
            pid=self._running_pid(),
            reachable=_lists_topics(self.bootstrap_servers),
            bootstrap_servers=self.bootstrap_servers,
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last `lines` lines of the broker log, or '' when there is none."""
        return "\n".join(self._log_lines()[-lines:])

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def _jars_present(self) -> bool:
        return self._lib_dir.is_dir() and any(self._lib_dir.glob("*.jar"))

    def _installed_pom_text(self) -> str | None:
        try:
            return self._pom_path.read_text()
        except FileNotFoundError:
            return None

    def _require_jars(self) -> None:
        if not self._jars_present():
            raise BrokerError(
                f"no Kafka jars in {self._lib_dir}. Run `herald kafka install` first."
            )

    def _classpath(self) -> str:
        return f"{self._lib_dir}/*"

    def _write_config(self) -> None:
        self._home.mkdir(parents=True, exist_ok=True)
        self._log4j_path.write_text(_package_file("log4j2.xml"))
        self._properties_path.write_text(_server_properties(self._settings, self._data_dir))

    def _run_storage_tool(self, *args: str) -> str:
        return _run_tool(
            [_require_tool("java", "a Java runtime (17 or newer)"), "-cp", self._classpath()]
            + ["kafka.tools.StorageTool", *args],
            cwd=self._home,
            failure_message=f"Kafka's StorageTool {args[0]} failed",
        )

    def _launch(self) -> int:
        settings = self._settings
        initial_heap_mb = min(_MAX_INITIAL_HEAP_MB, settings.heap_mb)
        command = [
            _require_tool("java", "a Java runtime (17 or newer)"),
            f"-Xms{initial_heap_mb}m",
            f"-Xmx{settings.heap_mb}m",
            *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self._log4j_path}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self._properties_path),
        ]
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                command,
                cwd=self._home,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pid_path.write_text(f"{self._process.pid}\n")
        return self._process.pid

    def _running_pid(self) -> int | None:
        try:
            pid = int(self._pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_broker_process(pid) else None

    def _wait_until_reachable(self, pid: int) -> None:
        deadline = time.monotonic() + self._settings.start_timeout_s
        while time.monotonic() < deadline:
            if not self._alive(pid):
                raise BrokerError(
                    f"Kafka broker (pid {pid}) exited during start-up. {self._log_excerpt()}"
                )
            if _lists_topics(self.bootstrap_servers):
                return
            time.sleep(_POLL_INTERVAL_S)
        raise BrokerError(
            f"Kafka broker (pid {pid}) timed out: no response on {self.bootstrap_servers} within "
            f"{self._settings.start_timeout_s:g} s. It is still running, so stop it with "
            f"`herald kafka stop`. {self._log_excerpt()}"
        )

    def _log_excerpt(self) -> str:
        # The cause is often far above the tail: after a fatal error the broker keeps
        # logging its shutdown for hundreds of lines.
        lines = self._log_lines()
        if not lines:
            return f"{self.log_path} is missing or empty."
        errors = [line for line in lines if _is_error_line(line)][:_MAX_ERROR_LINES]
        tail = "\n".join(lines[-_LOG_TAIL_LINES:])
        excerpt = f"Last lines of {self.log_path}:\n{tail}"
        if errors:
            excerpt = f"First errors in {self.log_path}:\n" + "\n".join(errors) + "\n" + excerpt
        return excerpt

    def _alive(self, pid: int) -> bool:
        # A child that exited stays a zombie until reaped, and a zombie still accepts signal 0.
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return _is_broker_process(pid)

    def _wait_for_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._alive(pid):
                return True
            time.sleep(_POLL_INTERVAL_S / 5)
        return not self._alive(pid)


def _server_properties(settings: BrokerSettings, data_dir: Path) -> str:
    controller = f"{_HOST}:{settings.controller_port}"
    broker = f"{_HOST}:{settings.port}"
    lines = [
        "# `herald kafka start` rewrites this file from BrokerSettings on every start.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{controller}",
        f"listeners=PLAINTEXT://{broker},CONTROLLER://{controller}",
        f"advertised.listeners=PLAINTEXT://{broker}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        # A single node holds one replica only, so the default factor of 3 would keep
        # Kafka from creating these internal topics.
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # The default 3 s delay before the first rebalance would slow every consumer group join.
        "group.initial.rebalance.delay.ms=0",
        # With verification on, the broker checks each transactional write's partition with
        # the transaction coordinator. Until it has, it rejects writes of aiokafka's protocol
        # version with NOT_ENOUGH_REPLICAS, and each retry adds to the engine's latency.
        "transaction.partition.verification.enable=false",
    ]
    return "\n".join(lines) + "\n"


def _package_file(name: str) -> str:
    return resources.files("herald").joinpath("kafka", name).read_text()


def _require_tool(executable: str, description: str) -> str:
    path = shutil.which(executable)
    if path is None:
        raise BrokerError(f"`{executable}` not found on PATH. Install {description}.")
    return path


def _run_tool(command: list[str], *, cwd: Path, failure_message: str) -> str:
    result = subprocess.run(
        command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
        raise BrokerError(f"{failure_message} (exit {result.returncode}):\n{output}")
    return result.stdout


def _is_broker_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # The pid in a stale pid file may now belong to another program, which stop() must
    # not signal. Where /proc is missing the pid is trusted.
    cmdline_path = Path(f"/proc/{pid}/cmdline")
    if not cmdline_path.parent.exists():
        return True
    try:
        return b"kafka.Kafka" in cmdline_path.read_bytes()
    except OSError:
        return False


def _is_error_line(line: str) -> bool:
    return " ERROR " in line or " FATAL " in line or line.startswith("Caused by:")


def _lists_topics(bootstrap_servers: str) -> bool:
    host, _, port = bootstrap_servers.rpartition(":")
    # A plain connect first, because aiokafka logs an ERROR for every refused connection.
    try:
        with socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError:
        return False
    return asyncio.run(_admin_lists_topics(bootstrap_servers))


async def _admin_lists_topics(bootstrap_servers: str) -> bool:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(_PROBE_TIMEOUT_S * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), _PROBE_TIMEOUT_S)
        await asyncio.wait_for(admin.list_topics(), _PROBE_TIMEOUT_S)
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        await admin.close()
    return True
