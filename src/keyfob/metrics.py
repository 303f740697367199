"""Prometheus metrics and OpenTelemetry instruments (and spans) for a :class:`~keyfob.Keyfob`.

Needs the ``metrics`` extra: ``pip install 'keyfob[metrics]'`` (prometheus-client, opentelemetry-api).
Nothing here runs unless you call :func:`instrument`; an engine that is not instrumented pays
nothing (no check on its request path).

```python
from keyfob import Keyfob
from keyfob.metrics import instrument

fob = Keyfob.from_env()
metrics = instrument(fob)                  # Prometheus, on prometheus_client's default REGISTRY
metrics = instrument(fob, registry=CollectorRegistry(), opentelemetry=True)   # and OpenTelemetry
```

Serving ``/metrics`` (the scrape endpoint), with whichever framework the app uses:

```python
app.add_route("/metrics", metrics.endpoint)          # Starlette / FastAPI: a plain route
app.mount("/internal/metrics", metrics.asgi_app())   # or any ASGI app (prometheus_client's)
flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/metrics": metrics.wsgi_app()})
body, content_type = metrics.render()                # anything else: bytes + Content-Type
```
Expose it to your scraper, not the internet: the numbers say how busy the service is.

Prometheus metrics (names and units by Prometheus's conventions; ``strategy`` is jwt/database/hybrid):

==========================================================  ==========================================
``keyfob_session_validations_total{strategy,result}``       ``authenticate`` calls; ``result`` is
                                                            ``ok``, ``anonymous`` (no credential) or
                                                            the error code (``session_expired``,
                                                            ``session_revoked``, ``invalid_token``,
                                                            ``store_unavailable``...)
``keyfob_session_validation_duration_seconds{strategy}``    histogram of the same calls
``keyfob_refresh_total{result}``                            hybrid refresh-token rotations: ``ok``,
                                                            ``reuse_detected``, or the refusal's code
``keyfob_revocations_total{scope}``                         ``session`` (revoke one), ``user``
                                                            (each session of revoke_user / a version
                                                            bump), ``user_version`` (a bump itself),
                                                            ``session_limit`` (evictions),
                                                            ``reuse_detected`` (a stolen family)
``keyfob_session_events_total{event}``                      every lifecycle event, by name
``keyfob_revocation_feed_connected``                        1 while the revocation view is kept current
                                                            by its feed (pub/sub, NOTIFY, polling); with
                                                            several engines, while all of theirs are
``keyfob_revocation_propagation_seconds``                   publish → apply delay of feed events
                                                            (publisher's clock vs. this node's)
==========================================================  ==========================================

OpenTelemetry (``opentelemetry=True``; the global providers unless ``meter_provider`` /
``tracer_provider`` are given): counters ``keyfob.session.validations``, ``keyfob.refreshes``,
``keyfob.revocations``, histograms ``keyfob.session.validation.duration`` and
``keyfob.revocation.propagation`` (seconds), the observable gauge ``keyfob.revocation.feed.connected``,
and one span per ``authenticate`` / ``refresh`` (``keyfob.authenticate``, ``keyfob.refresh``),
child of the request's span, with the attributes ``keyfob.strategy`` and ``keyfob.result``.

No label or attribute value is ever a user id, a session id or a token: the values come from
fixed sets (strategies, result codes, event names, scopes), and anything else becomes ``other``.

Cost: the request path does two ``perf_counter()`` calls, a dict increment and a bisect into the
histogram's buckets, all on plain Python numbers; ``prometheus_client`` objects (whose locks cost
more than the rest together) are built from those numbers only when Prometheus scrapes. The
OpenTelemetry path costs what the configured SDK costs, hence opt-in. Measured with callgrind
(2026-12-01, memory store): 5,000-6,500 more instructions per ``authenticate``; one guarded FastAPI
request (hybrid) 711.8k → 725.7k instructions, +1.95%.

How it hooks in: lifecycle events through ``fob.on_event``; validation counts and durations
through ``fob.observe`` (which swaps in timed methods on that one engine only); propagation
through the revocation view's ``propagation_observer``, fed by the ``at`` timestamp that published
feed events carry. The SQLite polling feed reads rows, which carry no publish time: there the
propagation histogram stays empty (its delay is bounded by the poll interval, 0.1 s).
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from . import errors as _errors
from ._session import Event
from .engine import Keyfob
from .errors import ConfigError

__all__ = ["Instrumentation", "instrument"]

VALIDATION_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
PROPAGATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# the fixed sets label values come from
_RESULTS = frozenset(
    {"ok", "anonymous"}
    | {
        cls.code
        for cls in vars(_errors).values()
        if isinstance(cls, type) and issubclass(cls, _errors.KeyfobError) and isinstance(cls.code, str)
    }
)
_EVENTS = (
    "created",
    "rolled",
    "rotated",
    "refreshed",
    "revoked",
    "expired",
    "reuse_detected",
    "user_version_bumped",
    "signed_out",
)
_SCOPES = ("session", "user", "user_version", "session_limit", "reuse_detected", "other")
_SCOPE_BY_REASON = {
    None: "session",
    "revoke_user": "user",
    "user_version_bumped": "user",
    "session_limit": "session_limit",
}


def _bounded(value: Any, allowed: Iterable[str]) -> str:
    return value if isinstance(value, str) and value in allowed else "other"


class _Histogram:
    """Per-bucket counts (not cumulative) and the sum: one bisect and two additions per value."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # Prometheus buckets are "<= le"
        self.total += value


class _Counts:
    """What one instrumented engine counted. Plain ints, bumped on the engine's event loop thread;
    turned into metric families only when Prometheus scrapes (:class:`_Collector`)."""

    def __init__(self, fob: Keyfob) -> None:
        self.fob = weakref.ref(fob)
        self.strategy = fob.settings.strategy
        self.validations: dict[str, int] = {}
        self.duration = _Histogram(VALIDATION_BUCKETS)
        self.refresh: dict[str, int] = {}
        self.revocations = dict.fromkeys(_SCOPES, 0)
        self.events = dict.fromkeys((*_EVENTS, "other"), 0)
        self.propagation = _Histogram(PROPAGATION_BUCKETS)


def _feed_connected(fob: Keyfob) -> bool:
    return fob.view.feed is not None and fob.view.live


def _sum_into(target: dict[Any, Any], source: dict[Any, Any]) -> None:
    for key, n in source.items():
        target[key] = target.get(key, 0) + n


def _histogram(
    name: str, doc: str, hists: list[tuple[tuple[str, ...], _Histogram]], labels: list[str]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    merged: dict[tuple[str, ...], tuple[list[int], float]] = {}
    for key, h in hists:
        counts, total = merged.get(key, ([0] * len(h.counts), 0.0))
        merged[key] = ([a + b for a, b in zip(counts, h.counts, strict=True)], total + h.total)
    for key, (counts, total) in sorted(merged.items()):
        bounds = hists[0][1].bounds
        cumulative, running = [], 0
        for le, n in zip([*(repr(float(b)) for b in bounds), "+Inf"], counts, strict=True):
            running += n
            cumulative.append((le, running))
        family.add_metric(list(key), cumulative, total)
    return family


class _Collector:
    """keyfob's metric families for one registry, built at scrape time from every engine's counts."""

    def __init__(self) -> None:
        self.counts: list[_Counts] = []

    def describe(self) -> Iterator[Metric]:
        return self._families(include_samples=False)

    def collect(self) -> Iterator[Metric]:
        return self._families(include_samples=True)

    def _families(self, *, include_samples: bool) -> Iterator[Metric]:
        every = self.counts if include_samples else []
        validations: dict[tuple[str, str], int] = {}
        refresh: dict[str, int] = {}
        revocations: dict[str, int] = {}
        events: dict[str, int] = {}
        for c in every:
            _sum_into(validations, {(c.strategy, r): n for r, n in c.validations.items()})
            _sum_into(refresh, c.refresh)
            _sum_into(revocations, c.revocations)
            _sum_into(events, c.events)
        family = CounterMetricFamily(
            "keyfob_session_validations",
            "Session validations (Keyfob.authenticate), by strategy and result.",
            labels=["strategy", "result"],
        )
        for (strategy, result), n in sorted(validations.items()):
            family.add_metric([strategy, result], n)
        yield family
        yield _histogram(
            "keyfob_session_validation_duration_seconds",
            "Time spent in Keyfob.authenticate, in seconds.",
            [((c.strategy,), c.duration) for c in every],
            ["strategy"],
        )
        family = CounterMetricFamily(
            "keyfob_refresh", "Hybrid refresh-token rotations, by result.", labels=["result"]
        )
        for result, n in sorted(refresh.items()):
            family.add_metric([result], n)
        yield family
        family = CounterMetricFamily("keyfob_revocations", "Revocations, by scope.", labels=["scope"])
        for scope, n in sorted(revocations.items()):
            family.add_metric([scope], n)
        yield family
        family = CounterMetricFamily(
            "keyfob_session_events", "Session lifecycle events, by name.", labels=["event"]
        )
        for event, n in sorted(events.items()):
            family.add_metric([event], n)
        yield family
        fobs = [f for f in (c.fob() for c in every) if f is not None and f.view.feed is not None]
        gauge = GaugeMetricFamily(
            "keyfob_revocation_feed_connected",
            "1 while every instrumented engine's revocation view is kept current by its feed, else 0.",
        )
        if include_samples:
            gauge.add_metric([], 1.0 if fobs and all(_feed_connected(f) for f in fobs) else 0.0)
        yield gauge
        yield _histogram(
            "keyfob_revocation_propagation_seconds",
            "Delay from publishing a revocation to applying it from the feed, in seconds.",
            [((), c.propagation) for c in every],
            [],
        )


_COLLECTORS: weakref.WeakKeyDictionary[CollectorRegistry, _Collector] = weakref.WeakKeyDictionary()
_INSTRUMENTED: weakref.WeakSet[Keyfob] = weakref.WeakSet()


def _collector(registry: CollectorRegistry) -> _Collector:
    found = _COLLECTORS.get(registry)
    if found is None:
        found = _COLLECTORS[registry] = _Collector()
        registry.register(found)
    return found


class Instrumentation:
    """What :func:`instrument` returns: the registry, and ways to serve it as ``/metrics``."""

    def __init__(self, fob: Keyfob, registry: CollectorRegistry) -> None:
        self.fob = fob
        self.registry = registry

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition text (or OpenMetrics, if ``accept`` asks for it) and its Content-Type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    async def endpoint(self, request: Request) -> Response:
        """A Starlette/FastAPI endpoint: ``app.add_route("/metrics", metrics.endpoint)``."""
        body, content_type = self.render(request.headers.get("accept"))
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})

    def asgi_app(self) -> Callable[..., Any]:
        """prometheus_client's ASGI app for this registry (mount it, or serve it on its own port)."""
        return make_asgi_app(self.registry)

    def wsgi_app(self) -> Callable[..., Any]:
        """prometheus_client's WSGI app for this registry (Flask, Django, gunicorn)."""
        return make_wsgi_app(self.registry)


def instrument(
    fob: Keyfob,
    registry: CollectorRegistry | None = None,
    *,
    opentelemetry: bool = False,
    meter_provider: Any = None,
    tracer_provider: Any = None,
) -> Instrumentation:
    """Count and time what ``fob`` does, in Prometheus (always) and OpenTelemetry (``opentelemetry``).

    ``registry`` defaults to prometheus_client's global ``REGISTRY``. Several engines may share one
    registry (their counts add up). Call it once per engine, before serving requests.
    """
    if fob in _INSTRUMENTED:
        raise ConfigError(
            "this Keyfob is already instrumented", hint="call keyfob.metrics.instrument(fob) once per engine"
        )
    registry = REGISTRY if registry is None else registry
    collector = _collector(registry)
    _INSTRUMENTED.add(fob)
    counts = _Counts(fob)
    collector.counts.append(counts)
    validations, duration, refresh = counts.validations, counts.duration, counts.refresh
    revocations, events, propagation = counts.revocations, counts.events, counts.propagation
    otel = _OpenTelemetry(fob, meter_provider, tracer_provider) if opentelemetry else None
    buckets, bounds = duration.counts, duration.bounds

    # the per-request path: plain dict and list increments, nothing else (see "Cost" above)
    def on_operation(operation: str, result: str, seconds: float) -> None:
        if operation == "authenticate":
            if result in validations:
                validations[result] += 1
            else:  # the first of its kind, or a code from outside keyfob's error tree
                result = result if result in _RESULTS else "other"
                validations[result] = validations.get(result, 0) + 1
            buckets[bisect_left(bounds, seconds)] += 1  # Prometheus buckets are "<= le"
            duration.total += seconds
        elif result != "ok" and result != "token_reuse_detected":  # refresh: those two come as events
            result = result if result in _RESULTS else "other"
            refresh[result] = refresh.get(result, 0) + 1
        if otel is not None:
            otel.operation(operation, result if result in _RESULTS else "other", seconds)

    def on_event(event: Event) -> None:
        name = _bounded(event.name, _EVENTS)
        events[name] += 1
        scope: str | None = None
        if name == "refreshed":
            refresh["ok"] = refresh.get("ok", 0) + 1
        elif name == "reuse_detected":
            refresh["reuse_detected"] = refresh.get("reuse_detected", 0) + 1
            scope = "reuse_detected"
        elif name == "revoked":
            scope = _SCOPE_BY_REASON.get(event.detail.get("reason"), "other")
        elif name == "user_version_bumped":
            scope = "user_version"
        if scope is not None:
            revocations[scope] += 1
        if otel is not None:
            otel.event(name, scope)

    def on_propagation(seconds: float) -> None:
        seconds = max(0.0, seconds)  # a publisher whose clock runs ahead must not go negative
        propagation.observe(seconds)
        if otel is not None:
            otel.propagation.record(seconds)

    fob.observe(on_operation)
    fob.on_event(on_event)
    fob.view.propagation_observer = on_propagation
    return Instrumentation(fob, registry)


class _OpenTelemetry:
    """The same numbers as OpenTelemetry instruments, plus one span per authenticate / refresh."""

    def __init__(self, fob: Keyfob, meter_provider: Any, tracer_provider: Any) -> None:
        from opentelemetry import metrics, trace

        from . import __version__

        meter = (meter_provider or metrics.get_meter_provider()).get_meter("keyfob", __version__)
        tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("keyfob", __version__)
        self.tracer = tracer
        self.strategy = fob.settings.strategy
        self.validations = meter.create_counter(
            "keyfob.session.validations", unit="{validation}", description="Session validations."
        )
        self.duration = meter.create_histogram(
            "keyfob.session.validation.duration", unit="s", description="Time spent in authenticate."
        )
        self.refreshes = meter.create_counter(
            "keyfob.refreshes", unit="{refresh}", description="Refresh-token rotations."
        )
        self.revocations = meter.create_counter(
            "keyfob.revocations", unit="{revocation}", description="Revocations, by scope."
        )
        self.propagation = meter.create_histogram(
            "keyfob.revocation.propagation", unit="s", description="Feed event publish-to-apply delay."
        )

        def feed_connected(_options: Any) -> Iterable[Any]:
            yield metrics.Observation(1 if _feed_connected(fob) else 0)

        meter.create_observable_gauge(
            "keyfob.revocation.feed.connected", callbacks=[feed_connected], description="1 while fed."
        )
        self._attributes: dict[str, dict[str, str]] = {}

    def _attrs(self, result: str) -> dict[str, str]:
        found = self._attributes.get(result)
        if found is None:
            found = self._attributes[result] = {"keyfob.strategy": self.strategy, "keyfob.result": result}
        return found

    def operation(self, operation: str, result: str, seconds: float) -> None:
        attributes = self._attrs(result)
        if operation == "authenticate":
            self.validations.add(1, attributes)
            self.duration.record(seconds, attributes)
        elif result not in ("ok", "token_reuse_detected"):
            self.refreshes.add(1, {"keyfob.result": result})
        end = time.time_ns()
        span = self.tracer.start_span(
            f"keyfob.{operation}", start_time=end - int(seconds * 1e9), attributes=attributes
        )
        span.end(end_time=end)

    def event(self, name: str, scope: str | None) -> None:
        if name == "refreshed":
            self.refreshes.add(1, {"keyfob.result": "ok"})
        elif name == "reuse_detected":
            self.refreshes.add(1, {"keyfob.result": "reuse_detected"})
        if scope is not None:
            self.revocations.add(1, {"keyfob.scope": scope})
