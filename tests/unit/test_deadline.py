"""Deadlines on one shared timer behave like asyncio.timeout_at: late blocks raise TimeoutError,
blocks that finish in time are untouched, outside cancellation stays cancellation, scopes nest,
and one timer serves many requests."""

from __future__ import annotations

import asyncio

import pytest

from rung.router.deadline import Deadlines


async def _sleep_within(deadlines: Deadlines, budget: float, sleep: float) -> str:
    loop = asyncio.get_running_loop()
    with deadlines.within(loop.time() + budget):
        await asyncio.sleep(sleep)
    return "done"


def test_a_block_past_its_deadline_raises_timeout_error_on_time() -> None:
    async def main() -> float:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await _sleep_within(deadlines, 0.05, 10)
        return loop.time() - start

    took = asyncio.run(main())
    assert 0.04 <= took < 1.0


def test_blocks_that_finish_in_time_return_and_leave_nothing_behind() -> None:
    async def main() -> tuple[list[str], int]:
        deadlines = Deadlines()
        done = await asyncio.gather(*(_sleep_within(deadlines, 5, 0.001) for _ in range(50)))
        return list(done), len(deadlines._scopes)

    done, left = asyncio.run(main())
    assert done == ["done"] * 50
    assert left == 0


def test_one_timer_serves_many_scopes_and_only_the_late_ones_time_out() -> None:
    async def main() -> list[str]:
        deadlines = Deadlines()

        async def one(budget: float) -> str:
            try:
                return await _sleep_within(deadlines, budget, 0.2)
            except TimeoutError:
                return "timeout"

        tasks = [one(b) for b in (0.05, 5, 0.1, 5)]
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == ["timeout", "done", "timeout", "done"]


def test_an_earlier_deadline_rearms_the_timer() -> None:
    async def main() -> tuple[str, float]:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        slow = asyncio.create_task(_sleep_within(deadlines, 30, 0.3))
        await asyncio.sleep(0)  # the 30 s deadline arms the timer first
        start = loop.time()
        with pytest.raises(TimeoutError):
            await _sleep_within(deadlines, 0.05, 10)
        took = loop.time() - start
        return await slow, took

    result, took = asyncio.run(main())
    assert result == "done"
    assert took < 1.0


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        task = asyncio.create_task(_sleep_within(deadlines, 5, 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not deadlines._scopes

    asyncio.run(main())


def test_nested_scopes_both_expired_raise_one_timeout_at_the_outer_scope() -> None:
    async def main() -> str:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        seen = "none"
        try:
            with deadlines.within(loop.time() + 0.05):
                try:
                    with deadlines.within(loop.time() + 0.05):
                        await asyncio.sleep(10)
                except TimeoutError:
                    seen = "inner"
                    raise
        except TimeoutError:
            seen = seen + "+outer" if seen != "none" else "outer"
        return seen

    # Like asyncio.timeout: the inner scope sees the outer scope's cancellation still pending and
    # lets it through, and the outer scope turns it into the TimeoutError.
    assert asyncio.run(main()) == "outer"


def test_an_inner_deadline_that_expires_is_caught_inside_the_outer_scope() -> None:
    async def main() -> str:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        with deadlines.within(loop.time() + 5):
            try:
                with deadlines.within(loop.time() + 0.05):
                    await asyncio.sleep(10)
            except TimeoutError:
                pass
            await asyncio.sleep(0.01)  # the outer scope is still live and uncancelled
            return "outer survived"

    assert asyncio.run(main()) == "outer survived"


def test_a_scope_outside_a_task_is_refused() -> None:
    deadlines = Deadlines()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # A plain callback runs with no current task.
        future: asyncio.Future[BaseException] = loop.create_future()

        def callback() -> None:
            try:
                deadlines.within(loop.time() + 1).__enter__()
            except RuntimeError as exc:
                future.set_result(exc)

        loop.call_soon(callback)
        error = await future
        assert "task" in str(error)

    asyncio.run(main())


def test_a_new_event_loop_starts_clean() -> None:
    deadlines = Deadlines()
    assert asyncio.run(_sleep_within(deadlines, 5, 0.001)) == "done"
    with pytest.raises(TimeoutError):
        asyncio.run(_sleep_within(deadlines, 0.02, 10))
    assert asyncio.run(_sleep_within(deadlines, 5, 0.001)) == "done"
