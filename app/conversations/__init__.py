"""The Conversations API (``/v1/conversations``): stored conversations and their items, which a
response created with ``conversation`` reads first and then extends (see
:class:`app.responses.service.ResponseService`). The routes are in ``app/api/conversations.py``."""
