"""What the generation and embedding endpoints do, apart from their routes: request to job, and
result to response (chat, completions, embeddings). The route modules in :mod:`app.api` and the
batch lines (:mod:`app.batches.lines`) both call it; it imports neither."""
