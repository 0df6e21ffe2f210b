"""A store that counts what the bot asks of it, to hold the request path to a few reads and writes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from storage import Store


class CountingStore:
    """Forwards every call to the real store and notes (loop time, method name) for each."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: list[tuple[float, str]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute) or name.startswith("_"):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((asyncio.get_running_loop().time(), name))
            return await attribute(*args, **kwargs)

        return counted

    def names(self, *, since: float = float("-inf"), until: float = float("inf")) -> list[str]:
        return [name for at, name in self.calls if since <= at < until]

    def reset(self) -> None:
        self.calls.clear()


def counting(store: Store) -> Store:
    return CountingStore(store)  # type: ignore[return-value]  # a transparent proxy of the Store protocol


StoreWrapper = Callable[[Store], Store]
