"""The Redis names the front and the workers share: pub/sub channels, keys, lists and sets.

Part of the message contract (see :mod:`config.protocol` for what travels under these names).
"""

from __future__ import annotations

WORKERS_SET = "llm:workers"  # the ids of the workers whose heartbeat may be live


def events_channel(job_id: str) -> str:
    """Pub/sub channel on which a job's events are published."""
    return f"llm:events:{job_id}"


def cancel_key(job_id: str) -> str:
    """Key the front sets when the client went away; the engine checks it every step."""
    return f"llm:cancel:{job_id}"


def finished_key(job_id: str) -> str:
    """Key a worker sets once a job has run to the end, so a redelivered copy is dropped."""
    return f"llm:finished:{job_id}"


def claim_key(job_id: str) -> str:
    """Key naming the worker that runs a job, so the front can tell when that worker is gone."""
    return f"llm:claim:{job_id}"


DETACHED_SET = "llm:detached"  # sorted set of detached jobs' origins, by time enqueued


def detached_key(origin_id: str) -> str:
    """A detached job's latest attempt, so that it can be run again: ``{"job", "attempts"}``."""
    return f"llm:detached:{origin_id}"


def events_stream(job_id: str) -> str:
    """A Redis Stream of a detached job's events, kept when the job asks (``keep_events``: a
    background response), so that a client can stream them again from any front."""
    return f"llm:events-log:{job_id}"


def bulk_queue(model: str) -> str:
    """A Redis list of the batches that have lines waiting for a model; workers go round it,
    taking lines from each batch's :func:`batch_queue` when their engine has room for them."""
    return f"llm:bulk:{model}"


def flex_queue(model: str) -> str:
    """A Redis list of flex-tier requests (``service_tier: flex``) waiting for a model. Workers
    take them as they take batch lines, only into room interactive work leaves: on the model's
    Celery queue they would hold worker slots that interactive requests then wait behind."""
    return f"llm:flex:{model}"


def quick_queue(model: str) -> str:
    """A Redis list of quick jobs (tokenize, detokenize) for a model: any of its workers takes
    one at once and answers it outside its engine, so it never waits behind generation."""
    return f"llm:quick:{model}"


def batch_queue(batch_id: str) -> str:
    """A Redis list of a batch's line jobs not taken yet (a worker LMOVEs one into its
    :func:`bulk_processing` list). Deleting it cancels the lines not started."""
    return f"llm:batch:{batch_id}:queue"


def batch_progress(batch_id: str) -> str:
    """A hash of a batch's line counts: ``taken`` by workers, ``completed``, ``failed``."""
    return f"llm:batch:{batch_id}:progress"


def bulk_processing(worker_id: str) -> str:
    """The bulk jobs a worker has taken and not finished: put back if the worker dies."""
    return f"llm:bulk-processing:{worker_id}"


def heartbeat_key(worker_id: str) -> str:
    """Key (with a TTL) that says a worker is alive; its value is its encoded
    :class:`config.status.WorkerStatus`."""
    return f"llm:worker:{worker_id}"


def lane(model: str, key: str) -> str:
    """A Redis list of one API key's interactive jobs waiting for a model, oldest at the right;
    each entry is a job behind a short header (see :mod:`config.lanes`). ``key``: the owner hash
    of the API key ('' with keys off)."""
    return f"llm:lane:{model}:{key}"


def lanes_waiting(model: str) -> str:
    """A sorted set of the keys with jobs in a lane of a model, scored by virtual time."""
    return f"llm:lanes:{model}"


def lanes_state(model: str) -> str:
    """A hash of a model's lanes: each key's virtual time (``vt:<key>``), the virtual time of
    the job taken last (``now``), each key's estimated tokens waiting (``waiting:<key>``) and
    tokens served (``served:<key>``)."""
    return f"llm:lanes-state:{model}"


ADAPTERS = "llm:adapters"  # a hash: each LoRA adapter loaded at run time -> its entry (JSON)


def adapter_control(base: str) -> str:
    """The pub/sub channel on which the workers of a base model hear that an adapter on it is
    loaded or unloaded (see :mod:`config.adapters`)."""
    return f"llm:adapter-control:{base}"


def adapter_replies(request_id: str) -> str:
    """The pub/sub channel on which the workers answer one load or unload request."""
    return f"llm:adapter-replies:{request_id}"
