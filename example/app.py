"""A small WSGI app for the handoff CLI examples in README.md.

From the repository's root:

    go run ./cmd/handoff -listen tcp://127.0.0.1:8080 -workers 2 -ready notify \
        -pidfile /tmp/app.pid -- gunicorn --workers 1 --chdir example app:app

Each response names the gunicorn worker that served it and its arbiter (the
process handoff started), so a roll shows up as new pids.
"""
import os


def app(environ, start_response):
    body = ("hello from gunicorn worker %d (arbiter %d)\n" % (os.getpid(), os.getppid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
