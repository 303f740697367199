"""Cheap construction of frozen, slotted dataclasses on the per-request path.

A ``@dataclass(frozen=True, slots=True)`` ``__init__`` sets every field through
``object.__setattr__`` (frozen classes refuse plain assignment): ~1.1k CPU instructions per
field on CPython 3.11 (a 13-field ``SessionRecord``: 29k instructions plain, 14.5k here). The
constructor :func:`fast_constructor` returns builds a *mutable* twin with exactly the same
fields, defaults and slot layout (plain slot stores), then re-labels the object as the frozen
class with one ``__class__`` assignment. The result is an ordinary instance of the frozen class
— same fields, equality, hash, repr, immutability — built for about a third of the cost.

Used only where it pays more than 5% on a guarded-floor ratio of ``keyfob bench`` (issue 9), by
instruction counts (``benchmarks/callgrind_asgi.py``): the SQL stores' per-request ``SessionRecord``
(~14.5k instructions a request, 5.8% of ``asgi_db_sqlite_vs_floor``); and the per-request ``Session``
(every strategy's authenticate) with the engine's ``AuthResult``: ~13.5k a request together,
``asgi_db_sqlite_vs_floor`` 2.31 -> 2.18 (5.6%), hybrid 1.71 -> 1.64 (4.2%), jwt 1.54 -> 1.48 (3.9%).

Only applied where the class has no ``__post_init__`` and no ``InitVar``/``init=False`` fields; in
any other case (or if the layouts ever differ) the class itself is returned, so the trick can
never change behaviour, only speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["fast_constructor"]

T = TypeVar("T")


def fast_constructor(cls: type[T]) -> Callable[..., T]:
    """A callable taking ``cls``'s constructor arguments and returning a ``cls`` instance, faster."""
    params = getattr(cls, "__dataclass_params__", None)
    if (
        params is None
        or not params.frozen
        or "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
        or cls.__base__ is not object
    ):
        return cls
    spec: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only is True:
            return cls
        kwargs: dict[str, Any] = {}
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            kwargs["default_factory"] = f.default_factory
        spec.append((f.name, f.type, dataclasses.field(**kwargs)))
    twin: Any = dataclasses.make_dataclass(
        f"_{cls.__name__}Builder", spec, slots=True, eq=False, repr=False, match_args=False
    )
    if twin.__slots__ != cls.__dict__["__slots__"]:
        return cls
    try:  # prove the re-labelling works for this pair of layouts before relying on it
        probe = object.__new__(twin)
        probe.__class__ = cls
    except TypeError:
        return cls

    def construct(*args: Any, **kwargs: Any) -> T:
        obj = twin(*args, **kwargs)
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]

    construct.__name__ = f"new_{cls.__name__}"
    construct.__doc__ = f"Build a {cls.__name__} (same arguments as {cls.__name__}(...))."
    return construct
