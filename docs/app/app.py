# The app of docs/Dockerfile (and of docs/myapp.service's /srv/myapp): a WSGI app for gunicorn.
# It says which worker and which arbiter (gunicorn's master, one per handoff worker) answered.
import os


def app(environ, start_response):
    body = ("hello from myapp, gunicorn worker %d (arbiter %d)\n" % (os.getpid(), os.getppid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
