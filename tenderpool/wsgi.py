"""WSGI entry point for any server: `gunicorn 'tenderpool.wsgi:app'`."""

from tenderpool import create_app

app = create_app()
