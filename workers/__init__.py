"""The Celery workers: ``celery -A workers worker -Q <model>[,<model>...]``.

The Celery app is in :mod:`workers.celery`; the engines in :mod:`workers.engine` are plain
modules that import neither Celery nor Flask.
"""
