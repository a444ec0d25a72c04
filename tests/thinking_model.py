"""A tiny model that thinks, for the reasoning tests: its chat template opens ``<think>`` (as
DeepSeek-R1's does; with ``enable_thinking`` false it closes it too, as Qwen3's does), and its
forward pass (custom code, loaded with ``trust_remote_code``) follows a script: after each token
of :data:`THOUGHT` and :data:`ANSWER` it strongly prefers the next, so that greedy decoding
thinks :data:`THOUGHT`, closes the tag, and answers :data:`ANSWER`.

A grammar (tools, ``response_format``) masks the script's answer: the reply then thinks the
same, and what follows the tag is the grammar's.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny_model import CHAT_TEMPLATE, build_tiny_model

THOUGHT = "The quick brown fox jumps over the lazy dog"
ANSWER = "Hello world! What is your name?"
# The assistant's turn opens its thinking; with enable_thinking false (as Qwen3's reads it) it
# opens and closes it, and the script goes on to its answer.
THINKING_TEMPLATE = CHAT_TEMPLATE.replace(
    "<|im_start|>assistant\n{% endif %}",
    "<|im_start|>assistant\n{% if enable_thinking is defined and not enable_thinking %}"
    "<think></think>{% else %}<think>{% endif %}{% endif %}",
)

MODELING = """
import torch
from transformers import LlamaForCausalLM


class ScriptedLlamaForCausalLM(LlamaForCausalLM):
    def forward(self, input_ids=None, **kwargs):
        out = super().forward(input_ids=input_ids, **kwargs)
        if input_ids is None:
            return out
        table = getattr(self, "_next", None)
        if table is None:  # the script: each token's successor (-1: none)
            table = torch.full((self.config.vocab_size,), -1, dtype=torch.long)
            for before, after in self.config.script:
                table[before] = after
            self._next = table
        logits = out.logits
        following = table.to(input_ids.device)[input_ids[:, -logits.shape[1]:]]
        scripted = following >= 0
        bonus = torch.zeros_like(logits).scatter_(-1, following.clamp(min=0).unsqueeze(-1), 40.0)
        out.logits = logits + bonus * scripted.unsqueeze(-1)
        return out
"""


def build_thinking_model(directory: Path) -> Path:
    from transformers import AutoTokenizer

    build_tiny_model(
        directory,
        chat_template=THINKING_TEMPLATE,
        context=2048,
        extra_tokens=("<think>", "</think>"),
    )
    tokenizer = AutoTokenizer.from_pretrained(directory)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    script = ids("<think>") + ids(THOUGHT) + ids("</think>") + ids("\n" + ANSWER)
    script.append(tokenizer.eos_token_id)
    # Each token of the script leads to one next token: no token may come twice.
    assert len(set(script)) == len(script), tokenizer.convert_ids_to_tokens(script)
    (directory / "modeling_scripted.py").write_text(MODELING)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["script"] = list(zip(script, script[1:], strict=False))
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_scripted.ScriptedLlamaForCausalLM"}
    config_path.write_text(json.dumps(config, indent=2))
    return directory
