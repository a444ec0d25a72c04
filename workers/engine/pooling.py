"""Embeddings from a causal LM: the mean of its last hidden states over each input's tokens,
scaled to unit length. This is what FastChat's model workers return for ``/v1/embeddings`` on a
chat model, so a chat model's engine answers embedding jobs too, in steps of their own."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import torch
import torch.nn.functional as F

from config.events import DoneEvent, Event, EventSequence
from config.protocol import DONE, ERROR, Job
from workers.engine.batch import prefill_inputs
from workers.engine.checks import check_context, check_request_tokens, tokenize
from workers.engine.embedding import EmbeddingJob, embedding_done
from workers.engine.errors import EngineFailed
from workers.engine.intake import Model, adapter_of
from workers.engine.io import Ticket
from workers.engine.isolation import run_isolated

log = logging.getLogger(__name__)


def embed(
    model: Any,
    jobs: list[EmbeddingJob],
    pad_id: int,
    size: int,
    adapters: bool,
    started: float,
) -> list[DoneEvent]:
    """Embed every input of ``jobs``, ``size`` per forward pass; return each job's ``done``
    event. ``adapters``: the model is a PEFT model that takes an adapter name per row.
    ``started``: when the step began (monotonic), for the events' timing."""
    inputs = [cast(list[int], tokens) for job in jobs for tokens in job.inputs]
    names = [job.adapter for job in jobs for _ in job.inputs] if adapters else None
    vectors = mean_pooled(model, inputs, pad_id, size, names).cpu().numpy()
    events, start = [], 0
    for job in jobs:
        end = start + len(job.inputs)
        events.append(embedding_done(job, vectors[start:end], started))
        start = end
    return events


@torch.inference_mode()
def mean_pooled(
    model: Any,
    inputs: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    adapter_names: list[str] | None = None,
) -> torch.Tensor:
    """Unit-length float32 vectors ``[len(inputs), hidden size]``, ``batch_size`` inputs per
    forward pass. Inputs are left-padded with positions from the mask, so an input's vector does
    not depend on what it is batched with. ``adapter_names``: a PEFT model's adapter per input."""
    device = next(model.parameters()).device
    vectors: list[torch.Tensor] = []
    for start in range(0, len(inputs), batch_size):
        batch, mask = prefill_inputs(inputs[start : start + batch_size], pad_id, device)
        extra = (
            {"adapter_names": adapter_names[start : start + batch_size]} if adapter_names else {}
        )
        # One logit per row is the least the forward pass computes; only hidden states are used.
        out = model(**batch, **extra, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        hidden = out.hidden_states[-1].float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * weights).sum(dim=1)
        vectors.append(F.normalize(summed / weights.sum(dim=1), p=2, dim=-1))
    return torch.cat(vectors)


def embedding_job(job: Job, model: Model) -> EmbeddingJob:
    """An embedding job for a chat model, its inputs checked and tokenized."""
    inputs = []
    for number, item in enumerate(job.get("inputs") or []):
        field = f"inputs[{number}]"
        ids = tokenize(model.tokenizer, item, model.vocab_size, field)
        check_context(ids, None, model.context_length + 1, field)
        inputs.append(ids or [model.pad_id])  # never an empty row (the front refuses "")
    tokens = sum(map(len, inputs))
    check_request_tokens(tokens, job.get("max_request_tokens"), "inputs")
    adapter = adapter_of(job, model)
    return EmbeddingJob(job["id"], Ticket(), EventSequence(job["id"]), inputs, tokens, adapter)


def embed_isolated(
    model: Any,
    jobs: list[EmbeddingJob],
    pad_id: int,
    batch_size: int,
    adapters: bool,
    ending: list[tuple[Any, str]],
    events: list[Event],
    name: str,
) -> None:
    """Embed every input of ``jobs`` in shared forward passes; each job ends this step (its
    terminal event in ``events``, itself in ``ending``), and one whose inputs fail the model
    fails alone (see :mod:`workers.engine.isolation`)."""
    started = time.monotonic()

    def run(group: list[EmbeddingJob]) -> list[DoneEvent]:
        return embed(model, group, pad_id, batch_size, adapters, started)

    for group, done, error in run_isolated(jobs, run):
        if done is not None:
            events.extend(done)
            ending.extend((job, DONE) for job in group)
            continue
        log.error("engine %s: embedding failed", name, exc_info=error)
        failure = EngineFailed("The model failed while embedding this input.")
        for job in group:
            events.append(job.events.error(failure.code, failure.message))
            ending.append((job, ERROR))
