"""What the Responses routes do: run a response as a chat job (waited for, streamed, or in the
background), store it, and answer for it from any front."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from app.conversations.items import completed
from app.conversations.store import ConversationStore
from app.disconnect import client_gone_check
from app.errors import APIError
from app.jobs import JobService
from app.limits import RateLimiter
from app.relay import ClientGone
from app.responses.items import (
    RESPONSE_PARAMS,
    new_id,
    new_record,
    output_items,
    response_object,
    status_of,
    to_messages,
    with_ids,
)
from app.responses.job import response_job
from app.responses.replay import replay
from app.responses.store import ResponseStore, result_key
from app.responses.stream import ResponseEvents
from app.serving.generation import finished
from app.sse import Answer
from config.events import Event
from config.keys import cancel_key, events_stream
from config.protocol import CANCELLED, DONE, TOKEN, Job, JobOptions
from config.registry import CHAT, ModelSpec
from config.results import (
    COMPLETED,
    FAILED,
    JobError,
    JobResult,
    ResultBuilder,
    ResultStatus,
    empty_result,
)

# The OpenAI codes (app.errors) of a run its client or a cancel stopped, not one that failed.
_CANCELLED_CODES = ("cancelled", "client_closed_request")


@dataclass(frozen=True)
class PreparedResponse:
    """A response request turned into its stored record, its model's entry and its chat job."""

    record: dict[str, Any]
    spec: ModelSpec
    job: Job


class ResponseService:
    """``/v1/responses``: each response a chat job, its record and result in :class:`ResponseStore`;
    ``max_request_tokens``: MAX_REQUEST_TOKENS, which its job carries; ``conversations``: where
    a response created with ``conversation`` reads its conversation's items and adds its own."""

    def __init__(
        self,
        jobs: JobService,
        store: ResponseStore,
        limits: RateLimiter,
        max_request_tokens: int,
        replays: redis.Redis | None = None,
        conversations: ConversationStore | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.limits = limits
        self.max_request_tokens = max_request_tokens
        self.replays = replays  # what reads a background run's events again (else the store's)
        self.conversations = conversations

    def create(self, data: dict[str, Any], owner: str) -> Answer:
        """Run the response the request describes; returns the response object, or an iterator
        of SSE frames when it streams."""
        rid = new_id("resp")
        previous = data.get("previous_response_id")
        history = self.store.conversation(previous, owner) if previous else []
        if data.get("conversation"):  # never with previous_response_id (see the schema)
            history = self._conversation_items(data["conversation"], owner)
        options: JobOptions = {}
        if data.get("background"):  # the worker records its result (and events) for it
            options = {
                "result_key": result_key(rid),
                "result_ttl": self.store.ttl,
                "keep_events": True,
            }
        prepared = self.prepare(rid, data, owner, history, options=options)
        record, spec, job = prepared.record, prepared.spec, prepared.job
        if data.get("background"):
            record["job_id"] = job["id"]
            self.store.save(record)
            events = self.jobs.submit_detached(spec, job, listen=bool(data.get("stream")))
            if events is None:
                return response_object(record, None, "queued")
            # The run outlives its stream: not cancelled if the client leaves.
            stream = self.jobs.relay.iterate(events, cancel=False, names=RESPONSE_PARAMS)
            return self._stream(record, stream, "queued")
        gone = client_gone_check()
        if data.get("stream"):
            _, stream = self.jobs.start(spec, job, gone, names=RESPONSE_PARAMS)
            return self._stream(record, stream, "in_progress")
        try:
            result = self._collect(self.jobs.collect(spec, job, gone, names=RESPONSE_PARAMS))
        except APIError as exc:
            self._keep(record, _failure(exc))
            raise
        self._keep(record, result)
        self._extend_conversation(record, result)
        return response_object(record, result, status_of(result, "completed"))

    def prepare(
        self,
        rid: str,
        data: dict[str, Any],
        owner: str,
        history: Sequence[dict[str, Any]] = (),
        live: bool = True,
        options: JobOptions | None = None,
    ) -> PreparedResponse:
        """The response ``rid`` of a loaded request (after ``history``, the items of the chain
        it continues): its record, its model's entry and its job, with ``options`` besides its
        own; :class:`APIError` for anything wrong. ``live``: the model must have a live worker
        now (a batch line may wait for one)."""
        items = with_ids(data["input"], rid)
        spec = self.jobs.resolve(data["model"], CHAT, live)
        record = new_record(rid, owner, data, items)
        messages = to_messages([*history, *items], data.get("instructions"))
        return PreparedResponse(
            record, spec, response_job(spec, data, messages, self.max_request_tokens, options or {})
        )

    def retrieve(self, response_id: str, owner: str) -> dict[str, Any]:
        record = self.store.get(response_id, owner)
        result = self.store.result(response_id)
        return response_object(record, result, status_of(result, self._pending_status(record)))

    def cancel(self, response_id: str, owner: str) -> dict[str, Any]:
        record = self.store.get(response_id, owner)
        if not record["request"]["background"]:
            raise APIError(
                400, "Only responses created with background=true can be cancelled.", None
            )
        if self.store.result(response_id) is None:
            self._cancel_run(record)
        return self.retrieve(response_id, owner)

    def delete(self, response_id: str, owner: str) -> dict[str, Any]:
        record = self.store.get(response_id, owner)
        if record["request"]["background"] and self.store.result(response_id) is None:
            self._cancel_run(record)
        self.store.delete(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    def input_items(
        self, response_id: str, owner: str, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        items = list(self.store.get(response_id, owner)["input_items"])
        if order == "desc":
            items.reverse()
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else 0
        page = items[start : start + limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(items),
        }

    # -- helpers ---------------------------------------------------------------------------------

    def _collect(self, events: list[Event]) -> JobResult:
        builder = ResultBuilder()
        for event in events:
            builder.add(event)
        result = finished(builder)
        self.limits.record_usage(result["usage"])
        return result

    def resume(self, response_id: str, owner: str, after: int | None) -> Iterator[str]:
        """A background response's stream again, from its start or after sequence number
        ``after``, then live until it ends: from its events' log, on any front."""
        record = self.store.get(response_id, owner)
        if not record["request"]["background"]:
            raise APIError(
                400, "Only a background response can be streamed again.", "stream", "not_background"
            )
        job_id = self.store.running_attempt(record)
        client = self.replays or self.store.client
        stored = self.store.result(response_id)
        if stored is not None and not client.exists(events_stream(job_id)):
            # It ended with no events logged (cancelled while queued, given up): its result.
            writer = ResponseEvents(record["id"], -1 if after is None else after)
            ended = writer.opening(response_object(record, None, "queued"))
            ended += writer.closing(response_object(record, stored, status_of(stored, "failed")))
            return (frame for frame in ended if frame)

        def moved() -> bool:
            """The run ended, or the workers started it again, without more events here."""
            return (
                self.store.result(response_id) is not None
                or self.store.running_attempt(record) != job_id
            )

        # Silent for as long as a job may wait in its queue, or a worker may hold it mute.
        idle = max(self.jobs.relay.timeout, self.jobs.relay.queue_timeout)
        gone = client_gone_check()
        events = replay(client, job_id, RESPONSE_PARAMS, idle, gone, moved)
        frames = self._stream(record, events, "queued", -1 if after is None else after)
        return (frame for frame in frames if frame)

    def _stream(
        self,
        record: dict[str, Any],
        events: Iterator[Event],
        first_status: str,
        after: int | None = None,
    ) -> Iterator[str]:
        """The response's frames as its job's events come. ``after``: a replay, whose frames up
        to that sequence number the client has (written as ""), and whose usage counted once."""
        writer = ResponseEvents(record["id"], -1 if after is None else after)
        yield from writer.opening(response_object(record, None, first_status))
        builder = ResultBuilder()
        try:
            for event in events:
                builder.add(event)
                if event["type"] == TOKEN:
                    yield from writer.token(event)
                elif event["type"] == DONE and after is None:
                    self.limits.record_usage(event.get("usage"))
        except ClientGone:
            self._keep(record, _failure(ClientGone()))
            return
        except APIError as exc:
            failed = _failure(exc)
            self._keep(record, failed)
            yield from writer.error(exc.body)
            if after is not None:  # a replay cut short: the run itself goes on, or has ended
                return
            yield from writer.closing(response_object(record, failed, status_of(failed, "failed")))
            return
        result = finished(builder)
        self._keep(record, result)
        self._extend_conversation(record, result)
        yield from writer.closing(response_object(record, result, status_of(result, "completed")))

    def _keep(self, record: dict[str, Any], result: JobResult) -> None:
        """Store a response the front waited for. A background run's result is its worker's to
        record (or the reaper's), whatever a stream of it saw."""
        if not record["request"]["store"] or record["request"]["background"]:
            return
        self.store.save(record, result)

    def _conversation_items(self, conversation_id: str, owner: str) -> list[dict[str, Any]]:
        """The items of the owner's conversation, oldest first; 404 if it has none such."""
        if self.conversations is None:
            raise APIError(400, "Conversations are not served here.", "conversation")
        self.conversations.get(conversation_id, owner, "conversation")
        return self.conversations.items(conversation_id)

    def _extend_conversation(self, record: dict[str, Any], result: JobResult) -> None:
        """Add a response's input items, then its output items, to the conversation it belongs
        to, once it has completed (or was cut by ``max_output_tokens``); a failed one adds
        nothing."""
        conversation_id = record["request"].get("conversation")
        if not conversation_id or self.conversations is None or result["status"] != COMPLETED:
            return
        items = [completed(item) for item in record["input_items"]]
        self.conversations.append(conversation_id, items + output_items(record["id"], result))

    def _pending_status(self, record: dict[str, Any]) -> str:
        """The status of a response without a result yet."""
        if not record["request"]["background"]:
            return "in_progress"  # waited for by the front that runs it
        if self.store.client.exists(cancel_key(record["job_id"])):
            return "cancelled"
        running = self.store.running_attempt(record)
        return "in_progress" if self.store.is_claimed(running) else "queued"

    def _cancel_run(self, record: dict[str, Any]) -> None:
        """Stop a background run: its first attempt's id stops any attempt before it starts,
        and the running attempt's id stops it at its engine's next step."""
        pipe = self.store.client.pipeline(transaction=False)
        for job_id in {record["job_id"], self.store.running_attempt(record)}:
            pipe.set(cancel_key(job_id), 1, ex=self.store.ttl)
        pipe.execute()


def _failure(exc: APIError) -> JobResult:
    """The result of a run the front waited for and saw fail, shaped as a worker records one
    (its message as the client saw it: it names no field)."""
    error = exc.body["error"]
    code = error.get("code")
    status: ResultStatus = CANCELLED if code in _CANCELLED_CODES else FAILED
    # A failure without a code shows as server_error (see items.response_object).
    failure: JobError = {
        "code": code or "server_error",
        "message": error["message"],
        "field": None,
        "details": {},
    }
    return empty_result(status, failure)
