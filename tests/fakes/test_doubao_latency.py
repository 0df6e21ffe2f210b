"""The fake 302.ai's latency knob, which the benchmark subtracts from each job's time."""

from __future__ import annotations

import time

import aiohttp

from tests.fakes.doubao_server import DRAW_PATH, FakeDoubao


async def test_latency_holds_each_answer_that_long_after_its_request_and_is_recorded() -> None:
    async with FakeDoubao() as fake, aiohttp.ClientSession() as session:
        fake.latency = lambda payload: 0.2 if payload["prompt"] == "slow" else 0.0
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        for prompt in ("slow", "quick"):
            started = time.monotonic()
            async with session.post(fake.base_url + DRAW_PATH, json={"prompt": prompt}, headers=headers) as response:
                assert response.status == 200
                assert (await response.json())["code"] == 10000
            if prompt == "slow":
                assert time.monotonic() - started >= 0.2
    assert [r.latency for r in fake.requests] == [0.2, 0.0]


async def test_no_latency_by_default() -> None:
    async with FakeDoubao() as fake, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        async with session.post(fake.base_url + DRAW_PATH, json={"prompt": "a"}, headers=headers) as response:
            assert response.status == 200
    assert fake.requests[0].latency is None
