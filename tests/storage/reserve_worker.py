"""A second process for the concurrency tests: `python -m tests.storage.reserve_worker NAME COUNT LIMIT`, with the
store's URL in STORE_URL. Opens the store, prints `ready`, waits for a line on stdin, then asks for COUNT
reservations at once (job ids NAME-0, NAME-1, ...) and prints how many were granted."""

from __future__ import annotations

import asyncio
import os
import sys

from storage import open_store
from tests.storage.helpers import reserve


async def main(name: str, count: int, limit: int) -> None:
    async with open_store(os.environ["STORE_URL"]) as store:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = await asyncio.gather(*(reserve(store, f"{name}-{n}", limit=limit) for n in range(count)))
        print(results.count(True), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
