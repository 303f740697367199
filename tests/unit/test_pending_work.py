"""``keyfob._pending_work.run_from_sync``: how Django's and Flask's sync code runs an engine call."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from keyfob._pending_work import is_quiet, run_from_sync


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_fresh_loop_is_quiet(loop: asyncio.AbstractEventLoop) -> None:
    assert is_quiet(loop)


def test_a_loop_with_a_callback_ready_is_not_quiet(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon(lambda: None)
    assert not is_quiet(loop)


def test_a_loop_with_a_timer_due_is_not_quiet(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_at(loop.time() - 1, lambda: None)
    assert not is_quiet(loop)
    loop.call_at(loop.time() + 3600, lambda: None)  # a later timer alone does not count


def test_a_loop_whose_socket_has_data_is_not_quiet(loop: asyncio.AbstractEventLoop) -> None:
    a, b = socket.socketpair()
    try:
        got: list[bytes] = []
        loop.add_reader(a.fileno(), lambda: got.append(a.recv(10)))
        assert is_quiet(loop)
        b.send(b"x")
        assert not is_quiet(loop)
        assert not is_quiet(loop)  # the poll consumed nothing: the loop still sees the event
        run_from_sync(loop, asyncio.sleep(0), catch_up=True)
        assert got == [b"x"]  # caught up before the call
        loop.remove_reader(a.fileno())
    finally:
        a.close()
        b.close()


def test_a_message_that_arrived_between_calls_is_handled_before_the_next_call(
        loop: asyncio.AbstractEventLoop) -> None:
    a, b = socket.socketpair()
    try:
        seen: list[bytes] = []
        loop.add_reader(a.fileno(), lambda: seen.append(a.recv(10)))

        async def check() -> list[bytes]:
            return list(seen)

        assert run_from_sync(loop, check(), catch_up=True) == []
        b.send(b"revoked")
        assert run_from_sync(loop, check(), catch_up=True) == [b"revoked"]
        loop.remove_reader(a.fileno())
    finally:
        a.close()
        b.close()


def test_a_call_that_needs_no_io_runs_in_a_task_of_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    async def where() -> tuple[asyncio.AbstractEventLoop, bool]:
        return asyncio.get_running_loop(), asyncio.current_task() is not None

    assert run_from_sync(loop, where(), catch_up=True) == (loop, True)
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # nothing left set after the call


def test_a_call_that_suspends_is_finished_by_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    async def slow() -> str:
        async with asyncio.timeout(5):  # needs the current task
            await asyncio.sleep(0.01)
        return "done"

    assert run_from_sync(loop, slow(), catch_up=False) == "done"


def test_work_a_call_schedules_runs_before_it_returns(loop: asyncio.AbstractEventLoop) -> None:
    ran: list[str] = []

    async def schedule() -> None:
        asyncio.get_running_loop().call_soon(ran.append, "background")

    run_from_sync(loop, schedule(), catch_up=False)
    assert ran == ["background"]
    assert is_quiet(loop)


def test_a_calls_error_is_raised_to_the_caller(loop: asyncio.AbstractEventLoop) -> None:
    async def fail() -> None:
        raise LookupError("no such row")

    with pytest.raises(LookupError, match="no such row"):
        run_from_sync(loop, fail(), catch_up=True)
