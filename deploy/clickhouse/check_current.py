#!/usr/bin/env python3
"""Applies every migration of deploy/clickhouse/migrations/ to a current ClickHouse engine
(chDB, ClickHouse in-process: `pip install chdb`), statement by statement as `vigil migrate`
splits them, and fails naming each statement the engine refuses. The test server is 18.16;
this proves the same SQL on a current release (the production issue asks for both)."""

import glob
import os
import sys

try:
    from chdb import session
except ImportError:
    sys.exit("chdb is not installed: python3 -m pip install chdb (deploy/local/test.sh does)")


def statements(sql, database):
    """The statements of a migration file, as sinks/src/clickhouse/migrate.rs splits them."""
    current = ""
    for line in sql.splitlines():
        trimmed = line.strip()
        if trimmed.startswith("--") or not trimmed:
            continue
        current += line + "\n"
        if trimmed.endswith(";"):
            yield current.strip().rstrip(";").replace("{db}", database)
            current = ""
    if current.strip():
        yield current.strip().replace("{db}", database)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    db = session.Session()
    version = db.query("SELECT version()", "CSV").data().strip()
    for name in ("vigil", "vigil_insurance"):
        db.query(f"CREATE DATABASE IF NOT EXISTS {name}")
    failures, applied = 0, 0
    for path in sorted(glob.glob(os.path.join(here, "migrations", "*.sql"))):
        with open(path, encoding="utf-8") as file:
            sql = file.read()
        for statement in statements(sql, "vigil"):
            try:
                db.query(statement)
                applied += 1
            except Exception as error:  # chDB raises its own error type per release
                failures += 1
                first = statement.splitlines()[0]
                print(f"{os.path.basename(path)}: {first}\n    {str(error)[:500]}")
    print(f"ClickHouse {version}: {applied} statements applied, {failures} refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
