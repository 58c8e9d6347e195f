"""A real Spark standalone cluster on one machine: a Master, Workers and a Thrift server.

The `spark` target (a Thrift server, profiles/profiles.yml) is what production runs; this
module gives the tests, `make cluster-up` and `make bench` a small real one to run it against,
built only from what the pyspark wheel ships (`bin/spark-class`, `bin/spark-submit`, the Hive
Thrift server jar) plus the Iceberg jars of `pipeline.spark`: no downloads.

Every process binds to 127.0.0.1 on a port picked free at start, the web UIs of Master and
Workers too (SPARK_LOCAL_IP), and the Thrift driver's UI is off. Each process is started in a
session of its own, so stopping kills its whole process group. What was started is written to
`<root>/cluster.json` before waiting for anything, so `pipeline cluster down` (another process)
stops a cluster that never came up, and `start` stops what it started when anything fails or
times out. The Thrift server keeps its metastore in an embedded Derby database under `root`:
one metastore client (the Thrift server) serves every runner.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

import pyspark

from pipeline.spark import spark_jars

ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
STATE_FILE = "cluster.json"
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """The cluster did not come up (the message names the process and its log)."""


def spark_home() -> Path:
    """The pyspark wheel is a Spark distribution: bin/, jars/ (SPARK_HOME for spark-class)."""
    return Path(pyspark.__file__).parent


def free_port() -> int:
    """A port nobody listens on now, on loopback (the kernel picks; a race is reported as a
    failed start, not silently shared)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def iceberg_confs(warehouse: Path, metastore: Path) -> dict[str, str]:
    """The spark_local target's catalog settings (profiles/profiles.yml), for the Thrift
    server: the same SparkSessionCatalog over a Hive metastore, the same WAP default and
    Parquet reading, so the two Spark targets build identical tables."""
    return {
        "spark.sql.catalog.spark_catalog": "org.apache.iceberg.spark.SparkSessionCatalog",
        "spark.sql.catalog.spark_catalog.type": "hive",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={metastore};create=true"
        ),
        "spark.hadoop.iceberg.engine.hive.lock-enabled": "false",
        "spark.sql.catalog.spark_catalog.table-default.write.wap.enabled": "true",
        "spark.sql.parquet.inferTimestampNTZ.enabled": "false",
        "spark.sql.parquet.mergeSchema": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.parquet.compression.codec": "zstd",
    }


@dataclass
class ClusterState:
    """What `cluster.json` records: enough for another process to connect or to stop it."""

    root: str
    master_url: str = ""
    thrift_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment the `spark` target reads (profiles/profiles.yml)."""
        return {"COMMERCE_SPARK_HOST": HOST, "COMMERCE_SPARK_PORT": str(self.thrift_port)}


class LocalCluster:
    """Start, wait for, and stop a Master, `workers` Workers and a Thrift server under `root`."""

    def __init__(
        self,
        root: Path,
        workers: int = 2,
        worker_cores: int = 1,
        worker_memory: str = "1g",
        executor_memory: str = "768m",
        # The Thrift server's driver plans every session's queries and builds the broadcast
        # side of joins: with 1g it spent minutes in full GCs on a scale-1 build (`make bench`).
        driver_memory: str = "4g",
        timeout: float = 180.0,
    ) -> None:
        self.root = root.resolve()
        self.workers = workers
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.executor_memory = executor_memory
        self.driver_memory = driver_memory
        self.timeout = timeout
        self.state = ClusterState(root=str(self.root))

    # -- paths ---------------------------------------------------------------------------------

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def metastore(self) -> Path:
        return self.root / "metastore_db"

    def _log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> ClusterState:
        """Bring the cluster up; on any failure or timeout stop what was started and raise."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        deadline = time.monotonic() + self.timeout
        try:
            master_port = free_port()
            self.state.master_url = f"spark://{HOST}:{master_port}"
            self._spawn(
                "master",
                [
                    str(spark_home() / "bin" / "spark-class"),
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    HOST,
                    "--port",
                    str(master_port),
                    "--webui-port",
                    str(free_port()),
                ],
            )
            self._wait_for_port("master", master_port, deadline)
            for index in range(self.workers):
                name = f"worker-{index + 1}"
                self._spawn(
                    name,
                    [
                        str(spark_home() / "bin" / "spark-class"),
                        "org.apache.spark.deploy.worker.Worker",
                        self.state.master_url,
                        "--host",
                        HOST,
                        "--port",
                        str(free_port()),
                        "--webui-port",
                        str(free_port()),
                        "--cores",
                        str(self.worker_cores),
                        "--memory",
                        self.worker_memory,
                        "--work-dir",
                        str(self.root / "work" / name),
                    ],
                )
            self.state.thrift_port = free_port()
            self._spawn("thrift", self._thrift_command())
            self._wait_for_port("thrift", self.state.thrift_port, deadline)
            self._wait_for_executors(deadline)
        except BaseException:
            self.stop()
            raise
        return self.state

    def _thrift_command(self) -> list[str]:
        jars = spark_jars(self.root / "jars").split(",")
        confs = {
            **iceberg_confs(self.warehouse, self.metastore),
            "spark.hadoop.hive.server2.thrift.port": str(self.state.thrift_port),
            "spark.hadoop.hive.server2.thrift.bind.host": HOST,
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.ui.enabled": "false",
            "spark.executor.memory": self.executor_memory,
            "spark.executor.cores": str(self.worker_cores),
            "spark.cores.max": str(self.workers * self.worker_cores),
            # Every executor is on this host: waiting up to 3 s per task for a "more local"
            # slot only delays the many tiny queries a dbt run sends.
            "spark.locality.wait": "0s",
            # Write-audit-publish on this target is SQL (branches, `CALL ... fast_forward`):
            # Iceberg's SQL extensions parse it.
            "spark.sql.extensions": ICEBERG_EXTENSIONS,
            # Every Thrift session has its own catalog; with Iceberg's table cache one session
            # would keep reading a table as it was before another session's commit.
            "spark.sql.catalog.spark_catalog.cache-enabled": "false",
            # New tables write the session's `spark.wap.branch` too (as spark_local's profile).
            "spark.sql.catalog.spark_catalog.table-default.write.wap.enabled": "true",
            # A broadcast relation is built in the driver, which every session shares: at
            # scale 1 the MERGE of stg_landing__events broadcast a side far over its estimate
            # and the driver spent its time in full GCs (bench/NOTES.md). Sort-merge joins
            # spill to the executors' disks instead.
            "spark.sql.autoBroadcastJoinThreshold": "-1",
            "spark.driver.extraJavaOptions": " ".join(
                [
                    # Derby writes derby.log into the working folder unless told otherwise.
                    f"-Dderby.system.home={self.root}",
                    # One metastore connection for the server's life. The embedded metastore
                    # keeps one DataNucleus factory and rebuilds it whenever a client's
                    # settings differ from the last one's. Spark's own Hive client turns
                    # schema verification off and auto-creation on; other clients in the
                    # driver kept Hive's defaults (verification on, so auto-creation off).
                    # Clients took turns and the factory, its Derby connection pool and a
                    # full GC at its finalization came back some 300 times a run.
                    # Every HiveConf reads these system properties, so all now agree.
                    "-Dhive.metastore.schema.verification=false",
                    "-Ddatanucleus.schema.autoCreateAll=true",
                ]
            ),
            # On the driver's and executors' own class path, not only `--jars`: the Thrift
            # server's session threads resolve the catalog through a class loader that does
            # not see jars added at submit (NoClassDefFoundError on Iceberg's classes).
            # Every process runs on this machine, so the local paths are valid everywhere.
            "spark.driver.extraClassPath": ":".join(jars),
            "spark.executor.extraClassPath": ":".join(jars),
        }
        command = [
            str(spark_home() / "bin" / "spark-submit"),
            "--master",
            self.state.master_url,
            "--driver-memory",
            self.driver_memory,
            "--class",
            THRIFT_SERVER_CLASS,
            "--name",
            "commerce-thrift",
        ]
        for key, value in confs.items():
            command += ["--conf", f"{key}={value}"]
        return [*command, "spark-internal"]

    def _spawn(self, name: str, command: list[str]) -> None:
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": HOST,  # every listener, web UIs included, on loopback
            "SPARK_LOG_DIR": str(self.root / "logs"),
            "SPARK_DAEMON_MEMORY": "512m",
        }
        env.pop("PYSPARK_SUBMIT_ARGS", None)
        log = self._log(name)
        with log.open("ab") as handle:
            process = subprocess.Popen(
                command,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop kills every child
            )
        self.state.pids[name] = process.pid
        self.state.logs[name] = str(log)
        self._save()

    def _save(self) -> None:
        path = self.root / STATE_FILE
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self.state), indent=2))
        partial.replace(path)

    def _check_alive(self, name: str) -> None:
        pid = self.state.pids[name]
        if not _alive(pid):
            tail = _tail(Path(self.state.logs[name]))
            raise ClusterError(f"{name} (pid {pid}) exited; {self.state.logs[name]}:\n{tail}")

    def _wait_for_port(self, name: str, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive(name)
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                return
            time.sleep(0.5)
        raise ClusterError(f"{name} did not listen on {HOST}:{port} in {self.timeout:.0f}s")

    def _wait_for_executors(self, deadline: float) -> None:
        """The Thrift server's log names each executor that registers: wait for all of them,
        so the first query already runs on the whole cluster."""
        log = Path(self.state.logs["thrift"])
        while time.monotonic() < deadline:
            self._check_alive("thrift")
            text = log.read_text(errors="replace")
            if text.count("Registered executor") >= self.workers:
                return
            time.sleep(0.5)
        raise ClusterError(
            f"{self.workers} executors did not register in {self.timeout:.0f}s; see {log}"
        )

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process this cluster started, Thrift server first; never raises."""
        stop_processes(self.state.pids, self.root)
        self.state.pids = {}
        with contextlib.suppress(OSError):
            (self.root / STATE_FILE).unlink()

    def __enter__(self) -> ClusterState:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_processes(pids: dict[str, int], root: Path, grace: float = 15.0) -> None:
    """SIGTERM each process group (Thrift, then Workers, then Master), SIGKILL what is left
    after `grace` seconds. A recorded pid is signalled only while its process still works in
    `root` (its cwd): a pid the kernel gave to someone else since is left alone."""
    pids = {name: pid for name, pid in pids.items() if _works_in(pid, root)}
    order = sorted(pids, key=lambda name: (name != "thrift", name == "master", name))
    for name in order:
        _signal_group(pids[name], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        _signal_group(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def read_state(root: Path) -> ClusterState | None:
    """The cluster recorded under `root`, if any (for `pipeline cluster down` and the env)."""
    path = root / STATE_FILE
    if not path.exists():
        return None
    return ClusterState(**json.loads(path.read_text()))


def stop_recorded(root: Path) -> list[str]:
    """Stop the cluster recorded under `root`; returns the names of the processes signalled."""
    state = read_state(root)
    if state is None:
        return []
    stop_processes(state.pids, root.resolve())
    (root / STATE_FILE).unlink(missing_ok=True)
    return sorted(state.pids)


@contextlib.contextmanager
def running(root: Path, **options: object) -> Iterator[ClusterState]:
    """`with running(path) as state:` a cluster for the duration of the block."""
    cluster = LocalCluster(root, **options)  # type: ignore[arg-type]
    with cluster as state:
        yield state


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:  # not our child (another process started it): ask the kernel
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _works_in(pid: int, root: Path) -> bool:
    try:
        return Path(f"/proc/{pid}/cwd").readlink() == root
    except OSError:  # gone, or not ours to inspect
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
