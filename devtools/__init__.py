"""Tooling for running the project on one machine (``manage.py``, ``bench/``, the tests): not
part of the service, so the images leave it out."""
