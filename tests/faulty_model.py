"""A tiny model that fails on demand, for the fault tests: the real engine and worker code, with
a model (custom code, loaded with ``trust_remote_code``) whose forward pass

- raises when its input holds the token ``<|boom|>`` (in a prompt: its prefill fails; forced as
  an output with logit_bias: the decode step after it fails; it never samples it by itself);
- blocks while the file named by the worker's ``FAULTY_BLOCK_FILE`` exists (a hung kernel);
- sleeps ``FAULTY_STEP_DELAY`` seconds per pass (a slow model, so jobs are still running when a
  test acts on them);

and whose chat template refuses a conversation that starts with the assistant, as many real
templates do with ``raise_exception``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny_model import CHAT_TEMPLATE, build_tiny_model

BOOM = "<|boom|>"
STRICT_TEMPLATE = (
    "{% if messages[0]['role'] == 'assistant' %}"
    "{{ raise_exception('Conversations must start with a user or system message.') }}"
    "{% endif %}" + CHAT_TEMPLATE
)

MODELING = """
import os
import time

from transformers import LlamaForCausalLM


class FaultyLlamaForCausalLM(LlamaForCausalLM):
    def forward(self, input_ids=None, **kwargs):
        block = os.environ.get("FAULTY_BLOCK_FILE")
        while block and os.path.exists(block):
            time.sleep(0.05)
        time.sleep(float(os.environ.get("FAULTY_STEP_DELAY") or 0))
        if input_ids is not None and bool((input_ids == self.config.boom_token_id).any()):
            raise RuntimeError("boom: the model failed on demand")
        out = super().forward(input_ids=input_ids, **kwargs)
        # It never writes the token by itself (only logit_bias can force it, by +100).
        out.logits[..., self.config.boom_token_id] = -50.0
        return out
"""


def build_faulty_model(directory: Path) -> Path:
    from transformers import AutoTokenizer

    build_tiny_model(directory, extra_special=(BOOM,), chat_template=STRICT_TEMPLATE)
    boom = AutoTokenizer.from_pretrained(directory).convert_tokens_to_ids(BOOM)
    (directory / "modeling_faulty.py").write_text(MODELING)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["boom_token_id"] = boom
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_faulty.FaultyLlamaForCausalLM"}
    config_path.write_text(json.dumps(config, indent=2))
    return directory
