"""Reconnect backoff of the server-backed feeds: exponential, capped, with full jitter."""

from __future__ import annotations

import itertools
import random
import statistics

from keyfob.stores._feedloop import reconnect_delays


def test_each_wait_lies_between_zero_and_its_doubling_ceiling_capped_at_two_seconds() -> None:
    ceilings = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    for seed in range(200):
        waits = list(itertools.islice(reconnect_delays(random.Random(seed)), len(ceilings)))
        assert all(0.0 <= w <= c for w, c in zip(waits, ceilings, strict=True)), (seed, waits)


def test_waits_are_spread_over_the_whole_range_so_a_fleet_does_not_reconnect_at_once() -> None:
    # 1000 processes that lost the server at the same moment: their 8th attempt (ceiling 2 s).
    rng = random.Random(11)
    eighth = [next(itertools.islice(reconnect_delays(rng), 7, None)) for _ in range(1000)]
    assert min(eighth) < 0.1 and max(eighth) > 1.9
    assert 0.9 < statistics.mean(eighth) < 1.1  # uniform over [0, 2]: mean 1
    buckets = [sum(1 for w in eighth if i * 0.5 <= w < (i + 1) * 0.5) for i in range(4)]
    assert all(200 <= b <= 300 for b in buckets), buckets  # no clustering in any half second


def test_the_same_seed_gives_the_same_waits_and_a_new_iterator_starts_over() -> None:
    a = list(itertools.islice(reconnect_delays(random.Random(7)), 10))
    b = list(itertools.islice(reconnect_delays(random.Random(7)), 10))
    assert a == b and len(set(a)) == 10
    assert next(reconnect_delays(random.Random(7), first=1.0, cap=1.0)) <= 1.0
