"""gunicorn settings for the front in production: several processes, each serving with gevent.

    gunicorn                       (from the repository root, which holds this file)
    gunicorn -c gunicorn.conf.py   (from anywhere else)

The front holds many long-lived streams per process, so the workers are gevent's (one greenlet
per connection), never gunicorn's default synchronous ones. Several processes share everything
through Redis (jobs, rate limits), so any number of them, on any hosts, may serve one API.
Environment: HOST, PORT, WEB_CONCURRENCY (processes, default 2) and every setting of the README.
"""

import os

wsgi_app = "wsgi:app"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = 1000  # open connections (streams included) per process
# gevent workers tell the arbiter they are alive from their own greenlet, so a long stream
# never trips this; it catches a process that is truly stuck.
timeout = 30
# On SIGTERM a process stops accepting and lets open streams finish for this long.
graceful_timeout = int(float(os.environ.get("SHUTDOWN_TIMEOUT", "60")))
keepalive = 5
accesslog = "-"
errorlog = "-"
