"""What is alive when start-up is done is left out of the collector's passes; what comes later is not."""

from __future__ import annotations

import gc

from core.heap import freeze_long_lived_objects


def test_freezing_leaves_out_what_lives_and_collects_what_comes_later() -> None:
    long_lived: list[object] = ["a guild cached at start-up"]
    try:
        freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
        assert not any(obj is long_lived for obj in gc.get_objects())  # frozen: no pass walks it
        later: list[object] = []
        later.append(later)  # a cycle only the collector can free
        assert any(obj is later for obj in gc.get_objects())
    finally:
        gc.unfreeze()  # the rest of the test run collects as usual
