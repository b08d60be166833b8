#!/usr/bin/env python3
"""Rewrites the generated part of an upgrade script from the current sql/ files.

An upgrade script sql/upgrades/jobq--A--B.sql is a hand-written migration
(tables, data, marks) followed by every function, view, trigger and their
comments from the current SQL files, in the order the extension installs
them, and security.sql (the grants). While B is unreleased, the SQL changes
often; this keeps the second part in step:

    python3 tests/bin/regen-upgrade.py sql/upgrades/jobq--0.2.0--0.3.0.sql

The migration part is everything before the first "-- <file>.sql" section
header; the migration must drop what it recreates (functions, views,
triggers). The upgrade test (tests/bin/upgrade-test.sh) then compares the
upgraded schema with a fresh install.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The order of extension/src/lib.rs, without schema.sql (tables) and
# security.sql (appended whole).
FILES = ["internal", "events", "history", "enqueue", "worker", "views", "details", "notify",
         "dependencies", "control", "maintenance", "limits", "backup"]
RULE = "-- ---------------------------------------------------------------------------\n"
KEEP = re.compile(r"^(CREATE (FUNCTION|VIEW|TRIGGER|OR REPLACE)|COMMENT ON (FUNCTION|VIEW)|DO \$\$)")


def statements(text):
    """Yields (leading comment lines, statement) in order."""
    lines = text.split("\n")
    i = 0
    pending = []
    while i < len(lines):
        line = lines[i]
        if line.strip() == "":
            if pending and pending[-1].strip() != "":
                pending.append(line)
            i += 1
            continue
        if line.lstrip().startswith("--"):
            pending.append(line)
            i += 1
            continue
        statement = []
        in_dollar = False
        while i < len(lines):
            current = lines[i]
            statement.append(current)
            code = current if in_dollar else current.split("--")[0]
            if current.count("$$") % 2 == 1:
                in_dollar = not in_dollar
            i += 1
            if not in_dollar and code.rstrip().endswith(";"):
                break
        while pending and pending[0].strip() == "":
            pending.pop(0)
        yield pending, "\n".join(statement)
        pending = []


def section(name, body):
    return f"\n{RULE}-- {name}.sql\n{RULE}{body}"


def main():
    script = sys.argv[1]
    text = open(script).read()
    marker = text.find(f"{RULE}-- {FILES[0]}.sql\n")
    if marker < 0:
        sys.exit(f"{script}: no '-- {FILES[0]}.sql' section header; nothing to regenerate")
    parts = [text[:marker].rstrip("\n") + "\n"]
    for name in FILES:
        kept = []
        for comments, statement in statements(open(f"{ROOT}/sql/{name}.sql").read()):
            if KEEP.match(statement.lstrip()):
                while comments and comments[-1].strip() == "":
                    comments.pop()
                kept.append("\n".join(comments + [statement]))
        parts.append(section(name, "\n\n".join(kept) + "\n"))
    parts.append(section("security", open(f"{ROOT}/sql/security.sql").read()))
    open(script, "w").write("".join(parts))


main()
