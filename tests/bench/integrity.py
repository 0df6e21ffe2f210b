"""After the run: was every request answered, every job settled exactly once, every charge a posted image?

Reads the bot's database once the bot has stopped (the jobs table and the quota ledger) and sets it beside
what the fake Discord saw. Any problem found makes the benchmark exit non-zero.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.bot_bench import image_posts
from tests.e2e.harness import is_status
from tests.fakes.discord import FakeDiscord, InteractionRecord

DEFERRED = 5


@dataclass
class Integrity:
    problems: list[str] = field(default_factory=list)
    summary: str = ""

    def fail(self, count: int, what: str) -> None:
        if count:
            self.problems.append(f"{count} {what}")


def check(database: Path, discord: FakeDiscord, records: list[InteractionRecord]) -> Integrity:
    result = Integrity()
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        jobs = db.execute(
            "SELECT jobs.id, jobs.state, jobs.error, jobs.status_message_id, quota_ledger.state"
            " FROM jobs LEFT JOIN quota_ledger ON quota_ledger.job_id = jobs.id"
        ).fetchall()
        orphans = db.execute("SELECT COUNT(*) FROM quota_ledger WHERE job_id NOT IN (SELECT id FROM jobs)").fetchone()
    by_message = {status_id: (job_id, state, ledger) for job_id, state, _, status_id, ledger in jobs}
    seen: set[str] = set()
    unanswered = refused = no_job = unsettled = uncharged = overcharged = untold = 0
    for record in records:
        if not record.acknowledged:  # Discord said "the application did not respond": no job, no charge
            unanswered += 1
            continue
        if record.response_type != DEFERRED or record.original is None:
            refused += 1
            continue
        found = by_message.get(record.original.id)
        if found is None:
            no_job += 1
            continue
        job_id, state, ledger = found
        seen.add(job_id)
        images = len(image_posts(record.requests))
        if state not in ("done", "failed", "cancelled") or ledger not in ("committed", "refunded"):
            unsettled += 1
        elif state == "done":
            uncharged += ledger != "committed"
            overcharged += images != 1
        else:
            overcharged += ledger == "committed" or images > 0
            final = record.message
            untold += final is None or final.loading or is_status(final)
    posted = len(image_posts(discord.requests))
    ledger_totals = Counter(ledger for *_, ledger in jobs)
    result.fail(refused, "request(s) refused (the benchmark's limits are too low)")
    result.fail(no_job, "acknowledged request(s) without a job")
    result.fail(unsettled, "job(s) never settled")
    result.fail(uncharged, "done job(s) not charged")
    result.fail(overcharged, "job(s) charged without exactly one image, or refunded with one")
    result.fail(untold, "refunded job(s) whose requester was never told")
    result.fail(len(jobs) - len(seen), "job(s) no request of the benchmark asked for")
    result.fail(orphans[0] if orphans else 0, "ledger row(s) without a job")
    if ledger_totals["committed"] != posted:
        result.problems.append(f"{ledger_totals['committed']} charged but {posted} images posted")
    result.fail(len(discord.violations), "request(s) the real Discord would refuse")
    states = Counter(state for _, state, *_ in jobs)
    errors = Counter(error for _, state, error, *_ in jobs if state != "done")
    result.summary = (
        f"{len(records)} requests ({unanswered} not acknowledged in time), {len(jobs)} jobs ({dict(states)}), "
        f"ledger {dict(ledger_totals)}, {posted} images posted; endings other than an image: {dict(errors)}"
    )
    return result
