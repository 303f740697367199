"""The ``keyfob.django`` app: migrations for keyfob's tables, the admin, ``manage.py keyfob``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import request_started


class KeyfobConfig(AppConfig):
    """Add ``"keyfob.django"`` to ``INSTALLED_APPS`` (after ``django.contrib.auth``)."""

    name = "keyfob.django"
    label = "keyfob"
    verbose_name = "keyfob sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ._request import on_request_started

        request_started.connect(on_request_started, dispatch_uid="keyfob.django.request_meta")
