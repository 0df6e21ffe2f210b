"""A throwaway PostgreSQL server for the tests, from the machine's own binaries (registered in tests/conftest.py).

`postgres_cluster` (session): `initdb` + `pg_ctl` in a temporary folder, listening on a free port of 127.0.0.1
(password login) and on a Unix socket in that folder (the superuser, for creating databases); stopped and deleted
at the end. `postgres_url` (function): a fresh, empty database owned by a non-superuser role, as a
`postgresql://` URL with a password; dropped after the test. Never the server of the machine (port 5432).

Without the binaries the tests that need them skip, saying why; with CI_REQUIRE_POSTGRES=1 they fail instead.
initdb refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

SERVER_USER = "postgres"  # who runs the server when the tests run as root
APP_ROLE = "bot"


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: from PATH, `pg_config --bindir`, or Debian's folders."""
    candidates = [Path(found).resolve().parent for name in ("pg_ctl", "initdb") if (found := shutil.which(name))]
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            output = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(output.stdout.strip()))
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(debian, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)[::-1]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


class PostgresCluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="doubao-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.password = f"pw-{secrets.token_hex(8)}:@/"  # characters a URL must escape
        self._as_server_user: list[str] = []
        self._databases = 0
        self._role_created = False
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as_server_user = ["runuser", "-u", SERVER_USER, "--"]

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as_server_user, *command], cwd=self.root, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        initdb = str(self.bindir / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256")  # fmt: skip
        for attempt in range(3):
            self.port = _free_port()
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                    "max_connections = 200\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                )
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                          "-w", "-t", "60", "start")  # fmt: skip
                return
            except subprocess.CalledProcessError:
                log = (self.root / "server.log").read_text(errors="replace")
                if attempt == 2 or "could not bind" not in log:  # only a port taken meanwhile is worth a retry
                    raise RuntimeError(f"PostgreSQL did not start; its log:\n{log[-3000:]}") from None

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{APP_ROLE}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    async def admin(self) -> asyncpg.Connection:
        """The superuser, through the Unix socket."""
        return await asyncpg.connect(host=str(self.root), port=self.port, user="postgres", database="postgres")

    async def create_database(self) -> str:
        self._databases += 1
        name = f"test_{self._databases}"
        connection = await self.admin()
        try:
            if not self._role_created:
                await connection.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{self.password}'")
                self._role_created = True
            await connection.execute(f"CREATE DATABASE {name} OWNER {APP_ROLE}")
        finally:
            await connection.close()
        return name

    async def drop_database(self, name: str) -> None:
        connection = await self.admin()
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await connection.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (CI_REQUIRE_POSTGRES=1: PostgreSQL is required)", pytrace=False)
    pytest.skip(reason)


def pytest_report_header() -> str:
    bindir = find_bindir()
    return f"postgresql: {bindir}" if bindir else "postgresql: binaries not found, its tests will skip"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = find_bindir()
    if bindir is None:
        _unavailable(
            "PostgreSQL's initdb and pg_ctl were not found (PATH, pg_config --bindir, /usr/lib/postgresql/*/bin);"
            " `scripts/setup --dev` installs Debian's postgresql package"
        )
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            _unavailable(f"running as root, the test server needs a '{SERVER_USER}' user to run as")
        if not shutil.which("runuser"):
            _unavailable("running as root, the test server needs `runuser` to run as another user")
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def postgres_url(postgres_cluster: PostgresCluster) -> AsyncIterator[str]:
    name = await postgres_cluster.create_database()
    yield postgres_cluster.url(name)
    await postgres_cluster.drop_database(name)
