"""The broker's files and the subscriber's SQLite store are the owner's only (no broker)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from govbus.broker.local import BrokerSecurity, LocalCluster
from govbus.consumers.stores.sqlite import SQLiteStore


@pytest.fixture
def careless_umask():
    """A usual umask (022), which would leave new files world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_broker_configuration_and_folders_are_owner_only(tmp_path: Path, careless_umask) -> None:
    cluster = LocalCluster(tmp_path, ports=[(19092, 19093)], security=BrokerSecurity("s3cret-admin"))
    node = cluster.nodes[0]
    (node.directory / "logs").mkdir(parents=True)
    (node.directory / "logs").chmod(0o755)  # made world-readable by an earlier version
    cluster._write_configuration(node)
    for folder in (tmp_path / "broker", node.directory, node.directory / "data", node.directory / "logs"):
        assert _mode(folder) == 0o700, folder
    for name in ("server.properties", "log4j2.properties"):
        assert _mode(node.directory / name) == 0o600, name


def test_the_broker_jvm_runs_with_an_owner_only_umask_and_private_console_and_pid_files(
        tmp_path: Path, careless_umask) -> None:
    fake_java = tmp_path / "java"
    fake_java.write_text('#!/bin/sh\numask > "$(dirname "$0")/umask.txt"\nexit 0\n')
    fake_java.chmod(0o755)
    cluster = LocalCluster(tmp_path / "home", ports=[(19092, 19093)])
    node = cluster.nodes[0]
    process = cluster._launch(str(fake_java), tmp_path, node)
    process.wait(30)
    assert (tmp_path / "umask.txt").read_text().strip() == "0077", "files the JVM makes are owner-only"
    assert _mode(node.directory / "logs" / "console.log") == 0o600
    assert _mode(node.pid_file) == 0o600


def test_the_sqlite_store_and_its_journal_files_are_owner_only(tmp_path: Path, careless_umask) -> None:
    path = tmp_path / "health.db"
    store = SQLiteStore(str(path))
    try:
        store.ensure_table("population", {"name": "text"})
        assert _mode(path) == 0o600
        journals = [tmp_path / f"health.db{suffix}" for suffix in ("-wal", "-shm")]
        assert all(journal.exists() for journal in journals), "write-ahead logging is on"
        assert [_mode(journal) for journal in journals] == [0o600, 0o600]
    finally:
        store.close()


def test_an_existing_world_readable_sqlite_store_is_made_owner_only(tmp_path: Path, careless_umask) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(str(path)).close()
    path.chmod(0o644)
    SQLiteStore(str(path)).close()
    assert _mode(path) == 0o600


def test_the_admin_password_is_never_on_the_storage_tools_command_line(tmp_path: Path, careless_umask) -> None:
    """The format step gets its arguments from an owner-only @argfile, deleted after the run."""
    fake_java = tmp_path / "java"
    fake_java.write_text("""#!/bin/sh
log="$(dirname "$0")"
for argument in "$@"; do
  printf '%s\\n' "$argument" >> "$log/argv"
  case "$argument" in @*) file="${argument#@}"; stat -c %a "$file" >> "$log/modes"; cat "$file" >> "$log/argfiles";; esac
done
echo fake-cluster-id
""")
    fake_java.chmod(0o755)
    password = "Admin-Password-9xQ"
    cluster = LocalCluster(tmp_path / "home", ports=[(19092, 19093)], security=BrokerSecurity(password))
    cluster._format_if_new(str(fake_java), tmp_path / "libs")
    command_lines = (tmp_path / "argv").read_text()
    assert password not in command_lines
    assert command_lines.count("@") == 2, "random-uuid and format each read an argfile"
    assert (tmp_path / "modes").read_text().split() == ["600", "600"]
    argfiles = (tmp_path / "argfiles").read_text()
    assert f'"SCRAM-SHA-512=[name=admin,password={password}]"' in argfiles and '"kafka.tools.StorageTool"' in argfiles
    assert not list((tmp_path / "home" / "broker").glob("*.args")), "the argfiles are deleted"
