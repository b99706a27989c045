"""The Flask REST target: a Flask app served by gunicorn (gthread workers, keep-alive)."""
