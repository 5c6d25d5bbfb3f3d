"""A real PostgreSQL for the tests: initdb and pg_ctl on a temporary dir, on a Unix socket.

One cluster per test session (:func:`pg_cluster`); each test that needs a store
gets a fresh database in it (:func:`pg_url`). The binaries are found through
``pg_config --bindir``, then the usual Debian paths. As root (CI), the server
runs as the ``postgres`` user, since PostgreSQL refuses to run as root.

Where no PostgreSQL is installed the tests that need one are skipped with the
reason, except under CI (``CI`` set), where that is a failure: `.ci/run`
installs Debian's postgresql package.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PgCluster", "dbname_of", "find_pg_bindir", "pg_cluster", "pg_url", "wait_until"]

_names = itertools.count()


def find_pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are, or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/usr/bin"]
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


class PgCluster:
    """One PostgreSQL server in a directory of its own, listening on a socket there."""

    def __init__(self, bindir: Path, root: Path, name: str = "primary") -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / name
        self.sockdir = root / f"{name}-sock"
        self.port = 5432
        self.prefix = _as_server_user()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def _own(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        if self.prefix:
            shutil.chown(path, "postgres", "postgres")

    def initdb(self) -> None:
        """Make the cluster (trust auth on the socket, fsync off: a test machine)."""
        self._own(self.data)
        self._own(self.sockdir)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        self._configure()

    def _configure(self) -> None:
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                "\nlisten_addresses = ''\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                f"port = {self.port}\n"
                # Durability against a power cut is the machine's business; a
                # test cluster survives process kills without fsync.
                "fsync = off\nfull_page_writes = off\n"
                "max_connections = 200\nwal_level = replica\nmax_wal_senders = 4\n"
                "hot_standby = on\n"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.sockdir / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, or ``immediate`` for a crash)."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
            check=False,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends die with it)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

    def standby(self, name: str = "standby") -> PgCluster:
        """A streaming standby of this server, started."""
        other = PgCluster(self.bindir, self.root, name)
        other._own(other.data)
        other._own(other.sockdir)
        self._run(
            str(self.bindir / "pg_basebackup"), "-D", str(other.data), "-h", str(self.sockdir),
            "-p", str(self.port), "-U", "postgres", "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        conf = other.data / "postgresql.conf"
        text = conf.read_text().replace(
            f"unix_socket_directories = '{self.sockdir}'",
            f"unix_socket_directories = '{other.sockdir}'",
        )
        conf.write_text(text)
        other.start()
        return other

    def promote(self) -> None:
        """Promote a standby to primary and wait until it accepts writes."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "promote")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql; its output."""
        out = subprocess.run(
            [
                str(self.bindir / "psql"), "-h", str(self.sockdir), "-p", str(self.port),
                "-U", "postgres", "-d", dbname, "-At", "-c", sql,
            ],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return out.stdout.strip()

    def url(self, dbname: str) -> str:
        """The libpq URL of a database of this server."""
        return f"postgresql://postgres@/{dbname}?host={self.sockdir}&port={self.port}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"kms{os.getpid()}_{next(_names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)


def dbname_of(url: str) -> str:
    """The database name in a URL that :meth:`PgCluster.url` made."""
    return url.split("@/", 1)[1].split("?", 1)[0]


def start_cluster() -> tuple[PgCluster, Path]:
    """A started cluster in a new temporary dir (skips or fails without PostgreSQL)."""
    bindir = find_pg_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL binaries not found (pg_config, /usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="kmspg"))
    os.chmod(root, 0o755)
    cluster = PgCluster(bindir, root)
    cluster.initdb()
    cluster.start()
    return cluster, root


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL server."""
    cluster, root = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh database in the session's server."""
    return pg_cluster.new_database()


def wait_until(predicate: object, timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
