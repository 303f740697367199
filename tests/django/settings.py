"""Django settings for keyfob's in-process Django tests (``tests/django/conftest.py`` loads them)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from tests.conftest import SECRET

BASE = tempfile.mkdtemp(prefix="keyfob-django-tests-")
atexit.register(shutil.rmtree, BASE, True)
DEBUG = False
SECRET_KEY = "django-test-key-" + "k" * 60
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "keyfob.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.django.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(BASE, "db.sqlite3")}}
SESSION_ENGINE = "keyfob.django.session_backend"
KEYFOB = {"SECRET": SECRET}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast tests only
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
