"""Time sanitized dumps (issue 18) against plain dumps of the same database.

    python benchmarks/sanitize.py                               # 200k rows, every connector
    python benchmarks/sanitize.py --rows 20000 --runs 1         # a quick look
    python benchmarks/sanitize.py --engines sqlite --connectors sqlite,dumpdata

For each engine, the example project's database is built once (run.py's build_database:
``bulk_fill --rows N``, N customers with long notes), then, median of --runs rounds that run
each command once in turn (run.py's measure_rounds and timed: whole processes, a sync first,
GNU time's peak RSS), per connector:

- ``snapctl dump --no-prepare --connector C``: the plain dump;
- the same with ``--sanitize`` and RULES below: every customer's email, name and notes
  rewritten (3N values), through the connector's scratch copy (or dumpdata's objects).

The table gives both times, the ratio and the difference, and the sanitized dump's seconds
per million values rewritten. Progress goes to stderr, the table to stdout as Markdown;
--json writes the results. The databases made are dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from run import (
    ENGINES,
    Measured,
    TextTable,
    Timing,
    build_database,
    measure_rounds,
    megabytes,
    number,
    snapctl,
    timed,
)

CONNECTORS = {
    "sqlite": ["sqlite", "dumpdata"],
    "postgresql": ["postgres", "postgres-template"],
    "mariadb": ["mysql"],
}
RULES = {
    "shop.Customer.email": "email",
    "shop.Customer.name": "name",
    "shop.Customer.notes": "text",
}
KEY = "benchmark-key"


@dataclass
class Result:
    rows: int
    engine: str
    connector: str
    runs: int
    built: int
    plain: Measured | None
    sanitized: Measured | None
    failures: dict[str, str]

    def as_json(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "engine": self.engine,
            "connector": self.connector,
            "runs": self.runs,
            "database_bytes": self.built,
            "plain_seconds": self.plain.seconds if self.plain else None,
            "sanitized_seconds": self.sanitized.seconds if self.sanitized else None,
            "plain_peak_rss_mb": self.plain.peak_rss_mb if self.plain else None,
            "sanitized_peak_rss_mb": self.sanitized.peak_rss_mb if self.sanitized else None,
            "failures": self.failures,
        }


def bench_connector(
    engine_env: dict[str, str], name: str, connector: str, rows: int, runs: int, work: Path
) -> tuple[Measured | None, Measured | None, dict[str, str]]:
    env = {
        **engine_env,
        "SNAPCTL_DIR": str(work / "snapshots"),
        "SNAPCTL_STATE_DIR": str(work / "state"),
        "SNAPCTL_PREPARE": "off",
        "EXAMPLE_SANITIZE": json.dumps(RULES),
        "SNAPCTL_SANITIZE_KEY": KEY,
    }
    dump = snapctl("dump", "--quiet", "--no-prepare", "--connector", connector)

    def measure(*extra: str) -> Measured:
        measured = timed([*dump, *extra], env)
        # Each snapshot goes at once: postgres-template keeps a copy on the server per dump.
        for snapshot in (work / "snapshots").iterdir():
            if snapshot.name[0].isdigit():
                timed(snapctl("delete", "--yes", "--quiet", snapshot.name), env, sync=False)
        return measured

    plain, sanitized = f"{connector} plain", f"{connector} --sanitize"
    timings = [
        Timing(plain, lambda: measure(), "snapctl"),
        Timing(sanitized, lambda: measure("--sanitize"), "snapctl"),
    ]
    rounds = measure_rounds(f"{rows:,} rows {name}", "dump", runs, timings)
    return rounds.medians.get(plain), rounds.medians.get(sanitized), rounds.failures


def bench_engine(name: str, rows: int, connectors: set[str], runs: int, work: Path) -> list[Result]:
    results = []
    with ENGINES[name](work) as engine:
        print(f"[{rows:,} rows {name}] building ...", file=sys.stderr)
        built = build_database(engine, rows)
        for connector in CONNECTORS[name]:
            if connector not in connectors:
                continue
            place = work / connector
            place.mkdir()
            plain, sanitized, failures = bench_connector(
                engine.env, name, connector, rows, runs, place
            )
            results.append(Result(rows, name, connector, runs, built, plain, sanitized, failures))
    return results


def results_table(results: list[Result]) -> TextTable:
    rows = []
    for r in results:
        plain = r.plain.seconds if r.plain else None
        sanitized = r.sanitized.seconds if r.sanitized else None
        both = plain is not None and sanitized is not None
        values = r.rows * len(RULES)
        rows.append(
            [
                f"{r.rows:,}",
                r.engine,
                r.connector,
                megabytes(r.built),
                number(plain, ".2f"),
                number(sanitized, ".2f"),
                f"{sanitized / plain:.2f}x" if both and plain else "-",  # type: ignore[operator]
                f"+{sanitized - plain:.2f}" if both else "-",  # type: ignore[operator]
                number(sanitized / (values / 1e6) if sanitized else None, ".2f"),
                number(r.sanitized.peak_rss_mb if r.sanitized else None, ".0f"),
            ]
        )
    notes = [f"{r.connector} on {r.engine}: {why}" for r in results for why in r.failures.values()]
    notes.append(
        f"median of {results[0].runs if results else 0} runs; rules: "
        + ", ".join(f"{k}={v}" for k, v in RULES.items())
    )
    return TextTable(
        title="Sanitized dump against a plain dump (seconds)",
        headers=[
            "rows",
            "engine",
            "connector",
            "database",
            "plain dump",
            "sanitized dump",
            "ratio",
            "difference",
            "s per 1M values",
            "peak RSS MB",
        ],
        left=3,
        rows=rows,
        notes=notes,
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="200000", help="bulk_fill rows, a comma list")
    parser.add_argument("--engines", default="sqlite,postgresql,mariadb")
    parser.add_argument(
        "--connectors", default=",".join(c for cs in CONNECTORS.values() for c in cs)
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def main() -> None:
    options = parse_arguments()
    connectors = set(options.connectors.split(","))
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="snapctl-sanitize-") as scratch:
        for rows in (int(r) for r in options.rows.split(",")):
            for name in options.engines.split(","):
                work = Path(scratch) / f"{rows}-{name}"
                work.mkdir()
                results += bench_engine(name, rows, connectors, options.runs, work)
                shutil.rmtree(work)
    table = results_table(results)
    table.print() if sys.stdout.isatty() else print(table.markdown())
    if options.json:
        options.json.write_text(json.dumps([r.as_json() for r in results], indent=2))


if __name__ == "__main__":
    main()
