"""keyfob.metrics: Prometheus counters and histograms, OpenTelemetry instruments and spans.

Scripted sessions on real engines (memory store; Redis for the feed), read back from a private
``CollectorRegistry`` and from the OpenTelemetry SDK's in-memory reader and exporter. Time is a
FakeClock; the only wait is for a Redis pub/sub delivery, bounded and polled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from keyfob import ConfigError, FakeClock, Keyfob, RequestMeta, TokenReuseDetected
from keyfob.metrics import Instrumentation, instrument
from tests.conftest import REDIS_URL, SECRET, require_redis

pytestmark = pytest.mark.anyio

STRATEGIES = ["jwt", "database", "hybrid"]


class Otel:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))

    def points(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.meters.shutdown()
    o.tracers.shutdown()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def cookies_of(issued: Any) -> dict[str, str]:
    return {c.name: c.value for c in issued.cookies}


async def make(strategy: str, clock: FakeClock, **kw: Any) -> Keyfob:
    fob = Keyfob(strategy=strategy, secret=SECRET, store="memory://", feed=None, clock=clock, **kw)
    await fob.start()
    return fob


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_validations_are_counted_and_timed_by_strategy_and_result(
    strategy: str, clock: FakeClock, registry: CollectorRegistry
) -> None:
    fob = await make(strategy, clock)
    try:
        instrument(fob, registry)
        issued = await fob.create("u1", {"role": "user"}, RequestMeta("203.0.113.1", "curl/8"), secure=True)
        jar = cookies_of(issued)
        for _ in range(3):
            assert (await fob.authenticate(jar, secure=True)).session is not None
        assert (await fob.authenticate({}, secure=True)).session is None
        garbled = {name: "x" + v[1:] for name, v in jar.items()}
        refused = await fob.authenticate(garbled, secure=True)
        assert refused.session is None and refused.reason is not None
        assert await fob.revoke(issued.session.id)
        gone = await fob.authenticate(jar, secure=True)
        assert gone.session is None and gone.reason is not None
    finally:
        await fob.close()

    total = "keyfob_session_validations_total"
    assert value(registry, total, strategy=strategy, result="ok") == 3
    assert value(registry, total, strategy=strategy, result="anonymous") == 1
    assert value(registry, total, strategy=strategy, result=refused.reason) >= 1
    assert value(registry, total, strategy=strategy, result=gone.reason) >= 1
    assert value(registry, "keyfob_session_validation_duration_seconds_count", strategy=strategy) == 6
    assert value(registry, "keyfob_session_validation_duration_seconds_sum", strategy=strategy) > 0
    assert value(registry, "keyfob_revocations_total", scope="session") == 1
    assert value(registry, "keyfob_session_events_total", event="created") == 1


async def test_refreshes_and_reuse_detection_are_counted(
    clock: FakeClock, registry: CollectorRegistry
) -> None:
    fob = await make("hybrid", clock, access_ttl=600, refresh_grace=10)
    try:
        instrument(fob, registry)
        issued = await fob.create("u1", secure=True)
        old_refresh = issued.refresh_token
        clock.advance(601)
        renewed = await fob.authenticate(cookies_of(issued), secure=True)  # transparent refresh
        assert renewed.session is not None and renewed.cookies
        clock.advance(60)
        with pytest.raises(TokenReuseDetected):
            await fob.refresh(old_refresh, secure=True)  # a copy of the rotated-away token
        with pytest.raises(Exception):  # noqa: B017 - any refusal; its code is what is counted
            await fob.refresh("A" * 43, secure=True)
    finally:
        await fob.close()
    assert value(registry, "keyfob_refresh_total", result="ok") == 1
    assert value(registry, "keyfob_refresh_total", result="reuse_detected") == 1
    assert value(registry, "keyfob_refresh_total", result="invalid_token") == 1
    assert value(registry, "keyfob_revocations_total", scope="reuse_detected") == 1


async def test_revocation_scopes(clock: FakeClock, registry: CollectorRegistry) -> None:
    fob = await make("database", clock, max_sessions_per_user=2)
    try:
        instrument(fob, registry)
        for _ in range(3):  # the third sign-in evicts the oldest
            await fob.create("u1", secure=True)
        await fob.create("u2", secure=True)
        assert await fob.revoke_user("u1") == 2
        await fob.bump_user_version("u2")
    finally:
        await fob.close()
    scopes = {s: value(registry, "keyfob_revocations_total", scope=s)
              for s in ("session", "user", "user_version", "session_limit")}
    assert scopes == {"session": 0, "user": 3, "user_version": 1, "session_limit": 1}


async def test_no_user_id_session_id_or_token_becomes_a_label_or_attribute(
    clock: FakeClock, registry: CollectorRegistry, otel: Otel
) -> None:
    secrets_seen: set[str] = set()
    for strategy in STRATEGIES:
        fob = await make(strategy, clock, access_ttl=600)
        try:
            instrument(fob, registry, opentelemetry=True, meter_provider=otel.meters,
                       tracer_provider=otel.tracers)
            user = f"user-{uuid.uuid4().hex}"
            issued = await fob.create(user, {"email": f"{user}@example.com"}, secure=True)
            jar = cookies_of(issued)
            secrets_seen |= {user, f"{user}@example.com", issued.session.id, *jar.values()}
            if issued.refresh_token:
                secrets_seen.add(issued.refresh_token)
            await fob.authenticate(jar, secure=True)
            clock.advance(601)
            again = await fob.authenticate(jar, secure=True)
            secrets_seen |= {c.value for c in again.cookies}
            if again.session is not None:
                secrets_seen.add(again.session.id)
            await fob.authenticate({k: v + "x" for k, v in jar.items()}, secure=True)
            await fob.revoke(issued.session.id)
            await fob.revoke_user(user)
            await fob.bump_user_version(user)
        finally:
            await fob.close()
    secrets_seen.discard("")

    label_values = {v for metric in registry.collect() for s in metric.samples
                    for k, v in s.labels.items() if k != "le"}  # le: a histogram's bucket bounds
    attribute_values = {str(v) for points in otel.points().values() for p in points
                        for v in (p.attributes or {}).values()}
    spans = otel.exporter.get_finished_spans()
    assert spans and {s.name for s in spans} == {"keyfob.authenticate"}
    span_values = {str(v) for s in spans for v in (s.attributes or {}).values()}
    everything = label_values | attribute_values | span_values
    assert label_values and attribute_values and span_values
    leaks = {v for v in everything for secret in secrets_seen if secret in v or (v in secret and len(v) > 8)}
    assert not leaks
    assert label_values <= {*STRATEGIES, "ok", "anonymous", "invalid_token", "session_expired",
                            "session_revoked", "token_reuse_detected", "store_unavailable", "session",
                            "user", "user_version", "session_limit", "reuse_detected", "other",
                            "created", "rolled", "rotated", "refreshed", "revoked", "expired",
                            "user_version_bumped", "signed_out"}


async def test_opentelemetry_instruments_and_spans_under_the_request_span(
    clock: FakeClock, registry: CollectorRegistry, otel: Otel
) -> None:
    fob = await make("database", clock)
    try:
        instrument(
            fob, registry, opentelemetry=True, meter_provider=otel.meters, tracer_provider=otel.tracers
        )
        jar = cookies_of(await fob.create("u1", secure=True))
        tracer = otel.tracers.get_tracer("the app")
        with tracer.start_as_current_span("GET /dashboard") as request_span:
            assert (await fob.authenticate(jar, secure=True)).session is not None
        await fob.revoke_user("u1")
    finally:
        await fob.close()
    spans = {s.name: s for s in otel.exporter.get_finished_spans()}
    child = spans["keyfob.authenticate"]
    assert child.parent is not None and child.parent.span_id == request_span.get_span_context().span_id
    assert dict(child.attributes or {}) == {"keyfob.strategy": "database", "keyfob.result": "ok"}
    assert child.end_time is not None and child.start_time is not None and child.end_time >= child.start_time
    points = otel.points()
    assert sum(p.value for p in points["keyfob.session.validations"]) == 1
    assert sum(p.count for p in points["keyfob.session.validation.duration"]) == 1
    assert [dict(p.attributes) for p in points["keyfob.revocations"]] == [{"keyfob.scope": "user"}]
    assert [p.value for p in points["keyfob.revocation.feed.connected"]] == [0]  # no feed: memory store


async def test_an_engine_that_is_not_instrumented_runs_the_plain_methods(clock: FakeClock) -> None:
    fob = await make("jwt", clock)
    try:
        for name in ("authenticate", "authenticate_token", "refresh"):
            assert getattr(fob, name).__func__ is getattr(Keyfob, name), name
        instrument(fob, CollectorRegistry())
        assert getattr(fob.authenticate, "__func__", None) is not Keyfob.authenticate
        with pytest.raises(ConfigError, match="already instrumented"):
            instrument(fob, CollectorRegistry())
    finally:
        await fob.close()


async def test_two_engines_share_one_registry(clock: FakeClock, registry: CollectorRegistry) -> None:
    a, b = await make("jwt", clock), await make("database", clock)
    try:
        instrument(a, registry)
        instrument(b, registry)
        for fob in (a, b):
            await fob.authenticate(cookies_of(await fob.create("u", secure=True)), secure=True)
    finally:
        await a.close()
        await b.close()
    assert value(registry, "keyfob_session_validations_total", strategy="jwt", result="ok") == 1
    assert value(registry, "keyfob_session_validations_total", strategy="database", result="ok") == 1


# -- serving /metrics ------------------------------------------------------------------------------------


@pytest.fixture
async def served(
    clock: FakeClock, registry: CollectorRegistry
) -> AsyncIterator[tuple[Keyfob, Instrumentation]]:
    fob = await make("database", clock)
    metrics = instrument(fob, registry)
    yield fob, metrics
    await fob.close()


async def test_metrics_endpoint_shows_the_counters_moving(served: tuple[Keyfob, Instrumentation]) -> None:
    fob, metrics = served
    app = Starlette()
    app.add_route("/metrics", metrics.endpoint)
    app.mount("/mounted", metrics.asgi_app())
    jar = cookies_of(await fob.create("u1", secure=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        before = await client.get("/metrics")
        assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
        assert "# TYPE keyfob_session_validations_total counter" in before.text
        await fob.authenticate(jar, secure=True)
        after = await client.get("/metrics")
        line = 'keyfob_session_validations_total{result="ok",strategy="database"} 1.0'
        assert line not in before.text and line in after.text
        assert line in (await client.get("/mounted/")).text
        openmetrics = await client.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")


async def test_metrics_wsgi_app_serves_the_same_registry(served: tuple[Keyfob, Instrumentation]) -> None:
    from werkzeug.test import Client

    _, metrics = served
    response = Client(metrics.wsgi_app()).get("/")
    assert response.status_code == 200 and b"keyfob_revocation_feed_connected 0.0" in response.data


async def test_feed_gauge_follows_the_revocation_view(clock: FakeClock, registry: CollectorRegistry) -> None:
    fob = Keyfob(strategy="hybrid", secret=SECRET, store="memory://", clock=clock)  # in-process feed
    try:
        instrument(fob, registry)
        assert value(registry, "keyfob_revocation_feed_connected") == 0  # not started: not fed
        await fob.start()
        assert value(registry, "keyfob_revocation_feed_connected") == 1
        fob.view.live = False  # as when the pub/sub connection drops: store checks until resynced
        assert value(registry, "keyfob_revocation_feed_connected") == 0
    finally:
        await fob.close()


# -- the feed: connected gauge and propagation, over real Redis pub/sub --------------------------------


@pytest.mark.redis
async def test_feed_gauge_and_propagation_over_redis(registry: CollectorRegistry) -> None:
    require_redis()
    from keyfob.stores import open_feed, open_store
    from tests.contract.conftest import delete_redis_keys

    db = REDIS_URL.rsplit("/", 1)[0] + "/14"
    tag = f"kfmetrics{uuid.uuid4().hex[:8]}"

    def node() -> Keyfob:
        return Keyfob(strategy="hybrid", secret=SECRET, store=open_store(db, prefix=f"{tag}:"),
                      feed=open_feed(db, channel=f"{tag}:rev"))

    a, b = node(), node()
    try:
        await a.start()
        await b.start()
        instrument(b, registry)
        for _ in range(200):  # b's view goes live once subscribed and resynced (a loaded Redis: later)
            if value(registry, "keyfob_revocation_feed_connected") == 1:
                break
            await asyncio.sleep(0.05)
        assert value(registry, "keyfob_revocation_feed_connected") == 1
        issued = await a.create("u1", secure=True)
        await a.revoke(issued.session.id)
        await a.bump_user_version("u1")
        for _ in range(200):  # pub/sub delivery to b: poll (bounded at 10 s), no timing asserted
            if value(registry, "keyfob_revocation_propagation_seconds_count") >= 2:
                break
            await asyncio.sleep(0.05)
        assert value(registry, "keyfob_revocation_propagation_seconds_count") == 2
        assert value(registry, "keyfob_revocation_propagation_seconds_sum") >= 0
    finally:
        await a.close()
        await b.close()
        await delete_redis_keys(f"{tag}:", db)
