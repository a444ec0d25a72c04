"""The Batch API (``/v1/batches``): a file of requests run as bulk lines on the same workers and
engines as interactive requests, in the capacity those leave. The routes are in
``app/api/batches.py``."""
