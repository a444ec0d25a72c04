"""The Responses API (``/v1/responses``): requests, stored responses, conversation chains,
streamed events and background runs. A response runs as a chat job on its model's queue; the
routes are in ``app/api/responses.py``."""
