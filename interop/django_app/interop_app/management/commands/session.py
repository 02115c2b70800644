"""Reads and writes one session the way Django's SessionMiddleware does, as JSON on stdout.

  session write  < {"data": {...}, "expiry": int | "ISO" | null}   -> {"key": ...}
  session read KEY                                                 -> {"key", "data", "expiry_age"}
  session update KEY < {"set": {...}}                              -> {"key": ...}

KEY is the session cookie's value (the signed data itself for signed_cookies).
"""
import json
import sys
from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string


def store(key=None):
    return import_string(settings.SESSION_ENGINE + ".SessionStore")(key)


class Command(BaseCommand):
    help = "Write, read or update one session as Django's middleware would."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["write", "read", "update"])
        parser.add_argument("key", nargs="?")

    def handle(self, action, key, **options):
        if action == "write":
            spec = json.load(sys.stdin)
            s = store()
            s.update(spec["data"])
            expiry = spec.get("expiry")
            if isinstance(expiry, str):
                s.set_expiry(datetime.fromisoformat(expiry))
            elif expiry is not None:
                s.set_expiry(expiry)
            s.save()
            out = {"key": s.session_key}
        elif action == "read":
            s = store(key)
            data = dict(s.items())
            out = {"key": s.session_key, "data": data, "expiry_age": s.get_expiry_age()}
        else:
            spec = json.load(sys.stdin)
            s = store(key)
            s.update(spec["set"])
            s.save()
            out = {"key": s.session_key}
        sys.stdout.write(json.dumps(out))
