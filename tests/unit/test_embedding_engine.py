"""The embedding engine's steps (a stand-in for the sentence-transformers model, whose encode
records what it is given): concurrent jobs share a step up to the batch size, and a step's
replies go out before the next step encodes."""

import numpy as np
from transformers import AutoTokenizer

from workers.engine.embedding import EmbeddingEngine


class RecordingModel:
    max_seq_length = 64

    def __init__(self, tokenizer, log):
        self.tokenizer, self.log = tokenizer, log

    def encode(self, texts, **kwargs):
        self.log.append(("encode", len(texts)))
        return np.ones((len(texts), 4), dtype=np.float32) / 2


class RecordingIO:
    def __init__(self, log):
        self.log = log

    def exchange(self, events, job_ids):
        self.log.append(("sent", sorted(event["job"] for event in events)))
        return set()


def test_jobs_share_a_step_up_to_the_batch_size_and_each_step_replies_before_the_next(
    tiny_model_dir,
):
    log = []
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = EmbeddingEngine(RecordingModel(tokenizer, log), RecordingIO(log), batch_size=64)
    sizes = {"a": 40, "b": 40, "c": 10, "d": 100}
    tickets = [
        engine.submit({"id": job_id, "inputs": [f"text {i}" for i in range(n)]})
        for job_id, n in sizes.items()
    ]
    engine.start()
    try:
        assert all(ticket.wait(30) for ticket in tickets)
    finally:
        engine.stop()
    # a alone (a and b would be 80 > 64), then b and c (50), then d alone (100: one job always
    # goes, in several passes, which encode makes of it); each step's replies before the next.
    assert log == [
        ("encode", 40),
        ("sent", ["a"]),
        ("encode", 50),
        ("sent", ["b", "c"]),
        ("encode", 100),
        ("sent", ["d"]),
    ]
