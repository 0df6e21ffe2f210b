"""`scripts/bench`: measures the bot against the fakes on loopback and prints one table of figures and targets.

Exits 1 if an accepted request has no job, a job was not settled exactly once, a charge is not a posted image
or the store let anyone overspend; with --strict, 3 when a figure misses its target. See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tests.bench.bot_bench import BotBench, BotFigures, BotPlan
from tests.bench.integrity import Integrity, check
from tests.bench.report import MIB, NONE, Row, at_least, at_most, machine, ms_row, percentile, table
from tests.bench.store_bench import StoreFigures, store_throughput

FULL = BotPlan(
    sequential=20,
    latency=2.0,
    random_latency=(1.0, 3.0),
    throughput_jobs=200,
    burst=500,
    burst_users=100,
    burst_queued=500,
)
QUICK = BotPlan(
    sequential=3,
    latency=0.5,
    random_latency=(0.25, 0.75),
    throughput_jobs=20,
    burst=50,
    burst_users=10,
    burst_queued=50,
)
STORE_WRITERS = 50
STORE_PAIRS = {"full": 5000, "quick": 500}


def rows(bot: BotFigures, store: StoreFigures, plan: BotPlan) -> list[Row]:
    low, high = plan.random_latency
    fixed, random_ = f"L = {plan.latency:g} s", f"L in [{low:g}, {high:g}] s"
    burst = f"burst of {plan.burst} from {plan.burst_users} users, {plan.burst_queued} queued"
    limit = bot.concurrency / plan.latency
    out = [
        Row("start → ready (commands registered)", bot.startup, f"{bot.startup:.2f} s"),
        ms_row("ack p50, one request at a time", percentile(bot.single_acks, 50)),
        ms_row("ack p99, one request at a time", percentile(bot.single_acks, 99)),
        ms_row(f"ack p50, {burst}", percentile(bot.burst_acks, 50)),
        ms_row(f"ack p99, {burst}", percentile(bot.burst_acks, 99), at_most(500, "ms")),
        Row("burst requests not acknowledged", bot.burst_unacknowledged, str(bot.burst_unacknowledged), NONE),
    ]
    for name, values in ((fixed, bot.overhead_fixed), (random_, bot.overhead_random)):
        out += [
            ms_row(f"overhead p50, sequential, {name}", percentile(values, 50), at_most(50, "ms")),
            ms_row(f"overhead p99, sequential, {name}", percentile(values, 99), at_most(150, "ms")),
        ]
    out += [
        Row(
            f"throughput, {plan.throughput_jobs} queued, {fixed}, of {limit:g} jobs/s",
            pct := bot.throughput * 100,
            f"{pct:.0f} %",
            at_least(95, "%"),
        ),
        ms_row("longest event-loop stall in the burst", bot.burst_stall, at_most(50, "ms")),
        ms_row("longest stall of the fakes' own loop, same window", bot.fake_stall),
        Row("CPU the hypervisor took from the machine, same window", bot.burst_stolen, f"{bot.burst_stolen:.2f} s"),
        ms_row("bot CPU per burst request, same window", bot.burst_cpu_per_request, decimals=2),
        Row("idle RSS after start", mib := bot.idle_rss / MIB, f"{mib:.1f} MiB", at_most(80, "MiB")),
        Row("peak RSS", mib := bot.peak_rss / MIB, f"{mib:.1f} MiB"),
        ms_row("CPU per job (throughput run)", bot.cpu_per_job, decimals=1),
        Row("Discord requests per job (throughput run)", bot.requests_per_job, f"{bot.requests_per_job:.1f}"),
        Row(
            f"store reserve+commit/s, {STORE_WRITERS} writers",
            store.pairs_per_second,
            f"{store.pairs_per_second:,.0f}/s",
            at_least(2000, "/s"),
        ),
        Row("store overspend", store.overspend, str(store.overspend), NONE),
    ]
    return out


async def measure(plan: BotPlan, workdir: Path, store_pairs: int) -> tuple[BotFigures, StoreFigures, Integrity]:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    bench = BotBench(plan, workdir, say)
    try:
        figures = await bench.run()
    except BaseException:
        say(f"the run stopped; the bot's log is {workdir / 'bot-1.log'}")
        raise
    integrity = check(workdir / "bot.sqlite3", bench.discord, bench.records)
    if figures.exit_code != 0:
        integrity.problems.append(f"the bot exited with {figures.exit_code} on SIGTERM")
    say(f"the store alone: {STORE_WRITERS} writers, {store_pairs} reserve+commit pairs")
    # The store runs in this process, as it does in the bot's, whose start-up heap is frozen (core/heap.py): the
    # records of the run above would otherwise make every full garbage collection during it walk them all.
    del bench
    gc.collect()
    gc.freeze()
    store = await store_throughput(workdir / "store.sqlite3", writers=STORE_WRITERS, pairs=store_pairs)
    integrity.fail(store.overspend, "generation(s) over a limit in the store run (overspend)")
    integrity.fail(store.left_reserved, "reservation(s) left open in the store run")
    return figures, store, integrity


def setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts and L = 0.5 s: a smoke run (~1 min)")
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a figure misses its target")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=setting,
        metavar="NAME=VALUE",
        help="a bot setting for this run, e.g. STATUS_EDIT_INTERVAL_SECONDS=0 (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random latencies")
    parser.add_argument(
        "--validate", action="store_true", help="check every body against Discord's OpenAPI description (slower fake)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the bot's log and database here (default: a temporary folder)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = dict(args.set)
    plan = replace(QUICK if args.quick else FULL, settings=settings, seed=args.seed, validate=args.validate)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bot-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    bot, store, integrity = asyncio.run(measure(plan, workdir, STORE_PAIRS["quick" if args.quick else "full"]))
    results = rows(bot, store, plan)
    print(f"machine: {machine()}\n")
    print(table(results, markdown=args.markdown))
    print(f"\n{integrity.summary}")
    for problem in integrity.problems:
        print(f"PROBLEM: {problem}")
    if integrity.problems:
        print(f"the bot's log and database are in {workdir}")
        return 1
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.strict and any(row.verdict == "FAIL" for row in results):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
