"""Settings from the environment, so one project serves every engine the tests try.

DJANGO_SECRET_KEY            SECRET_KEY (required)
DJANGO_SECRET_KEY_FALLBACKS  SECRET_KEY_FALLBACKS, comma-separated
DJANGO_SESSION_ENGINE        db | cache | cached_db | file | signed_cookies
DJANGO_DATABASE_URL          sqlite:///abs/path | postgres://user@host:port/db | mysql://user@host:port/db
DJANGO_CACHE_URL             redis://host:port/db (the default cache, Django's RedisCache)
DJANGO_CACHE_KEY_PREFIX      the cache's KEY_PREFIX (default "")
SESSION_FILE_PATH            the file engine's folder
SESSION_COOKIE_AGE           seconds (default 1209600)
"""
import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
SECRET_KEY_FALLBACKS = [k for k in os.environ.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if k]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "interop_app",
]
SESSION_ENGINE = "django.contrib.sessions.backends." + os.environ.get("DJANGO_SESSION_ENGINE", "db")
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", "1209600"))
if os.environ.get("SESSION_FILE_PATH"):
    SESSION_FILE_PATH = os.environ["SESSION_FILE_PATH"]


def _database(url):
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url[len("sqlite://"):]}
    engine = {
        "postgres": "postgresql",
        "postgresql": "postgresql",
        "mysql": "mysql",
        "mariadb": "mysql",
    }[parts.scheme]
    return {
        "ENGINE": "django.db.backends." + engine,
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {"default": _database(os.environ.get("DJANGO_DATABASE_URL", "sqlite:///:memory:"))}
if DATABASES["default"]["ENGINE"].endswith("mysql"):
    import pymysql

    pymysql.install_as_MySQLdb()

if os.environ.get("DJANGO_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["DJANGO_CACHE_URL"],
            "KEY_PREFIX": os.environ.get("DJANGO_CACHE_KEY_PREFIX", ""),
        }
    }
