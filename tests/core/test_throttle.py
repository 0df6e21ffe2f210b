"""The status edit throttle: one edit per interval, the newest waiting one wins, and a dropped key sends nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from core.throttle import EditThrottle


def recorder(sent: list[str], text: str):
    async def action() -> None:
        sent.append(text)

    return action


async def test_a_dropped_key_never_sends_its_waiting_edit() -> None:
    throttle = EditThrottle(0.2)
    sent: list[str] = []
    throttle.submit("job", recorder(sent, "position 2"))
    await asyncio.sleep(0.01)
    throttle.submit("job", recorder(sent, "position 1"))  # waits for the interval
    throttle.drop("job")
    await asyncio.sleep(0.3)
    assert sent == ["position 2"]
    throttle.submit("job", recorder(sent, "again"))  # a dropped key starts afresh
    await asyncio.sleep(0.01)
    assert sent == ["position 2", "again"]
    throttle.drop("never seen")


async def test_the_newest_waiting_edit_wins_and_the_final_one_goes_at_once() -> None:
    throttle = EditThrottle(0.2)
    sent: list[str] = []
    for text in ("first", "second", "third"):
        throttle.submit("job", recorder(sent, text))
        await asyncio.sleep(0)
    await asyncio.sleep(0.3)
    assert sent == ["first", "third"]
    throttle.submit("job", recorder(sent, "fourth"))
    await throttle.finish("job", recorder(sent, "image"))
    await asyncio.sleep(0.3)
    assert sent == ["first", "third", "image"]


async def test_an_edit_waits_for_its_turn_and_the_final_one_does_not() -> None:
    allowed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def turn() -> AsyncIterator[None]:
        await allowed.wait()  # more urgent work is going on
        yield

    throttle = EditThrottle(0, turn=turn)
    sent: list[str] = []
    throttle.submit("job", recorder(sent, "position 3"))
    throttle.submit("other job", recorder(sent, "position 4"))
    await asyncio.sleep(0.05)
    assert sent == []
    await throttle.finish("job", recorder(sent, "the image"))
    assert sent == ["the image"]  # and the waiting edit of that job is dropped
    allowed.set()
    await asyncio.sleep(0.01)
    assert sent == ["the image", "position 4"]
