"""Request intake: a job's text and token ids turned into checked prompts, before any of it
takes a slot in the batch.

Everything that comes from the request's content and can fail is checked here (with
:mod:`workers.engine.checks`) and raised as an :class:`InvalidRequest` naming the job's field at
fault: text that is not valid Unicode, token ids outside the vocabulary, a conversation the chat
template refuses, a prompt over the context, more prompt tokens than one request may hold.
"""

from __future__ import annotations

from typing import Any, Protocol

from jinja2 import TemplateError

from config.events import EventSequence
from config.grammars import GrammarError, ToolFormat, request_grammar
from config.protocol import BULK, Job, Message, Tool
from workers.engine.checks import (
    check_context,
    check_logit_bias,
    check_request_tokens,
    check_text,
    tokenize,
)
from workers.engine.errors import InvalidRequest, JobFailed
from workers.engine.io import Ticket
from workers.engine.reasoning import ThinkTags, reasoning_parsers
from workers.engine.sampling import SamplingParams, make_generator
from workers.engine.sequences import BASE, CALLS_ONLY, JSON_ONLY, JobState, Sequence
from workers.engine.text import TextStream
from workers.engine.tools import (
    ToolCallParser,
    builtin_messages,
    openai_tools,
    template_messages,
)


class Model(Protocol):
    """What intake needs to know of the engine's model."""

    name: str
    tokenizer: Any
    vocab_size: int
    context_length: int
    pad_id: int
    adapters: dict[str, str]
    tool_format: ToolFormat
    tool_prompt: ToolFormat | None
    constraints: Any
    reasoning: ThinkTags | None


def generation_job(job: Job, model: Model) -> JobState:
    """A generation job checked and tokenized, with one sequence per prompt and choice; raises
    :class:`InvalidRequest` when the request's content is at fault."""
    params = SamplingParams.from_job(job.get("params") or {})
    check_logit_bias(params.logit_bias, model.vocab_size)
    grammar, grammar_param = job_grammar(job, model.tool_format)
    if grammar is not None and model.constraints is None:
        raise InvalidRequest(
            f"Model {model.name} cannot constrain its output (its tokenizer is not supported).",
            grammar_param,
        )
    tokenizer = model.tokenizer
    prompts = job_prompts(job, tokenizer, model.vocab_size, model.name, model.tool_prompt)
    field = "messages" if job.get("messages") is not None else "prompts"
    check_request_tokens(sum(len(p) for p in prompts), job.get("max_request_tokens"), field)
    calls_tools = bool(job.get("tools")) and job.get("tool_choice") != "none"
    forced = forced_reply(job, grammar, calls_tools)
    state = JobState(id=job["id"], ticket=Ticket(), events=EventSequence(job["id"]))
    if "share" in job:  # its key's share of the batch (workers/engine/scheduler.py)
        state.key, state.weight = job["share"]["key"], job["share"]["weight"]
    adapter = adapter_of(job, model)
    tags = model.reasoning if field == "messages" else None  # a chat's reply may think
    for number, prompt in enumerate(prompts):
        where = field if field == "messages" else f"prompts[{number}]"
        room = check_context(prompt, params.max_tokens, model.context_length, where)
        budget = params.thinking_token_budget
        thinks = reasoning_parsers(tags, tokenizer, prompt, grammar is not None, budget)
        # n choices per prompt share the prompt list, so the prefill runs once for all of them.
        for copy in range(params.n):
            index = number * params.n + copy
            seed = None if params.seed is None else params.seed + index
            matcher = None
            if grammar is not None:
                matcher = model.constraints.matcher(grammar, grammar_param)
            state.sequences.append(
                Sequence(
                    job=state,
                    index=index,
                    prompt=prompt,
                    params=params,
                    max_new_tokens=params.max_tokens if params.max_tokens is not None else room,
                    text=TextStream(tokenizer, params.stop),
                    generator=make_generator(seed),
                    echo={"text": tokenizer.decode(prompt)} if params.echo else None,
                    adapter=adapter,
                    matcher=matcher,
                    forced=forced,
                    tools=ToolCallParser(model.tool_format) if calls_tools else None,
                    reasoning=thinks() if thinks is not None else None,
                    bulk=job.get("priority") == BULK,
                )
            )
        state.prompt_tokens += len(prompt)
    return state


def adapter_of(job: Job, model: Model) -> str:
    """The adapter the job's rows run through (BASE for the model itself); :class:`JobFailed`
    for a model the engine does not serve (an adapter unloaded since the job was queued)."""
    name = job.get("model")
    adapter = model.adapters.get(name or "")  # one read: an unloading may pop it meanwhile
    if adapter is not None:
        return adapter
    if name is None or name == model.name:
        return BASE
    raise JobFailed(f"The model {name} is not loaded on this worker.")


def chat_tokens(job: Job, model: Model) -> list[int]:
    """A job's chat as the model's prompt, as a chat request's would be."""
    return job_prompts(job, model.tokenizer, model.vocab_size, model.name, model.tool_prompt)[0]


def context_length(model: Any, tokenizer: Any) -> int:
    """The most tokens a sequence may hold: the model's positions, or the tokenizer's limit."""
    limit = getattr(model.config, "max_position_embeddings", None)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel (about 1e30); ignore it.
    if tok_limit and tok_limit < 10**9:
        limit = min(limit, tok_limit) if limit else tok_limit
    return int(limit or 2048)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end a reply: the generation config's and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return ids


def chat_prompt(
    tokenizer: Any,
    messages: list[Message],
    model: str,
    tools: list[Tool] | None = None,
    tool_format: ToolFormat | None = None,
    generation_prompt: bool = True,
    variables: dict[str, Any] | None = None,
) -> list[int]:
    """The conversation (and the tools the model may call) through the model's chat template,
    as token ids, the assistant's turn opened after it (unless not ``generation_prompt``). With
    a ``tool_format``, the template knows no tools: the format's own prompt describes them (see
    :mod:`workers.engine.tools`). ``variables``: more for the template (the request's)."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidRequest(f"Model {model} has no chat template.", "messages")
    for number, message in enumerate(messages):
        if isinstance(message.get("content"), str):
            check_text(message["content"], f"messages[{number}].content")
    extra: dict[str, Any] = dict(variables or {})
    if tool_format is not None:
        messages = builtin_messages(messages, tools, tool_format)
    else:
        messages = template_messages(messages)
        if tools:
            extra["tools"] = openai_tools(tools)
    try:
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=generation_prompt, tokenize=False, **extra
        )
    except TemplateError as exc:
        # Templates refuse conversations they cannot render (roles that do not alternate, say)
        # with raise_exception(): the request's fault, in the template's words.
        raise InvalidRequest(
            f"The chat template refused the conversation: {exc}",
            "messages",
        ) from None
    except Exception as exc:  # noqa: BLE001 - see below
        if not variables:
            raise
        # What the request's variables made the template do (add a string to a number, divide
        # by zero, loop past the sandbox's range): the request's fault.
        raise InvalidRequest(
            f"The chat template failed on chat_template_kwargs: {exc}", "chat_template_kwargs"
        ) from None
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def job_prompts(
    job: Job,
    tokenizer: Any,
    vocab_size: int,
    model: str,
    tool_format: ToolFormat | None = None,
) -> list[list[int]]:
    """A generation job's prompts as token ids: its chat, or each of its completion prompts.
    ``tool_format``: the model's template knows no tools (see :func:`chat_prompt`)."""
    if job.get("messages") is not None:
        tools = job.get("tools") if job.get("tool_choice") != "none" else None
        opened = job.get("add_generation_prompt", True)
        variables = job.get("chat_template_kwargs")
        messages = job["messages"]
        prompts = [chat_prompt(tokenizer, messages, model, tools, tool_format, opened, variables)]
    else:
        prompts = [
            tokenize(tokenizer, p, vocab_size, f"prompts[{i}]")
            for i, p in enumerate(job.get("prompts") or [])
        ]
    chat = job.get("messages") is not None
    for number, prompt in enumerate(prompts):
        if not prompt:
            if tokenizer.bos_token_id is None:
                field = "messages" if chat else f"prompts[{number}]"
                raise InvalidRequest("The {param} is empty.", field)
            prompt.append(tokenizer.bos_token_id)
    return prompts


def job_grammar(job: Job, tool_format: ToolFormat) -> tuple[str | None, str]:
    """The grammar the job's reply must follow (None: free) and the job field it comes from."""
    try:
        grammar = request_grammar(
            job.get("json_schema"),
            job.get("tools"),
            job.get("tool_choice") or "auto",
            job.get("parallel_tool_calls", True),
            tool_format,
        )
    except GrammarError as exc:
        raise InvalidRequest(str(exc), exc.param) from None
    field = "tools" if job.get("tools") and job.get("tool_choice") != "none" else "json_schema"
    return grammar, field


def forced_reply(job: Job, grammar: str | None, calls_tools: bool) -> str | None:
    """What the job's reply must be (:data:`CALLS_ONLY`, :data:`JSON_ONLY`), or None when it may be
    free text (no grammar, or ``tool_choice`` auto, which lets the model answer in text)."""
    if grammar is None:
        return None
    if calls_tools:
        return None if (job.get("tool_choice") or "auto") == "auto" else CALLS_ONLY
    return JSON_ONLY
