"""Create keyfob's tables in its store (by default Django's default database).

The store opens its own connection, so this migration is not atomic: Django's connection holds
no transaction while keyfob's creates the tables (SQLite would otherwise lock itself out).
``store.migrate()`` is idempotent; reversing this migration leaves the tables (and sessions) be.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create_keyfob_tables(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.alias != "default":
        return
    from keyfob.django._loop import home
    from keyfob.django.conf import get_fob

    fob = get_fob()  # builds the engine, whose start() migrates the store
    home.run(fob.store.migrate())


class Migration(migrations.Migration):
    atomic = False
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(create_keyfob_tables, migrations.RunPython.noop, elidable=False)]
