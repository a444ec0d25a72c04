"""What the generation and embedding endpoints do, apart from their routes: request to job, and
result to response. :class:`generation.GenerationService` serves chat, completions and edits,
each shaped by its format (:mod:`.chat`, :mod:`.completions`, :mod:`.edits`);
:class:`embeddings.EmbeddingService` serves embeddings. ``create_app`` builds them with their
collaborators; the route modules in :mod:`app.api` and the batch lines
(:mod:`app.batches.lines`) both call them; they import neither."""
