"""The chaos suite's table in the terminal summary: one line per fault (no-shows, follow-up tasks, duplicates, missing
ones, drain time), read from the fault tests' user properties. The hook lives in tests/conftest.py, which the
pytest-xdist controller loads (it does not collect, so it never loads tests/chaos/conftest.py)."""

from __future__ import annotations

import json
from typing import Any

SUMMARY_PROPERTY = "chaos"
SUMMARY_COLUMNS = {"fault", "outcome", "no_shows", "follow_ups", "duplicates", "missing", "drain_seconds"}


def write_summary(terminalreporter: Any) -> None:
    rows = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == SUMMARY_PROPERTY:
                    rows.append({**json.loads(value), "outcome": report.outcome})
    if not rows:
        return
    terminalreporter.section("chaos: one follow-up task per no-show, per fault")
    header = f"{'fault':34} {'outcome':8} {'no-shows':>8} {'follow-ups':>10} {'dup':>5} {'missing':>7} {'drain s':>8}"
    terminalreporter.write_line(header)
    for row in sorted(rows, key=lambda r: str(r["fault"])):
        drain = "-" if row.get("drain_seconds") is None else f"{row['drain_seconds']:.1f}"
        terminalreporter.write_line(
            f"{row['fault']:34} {row['outcome']:8} {row['no_shows']:>8} {row['follow_ups']:>10} "
            f"{row['duplicates']:>5} {row['missing']:>7} {drain:>8}"
        )
        notes = {k: v for k, v in row.items() if k not in SUMMARY_COLUMNS}
        if notes:
            terminalreporter.write_line(f"    {json.dumps(notes, separators=(',', ':'))}")
