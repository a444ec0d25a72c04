"""Constrained decoding libraries compared on the default model's tokenizer (SmolLM2, 49,152
tokens): what each costs to set up, to compile a JSON Schema, and to compute the allowed-token
masks of 32 rows per step.

    python -m bench.grammar_libs [--rows 32] [--repeat 3]

llguidance is a requirement of the server. The others are measured only if installed, e.g.
``pip install outlines-core==0.2.14`` and ``pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi``
(xgrammar's own requirements pull triton, which it needs only on a GPU).

Each row walks the tokens of a valid instance of the schema; every step computes the masks of all
rows (in parallel where the library can), then advances each row by its token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "email", "tags", "address", "role"],
    "additionalProperties": False,
}
INSTANCE = {
    "name": "Ada Lovelace",
    "age": 36,
    "email": "ada@example.com",
    "tags": ["math", "engines"],
    "address": {"city": "London", "zip": "W1"},
    "role": "admin",
}


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from config.registry import DEFAULT_MODELS, resolve_source

    spec = DEFAULT_MODELS[0]
    return AutoTokenizer.from_pretrained(resolve_source(spec), gguf_file=spec.gguf_file)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def run_llguidance(tokenizer, tokens, rows):
    import llguidance
    import llguidance.hf
    import llguidance.torch

    lltok, setup = timed(lambda: llguidance.hf.from_tokenizer(tokenizer))
    options = {"whitespace_flexible": False}
    grammar = llguidance.LLMatcher.grammar_from_json_schema(SCHEMA, defaults=options)
    _, compile_first = timed(lambda: llguidance.LLMatcher(lltok, grammar))
    _, compile_again = timed(lambda: llguidance.LLMatcher(lltok, grammar))
    matchers = [llguidance.LLMatcher(lltok, grammar) for _ in range(rows)]
    bitmask = llguidance.torch.allocate_token_bitmask(rows, lltok.vocab_size)
    executor = llguidance.LLExecutor()
    pairs = [(m, i) for i, m in enumerate(matchers)]
    steps = []
    for token in tokens:
        _, took = timed(
            lambda: llguidance.torch.fill_next_token_bitmask_par(executor, pairs, bitmask)
        )
        steps.append(took)
        for m in matchers:
            assert m.consume_token(token), m.get_error()
    return setup, compile_first, compile_again, steps


def run_xgrammar(tokenizer, tokens, rows):
    import xgrammar as xgr

    info, setup = timed(lambda: xgr.TokenizerInfo.from_huggingface(tokenizer))
    compiler = xgr.GrammarCompiler(info)
    schema = json.dumps(SCHEMA)

    def compile_():
        return compiler.compile_json_schema(schema, any_whitespace=False, separators=(",", ":"))

    compiled, compile_first = timed(compile_)
    _, compile_again = timed(compile_)
    matchers = [xgr.GrammarMatcher(compiled) for _ in range(rows)]
    bitmask = xgr.allocate_token_bitmask(rows, info.vocab_size)
    batch = xgr.BatchGrammarMatcher()
    steps = []
    for token in tokens:
        _, took = timed(lambda: batch.batch_fill_next_token_bitmask(matchers, bitmask))
        steps.append(took)
        for m in matchers:
            assert m.accept_token(token)
    return setup, compile_first, compile_again, steps


def run_outlines_core(tokenizer, tokens, rows):
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    from workers.engine.text import TokenBytes

    def vocabulary():
        raw = TokenBytes(tokenizer)
        eos = tokenizer.eos_token_id
        by_bytes: dict[bytes, list[int]] = {}
        for token_id in range(len(tokenizer)):
            if token_id != eos and token_id not in tokenizer.all_special_ids:
                by_bytes.setdefault(bytes(raw(token_id)), []).append(token_id)
        return Vocabulary(eos, by_bytes)

    vocab, setup = timed(vocabulary)
    regex = build_regex_from_schema(json.dumps(SCHEMA))
    index, compile_first = timed(lambda: Index(regex, vocab))
    _, compile_again = timed(lambda: Index(regex, vocab))
    guides = [Guide(index) for _ in range(rows)]
    import torch

    mask = torch.zeros((rows, (len(tokenizer) + 31) // 32), dtype=torch.int32)
    steps = []
    for token in tokens:

        def fill():
            for i, guide in enumerate(guides):
                row = mask[i]
                guide.write_mask_into(row.data_ptr(), row.numel(), row.element_size())

        _, took = timed(fill)
        steps.append(took)
        for guide in guides:
            guide.advance(token)
    return setup, compile_first, compile_again, steps


LIBRARIES = {
    "llguidance": run_llguidance,
    "xgrammar": run_xgrammar,
    "outlines-core": run_outlines_core,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=32)
    args = parser.parse_args()
    tokenizer = smollm2_tokenizer()
    text = json.dumps(INSTANCE, separators=(",", ":"))
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    print(
        f"JSON Schema with {len(SCHEMA['properties'])} properties (nested object, array, enum, "
        f"format); an instance of {len(tokens)} tokens; {args.rows} rows; tokenizer of "
        f"{len(tokenizer)} tokens\n"
    )
    print(
        f"{'library':15}{'setup s':>10}{'compile ms':>12}{'again ms':>10}"
        f"{'step p50 ms':>13}{'step p95 ms':>13}{'per row ms':>12}"
    )
    for name, run in LIBRARIES.items():
        try:
            # A fresh tokenizer each: a library's set-up may change the one it is given.
            setup, first, again, steps = run(smollm2_tokenizer(), tokens, args.rows)
        except ImportError as exc:
            print(f"{name:15}not installed ({exc.name})")
            continue
        except Exception as exc:  # noqa: BLE001 - one library failing does not stop the rest
            print(f"{name:15}failed: {type(exc).__name__}: {exc}")
            continue
        p50 = statistics.median(steps) * 1000
        p95 = sorted(steps)[int(len(steps) * 0.95)] * 1000
        print(
            f"{name:15}{setup:>10.2f}{first * 1000:>12.1f}{again * 1000:>10.1f}"
            f"{p50:>13.2f}{p95:>13.2f}{p50 / args.rows:>12.3f}"
        )


if __name__ == "__main__":
    main()
