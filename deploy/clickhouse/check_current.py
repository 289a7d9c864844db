#!/usr/bin/env python3
"""Applies every migration of deploy/clickhouse/migrations/ to a current ClickHouse engine
(chDB, ClickHouse in-process: `pip install chdb`), statement by statement as `vigil migrate`
splits them, and fails naming each statement the engine refuses. The test server is 18.16;
this proves the same SQL on a current release (the production issue asks for both). Then runs
every query of the dashboard (serve/sql/*.sql) with its example binds, and every statement of
the Grafana dashboards (deploy/grafana/dashboards/*.json), the same way. With `--compare FILE NOW`,
then loads fixtures/compare.sql dated at NOW (epoch seconds) and prints what each statement of FILE returns (JSON), for the
test that compares the two engines' answers."""

import glob
import json
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


def bound(sql, binds):
    """The query with each `?` replaced by the next example bind."""
    values = iter(binds)
    return "".join(next(values) if c == "?" else c for c in sql)


def dashboard_queries(db, directory):
    """Runs serve/sql/*.sql as `vigil serve` sends them; returns (run, refused)."""
    with open(os.path.join(directory, "local_today.sql"), encoding="utf-8") as file:
        today = file.read().strip()
    db.query("USE vigil")
    run, refused = 0, 0
    for path in sorted(glob.glob(os.path.join(directory, "*.sql"))):
        if path.endswith("local_today.sql"):
            continue
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
        binds = []
        for line in lines:
            if line.startswith("-- binds:"):
                binds = [b.strip() for b in line[len("-- binds:"):].split(",")]
        sql = "\n".join(l for l in lines if not l.startswith("--"))
        try:
            db.query(bound(sql.replace("{today}", today), binds))
            run += 1
        except Exception as error:  # chDB raises its own error type per release
            refused += 1
            print(f"{os.path.basename(path)}\n    {str(error)[:500]}")
    return run, refused


def grafana_statements(directory):
    """(where, SQL) of every panel and variable of the Grafana dashboards, variables bound."""
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as file:
            dashboard = json.load(file)
        name = os.path.basename(path)
        for variable in dashboard.get("templating", {}).get("list", []):
            yield f"{name}: variable {variable['name']}", variable["query"]
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                sql = target["rawSql"].replace("${definition}", "cn-nbphs-2017/v1")
                yield f"{name}: {panel['title']}", sql


def grafana_queries(db, directory):
    """Runs every statement of the Grafana dashboards; returns (run, refused)."""
    db.query("USE vigil")
    run, refused = 0, 0
    for where, sql in grafana_statements(directory):
        try:
            db.query(sql)
            run += 1
        except Exception as error:  # chDB raises its own error type per release
            refused += 1
            print(f"{where}\n    {str(error)[:500]}")
    return run, refused


def access_statements(db, path):
    """Parses every statement of grants.sql on this engine (chDB has no users to run them as)
    and checks that each setting a profile locks exists here; returns (parsed, refused)."""
    with open(path, encoding="utf-8") as file:
        sql = file.read()
    known = set(db.query("SELECT name FROM system.settings", "CSV").data().replace('"', "").split())
    parsed, refused = 0, 0
    for statement in statements(sql, "vigil"):
        try:
            db.query("EXPLAIN AST " + statement)
            parsed += 1
        except Exception as error:  # chDB raises its own error type per release
            refused += 1
            print(f"grants.sql: {statement.splitlines()[0]}\n    {str(error)[:500]}")
            continue
        if statement.startswith("CREATE SETTINGS PROFILE"):
            locked = statement.rsplit(" SETTINGS ", 1)[1].rstrip(";")
            for constraint in locked.split(","):
                name = constraint.split("=")[0].strip()
                if name not in known:
                    refused += 1
                    print(f"grants.sql: {name} is not a setting of this engine")
    return parsed, refused


def compare(db, here, path, now):
    """Loads the comparison fixture dated at `now` (epoch seconds), runs the statements of the
    JSON file at `path` (a list of {"name", "sql"}, `{db}` for the database) and prints their
    results as one JSON line."""
    with open(os.path.join(here, "fixtures", "compare.sql"), encoding="utf-8") as file:
        for statement in statements(file.read(), "vigil"):
            db.query(statement.replace("{now}", now))
    with open(path, encoding="utf-8") as file:
        wanted = json.load(file)
    db.query("USE vigil")
    results = {}
    for item in wanted:
        try:
            results[item["name"]] = db.query(item["sql"].replace("{db}", "vigil"), "TSV").data()
        except Exception as error:  # chDB raises its own error type per release
            results[item["name"]] = {"error": str(error)[:500]}
    print("RESULTS " + json.dumps(results, ensure_ascii=False))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    db = session.Session()
    version = db.query("SELECT version()", "CSV").data().strip()
    for name in ("vigil", "vigil_insurance", "vigil_audit"):
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
    queries, refused = dashboard_queries(db, os.path.join(here, "..", "..", "serve", "sql"))
    failures += refused
    panels, refused = grafana_queries(db, os.path.join(here, "..", "grafana", "dashboards"))
    failures += refused
    grants, refused = access_statements(db, os.path.join(here, "grants.sql"))
    failures += refused
    print(f"ClickHouse {version}: {applied} statements applied, {queries} dashboard queries and "
          f"{panels} Grafana statements run, {grants} access statements parsed, {failures} refused")
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(db, here, sys.argv[2], sys.argv[3])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
