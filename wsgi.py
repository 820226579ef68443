"""gunicorn's entry point: `gunicorn wsgi:app` (gunicorn.conf.py names it)."""

import click
from gunicorn.errors import AppImportError

from webapp import create_app

try:
    app = create_app()
except click.ClickException as refusal:  # a set-up problem whose message says the fix
    # gunicorn prints an AppImportError's message alone, not a traceback around it.
    raise AppImportError(refusal.format_message()) from None
