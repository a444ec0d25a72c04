"""The front as a WSGI application, for gunicorn (see gunicorn.conf.py) or any WSGI server.

Under gunicorn's gevent workers, gevent patches the standard library before this module loads,
as ``manage.py runserver`` does itself.
"""

from app import create_app

app = create_app()
