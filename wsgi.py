"""WSGI entry point: `gunicorn wsgi:app` (or `pathway serve`)."""

from pathway import create_app

app = create_app()
