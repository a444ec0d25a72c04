"""The batched generation engine: every running sequence advances in one forward pass per step.

Each step (1) admits waiting sequences by prefilling them together and joins them to the running
batch, (2) runs one decode pass for every running row, (3) hands the step's events and the ids of
in-flight jobs to the :class:`JobIO` in one call, learning which were cancelled, and (4) drops the
rows that finished or were cancelled. New work joins between steps; nothing waits for a batch to
drain. Embedding jobs for the model (see :mod:`workers.engine.pooling`) take a step of their own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from config.protocol import DONE, ERROR, TOKEN, EventSequence, error_body
from workers.engine.batch import BatchState, prefill_inputs
from workers.engine.io import JobIO, JobRejected, Ticket
from workers.engine.pooling import EmbeddingJob, embed, take_batch
from workers.engine.sampling import (
    SamplingParams,
    choose_token,
    make_generator,
    process_logits,
    token_logprobs,
)
from workers.engine.text import TextStream, TokenBytes

log = logging.getLogger(__name__)

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


@dataclass
class _Job:
    id: str
    ticket: Ticket
    events: EventSequence
    sequences: list[_Sequence] = field(default_factory=list)
    prompt_tokens: int = 0

    @property
    def finished(self) -> bool:
        return all(s.finish_reason is not None for s in self.sequences)


@dataclass
class _Sequence:
    job: _Job
    index: int
    prompt: list[int]
    params: SamplingParams
    max_new_tokens: int
    text: TextStream
    generator: torch.Generator | None
    generated: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)
    unsent_logprobs: list[dict] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)  # generated token -> times
    echo: dict | None = None  # sent with the sequence's first event when the job asked for echo
    finish_reason: str | None = None
    adapter: str = BASE  # the LoRA adapter its rows run through (BASE: none)

    @property
    def wants_prompt_logprobs(self) -> bool:
        return self.params.echo and self.params.logprobs is not None


class GenerationEngine:
    """Owns one causal LM and the thread that runs its batch.

    With ``adapters`` (public model name -> adapter name), the model is a PEFT model holding
    several LoRA adapters on one copy of the base weights: a job for an adapter's model name runs
    through that adapter, any other through the base, all of them in the same batch (PEFT's
    mixed-adapter forward: one adapter name per row).
    """

    info: dict[str, str] = {}  # what the heartbeat tells of it (device, dtype), set by loading

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        io: JobIO,
        max_batch_size: int = 32,
        name: str = "model",
        prefill_tokens: int = 512,
        adapters: dict[str, str] | None = None,
        embedding_batch_size: int = 64,
    ) -> None:
        self.model = model
        self.adapters = adapters or {}
        self.tokenizer = tokenizer
        self.token_bytes = TokenBytes(tokenizer)
        self.io = io
        self.max_batch_size = max_batch_size
        self.prefill_tokens = prefill_tokens
        self.embedding_batch_size = embedding_batch_size
        self.name = name
        self.device = next(model.parameters()).device
        self.context_length = _context_length(model, tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self._lock = threading.Condition()
        self._waiting: deque[_Sequence] = deque()
        self._embeddings: deque[EmbeddingJob] = deque()
        self._embedding_now: list[EmbeddingJob] = []  # taken by the step under way
        self._rows: list[_Sequence] = []
        self._ending: list[_Job] = []
        self._batch: BatchState | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._aborting: str | None = None

    # -- the outside: submit jobs, start and stop the loop -------------------------------------

    def submit(self, job: dict[str, Any]) -> Ticket:
        """Validate and tokenize ``job``, queue its sequences; raise :class:`JobRejected`."""
        if job.get("kind") == "embedding":
            return self._submit_embedding(job)
        params = SamplingParams.from_job(job.get("params", {}))
        prompts = self._prompts(job)
        state = _Job(id=job["id"], ticket=Ticket(), events=EventSequence(job["id"]))
        adapter = self.adapters.get(job.get("model"), BASE)
        for number, prompt in enumerate(prompts):
            room = self.context_length - len(prompt)
            if params.max_tokens is not None and params.max_tokens > room:
                raise JobRejected(
                    400,
                    f"This model's maximum context length is {self.context_length} tokens. "
                    f"However, you requested {len(prompt) + params.max_tokens} tokens "
                    f"({len(prompt)} in the prompt, {params.max_tokens} for the completion). "
                    "Please reduce the prompt or the completion length.",
                    param="max_tokens" if room > 0 else "messages",
                    code="context_length_exceeded",
                )
            if room <= 0:
                raise JobRejected(
                    400,
                    f"This model's maximum context length is {self.context_length} tokens. "
                    f"However, your prompt has {len(prompt)} tokens.",
                    param="messages" if "messages" in job else "prompt",
                    code="context_length_exceeded",
                )
            # n choices per prompt share the prompt list, so the prefill runs once for all of them.
            for copy in range(params.n):
                index = number * params.n + copy
                seed = None if params.seed is None else params.seed + index
                state.sequences.append(
                    _Sequence(
                        job=state,
                        index=index,
                        prompt=prompt,
                        params=params,
                        max_new_tokens=params.max_tokens if params.max_tokens is not None else room,
                        text=TextStream(self.tokenizer, params.stop),
                        generator=make_generator(seed),
                        echo={"text": self.tokenizer.decode(prompt)} if params.echo else None,
                        adapter=adapter,
                    )
                )
            state.prompt_tokens += len(prompt)
        with self._lock:
            self._waiting.extend(state.sequences)
            self._lock.notify()
        return state.ticket

    def _submit_embedding(self, job: dict[str, Any]) -> Ticket:
        inputs = []
        for item in job["inputs"]:
            tokens = self.tokenizer(item)["input_ids"] if isinstance(item, str) else list(item)
            self._check_ids(tokens, "input")
            if len(tokens) > self.context_length:
                raise JobRejected(
                    400,
                    f"This model's maximum context length is {self.context_length} tokens. "
                    f"However, an input has {len(tokens)} tokens.",
                    param="input",
                    code="context_length_exceeded",
                )
            inputs.append(tokens or [self.pad_id])  # never an empty row (the front refuses "")
        state = EmbeddingJob(
            id=job["id"],
            ticket=Ticket(),
            events=EventSequence(job["id"]),
            inputs=inputs,
            adapter=self.adapters.get(job.get("model"), BASE),
        )
        with self._lock:
            self._embeddings.append(state)
            self._lock.notify()
        return state.ticket

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread:
            self._thread.join(timeout=30)

    def abort(self, message: str) -> None:
        """End every job in flight with an error (a shutdown that cannot wait any longer)."""
        with self._lock:
            self._aborting = message
            self._lock.notify()

    def load(self) -> dict[str, int]:
        """How busy the engine is: running rows and sequences waiting to join."""
        return {
            "running": len(self._rows),
            "waiting": len(self._waiting),
            "embedding": len(self._embeddings) + len(self._embedding_now),
        }

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (
                    self._waiting
                    or self._rows
                    or self._embeddings
                    or self._stopping
                    or self._aborting
                ):
                    self._lock.wait()
                if self._stopping:
                    return
            if self._aborting:  # between steps, on the engine thread that owns the batch
                self._fail_all(self._aborting)
                self._aborting = None
                continue
            try:
                self.step()
            except Exception:  # noqa: BLE001 - one bad step must not kill the worker
                log.exception("engine %s: step failed; failing its jobs", self.name)
                self._fail_all("The model worker failed while generating.")

    @torch.inference_mode()
    def step(self) -> None:
        """Run one engine step (admit, decode, publish, retire). Public for tests."""
        events: list[dict[str, Any]] = []
        self._embedding_now = self._take_embeddings()
        joining = [] if self._embedding_now else self._take_waiting()
        if self._embedding_now:
            self._embed(self._embedding_now, events)
        elif joining:
            # A step either prefills one group of waiting prompts or decodes every running row.
            # Prefill first gets each waiting request its first token soonest; the token budget
            # per group keeps one burst from holding every first token until all are prefilled.
            self._prefill(joining, events)
        elif self._rows:
            inputs = self._batch.decode_inputs() | self._adapter_names(self._rows)
            out = self.model(**inputs, use_cache=True)
            self._advance(self._rows, out.logits[:, -1, :], events)
        cancelled = self.io.exchange(events, self._job_ids())
        # Only now, with its terminal event published, may a job count as finished: the Celery
        # task acknowledges the message when its ticket finishes.
        for job in self._ending:
            job.ticket.finish(DONE)
        self._ending.clear()
        self._embedding_now = []
        if cancelled:
            self._cancel(cancelled)
        self._retire()

    def _take_waiting(self) -> list[_Sequence]:
        """Waiting sequences for one prefill: as many as fit the batch and the token budget."""
        taken, tokens = [], 0
        with self._lock:
            room = self.max_batch_size - len(self._rows)
            while self._waiting and len(taken) < room:
                size = len(self._waiting[0].prompt)
                if taken and tokens + size > self.prefill_tokens:
                    break
                taken.append(self._waiting.popleft())
                tokens += size
        return [s for s in taken if s.finish_reason is None]

    def _take_embeddings(self) -> list[EmbeddingJob]:
        if not self._embeddings:  # the common case: no lock taken on the step's path
            return []
        with self._lock:
            return take_batch(self._embeddings, self.embedding_batch_size)

    def _embed(self, jobs: list[EmbeddingJob], events: list[dict[str, Any]]) -> None:
        """Embed every input of ``jobs`` (in shared forward passes); each job ends this step."""
        size, adapters = self.embedding_batch_size, bool(self.adapters)
        events.extend(embed(self.model, jobs, self.pad_id, size, adapters))
        self._ending.extend(jobs)

    def _prefill(self, joining: list[_Sequence], events: list[dict[str, Any]]) -> None:
        unique: dict[int, int] = {}  # id(prompt) -> its row in the prefill batch
        prompts, firsts = [], []
        for seq in joining:
            if id(seq.prompt) not in unique:  # a prompt is shared only by one job's choices
                unique[id(seq.prompt)] = len(prompts)
                prompts.append(seq.prompt)
                firsts.append(seq)
        rows = [unique[id(seq.prompt)] for seq in joining]
        inputs, mask = prefill_inputs(prompts, self.pad_id, self.device)
        cache = DynamicCache(config=self.model.config)
        # Logits of every prompt position only when a sequence asked for its prompt's logprobs.
        keep = 0 if any(seq.wants_prompt_logprobs for seq in joining) else 1
        inputs |= self._adapter_names(firsts)
        out = self.model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=keep)
        start = torch.zeros(len(prompts), dtype=torch.long, device=self.device)
        joined = BatchState(cache, mask, start)
        if len(prompts) < len(joining):
            joined.select(rows)  # one row per choice: copies of a shared prompt's row
        for seq, row in zip(joining, rows, strict=True):
            if seq.wants_prompt_logprobs:
                seq.echo["logprobs"] = self._prompt_logprobs(seq, out.logits[row])
        if self._batch is None or not self._rows:
            self._batch = joined
            self._rows = []
        else:
            self._batch.extend(joined)
        self._rows.extend(joining)
        last = out.logits[:, -1, :].index_select(0, torch.tensor(rows, device=out.logits.device))
        self._advance(joining, last, events, first_row=len(self._rows) - len(joining))

    def _adapter_names(self, rows: list[_Sequence]) -> dict[str, Any]:
        """The forward pass's per-row adapters, for a PEFT model (nothing for a plain one)."""
        return {"adapter_names": [s.adapter for s in rows]} if self.adapters else {}

    def _prompt_logprobs(self, seq: _Sequence, logits: torch.Tensor) -> list[dict]:
        """Each prompt token's logprob given the tokens before it (the first has none)."""
        prompt, top = seq.prompt, seq.params.logprobs
        start = logits.shape[0] - len(prompt)  # the prompt sits at the end of its padded row
        first = {**self._describe(prompt[0]), "logprob": None, "top": []}
        return [first] + [
            token_logprobs(logits[start + j - 1], prompt[j], top, self._describe)
            for j in range(1, len(prompt))
        ]

    def _describe(self, token: int) -> dict[str, Any]:
        """A token as logprobs show it: its id, its text, and its raw bytes."""
        return {
            "id": token,
            "token": self.tokenizer.decode([token]),
            "bytes": self.token_bytes(token),
        }

    def _advance(
        self,
        rows: list[_Sequence],
        logits: torch.Tensor,
        events: list[dict[str, Any]],
        first_row: int = 0,
    ) -> None:
        """Choose each row's next token, record it, and emit the text it completes."""
        greedy = logits.argmax(dim=-1).tolist()
        chosen = []
        for i, seq in enumerate(rows):
            if seq.max_new_tokens <= 0:  # echo with max_tokens 0: the prompt's logprobs only
                chosen.append(self.pad_id)
                self._emit(seq, "", "length", events)
                continue
            token = self._choose(seq, logits[i], greedy[i])
            chosen.append(token)
            if seq.params.logprobs is not None:
                entry = token_logprobs(logits[i], token, seq.params.logprobs, self._describe)
                seq.unsent_logprobs.append(entry)
            self._record(seq, token, events)
        tokens = torch.tensor(chosen, dtype=torch.long, device=self.device)
        self._batch.last_tokens[first_row : first_row + len(rows)] = tokens

    def _choose(self, seq: _Sequence, logits: torch.Tensor, greedy: int) -> int:
        params = seq.params
        if params.adjusts_logits:
            seen = set(seq.prompt) | set(seq.counts) if params.repetition_penalty != 1 else set()
            logits = process_logits(logits, params, seq.counts, seen)
            greedy = int(torch.argmax(logits))
        return greedy if params.greedy else choose_token(logits, params, seq.generator)

    def _record(self, seq: _Sequence, token: int, events: list[dict[str, Any]]) -> None:
        seq.generated.append(token)
        seq.unsent.append(token)
        seq.counts[token] = seq.counts.get(token, 0) + 1
        if token in self.eos_ids and not seq.params.ignore_eos:
            text, reason = seq.text.flush(), "stop"
        else:
            text = seq.text.push(token)
            if seq.text.stopped:
                reason = "stop"
            elif len(seq.generated) >= seq.max_new_tokens:
                text, reason = text + seq.text.flush(), "length"
            else:
                reason = None
        if not text and reason is None:
            return  # held back (partial character or possible stop string): nothing to say yet
        self._emit(seq, text, reason, events)

    def _emit(self, seq: _Sequence, text: str, reason: str | None, events: list) -> None:
        """A token event with all the sequence has not sent; after the job's last, its done."""
        seq.finish_reason = reason
        event = {"index": seq.index, "text": text, "token_ids": seq.unsent, "finish_reason": reason}
        if seq.params.logprobs is not None:
            event["logprobs"] = seq.unsent_logprobs
            seq.unsent_logprobs = []
        if seq.echo is not None:
            event["echo"], seq.echo = seq.echo, None
        events.append(seq.job.events.make(TOKEN, **event))
        seq.unsent = []
        if reason is not None and seq.job.finished:
            events.append(seq.job.events.make(DONE, usage=_usage(seq.job)))
            self._ending.append(seq.job)

    def _job_ids(self) -> list[str]:
        with self._lock:
            seqs = self._rows + list(self._waiting)
        return list(dict.fromkeys(s.job.id for s in seqs if s.finish_reason is None))

    def _cancel(self, job_ids: set[str]) -> None:
        events, jobs = [], {}
        with self._lock:
            for seq in self._rows + list(self._waiting):
                if seq.job.id in job_ids and seq.finish_reason is None:
                    seq.finish_reason = "cancelled"
                    jobs[seq.job.id] = seq.job
            self._waiting = deque(s for s in self._waiting if s.finish_reason is None)
        for job in jobs.values():
            # Still exactly one terminal event, so the job is recorded as ended (and how).
            body = error_body("Request cancelled.", "invalid_request_error", code="cancelled")
            events.append(job.events.make(ERROR, status=499, **body))
        if events:
            self.io.exchange(events, [])
            log.info("engine %s: cancelled %s", self.name, ", ".join(sorted(jobs)))
        for job in jobs.values():
            job.ticket.finish("cancelled")

    def _retire(self) -> None:
        keep = [i for i, s in enumerate(self._rows) if s.finish_reason is None]
        if len(keep) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in keep]
        if keep:
            self._batch.keep(keep)
        else:
            self._batch = None

    def _fail_all(self, message: str) -> None:
        events = []
        with self._lock:
            seqs = self._rows + list(self._waiting)
            embeddings = self._embedding_now + list(self._embeddings)
            self._rows, self._waiting, self._batch = [], deque(), None
            self._embedding_now, self._embeddings = [], deque()
        jobs = [j for j in {id(s.job): s.job for s in seqs}.values() if not j.ticket.finished]
        jobs += [j for j in embeddings if not j.ticket.finished]
        for job in jobs:
            body = error_body(message, "server_error", None, "engine_error")
            events.append(job.events.make(ERROR, status=500, **body))
        try:
            self.io.exchange(events, [])
        except Exception:  # noqa: BLE001
            log.exception("engine %s: could not publish the failure", self.name)
        for job in jobs:
            job.ticket.finish(ERROR)

    # -- prompts -------------------------------------------------------------------------------

    def _prompts(self, job: dict[str, Any]) -> list[list[int]]:
        tok = self.tokenizer
        if job.get("messages") is not None:
            if not getattr(tok, "chat_template", None):
                raise JobRejected(400, f"Model {self.name} has no chat template.", "messages")
            text = tok.apply_chat_template(
                job["messages"], add_generation_prompt=True, tokenize=False
            )
            prompts = [tok(text, add_special_tokens=False)["input_ids"]]
        else:
            prompts = [
                tok(p)["input_ids"] if isinstance(p, str) else list(p) for p in job["prompts"]
            ]
        for prompt in prompts:
            self._check_ids(prompt, "prompt")
            if not prompt:
                if tok.bos_token_id is None:
                    raise JobRejected(400, "The prompt is empty.", "prompt")
                prompt.append(tok.bos_token_id)
        return prompts

    def _check_ids(self, tokens: list, param: str) -> None:
        vocab = self.model.config.vocab_size
        if any(not isinstance(t, int) or not 0 <= t < vocab for t in tokens):
            raise JobRejected(400, f"Token ids in the {param} must be in [0, {vocab}).", param)


def _usage(job: _Job) -> dict[str, int]:
    completion = sum(len(s.generated) for s in job.sequences)
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": job.prompt_tokens + completion,
    }


def _context_length(model: Any, tokenizer: Any) -> int:
    limit = getattr(model.config, "max_position_embeddings", None)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel (about 1e30); ignore it.
    if tok_limit and tok_limit < 10**9:
        limit = min(limit, tok_limit) if limit else tok_limit
    return int(limit or 2048)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return ids
