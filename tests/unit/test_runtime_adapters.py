"""LoRA adapters added to and removed from a running engine: an adapter loaded while the engine
serves gives its merged model's output beside the base's; unloading refuses new jobs at once,
waits for the adapter's running sequences, and gives the base its own forward back."""

import threading
import time

import pytest
import torch

from tests.unit.test_adapters import merged_greedy
from tests.unit.test_engine import MemoryIO
from workers.engine import GenerationEngine, JobFailed

PROMPT = "Once upon a time"


class GatedIO(MemoryIO):
    """Steps wait at their exchange while the gate is closed: a job stays running."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def exchange(self, events, job_ids):
        self.gate.wait()
        return super().exchange(events, job_ids)


@pytest.fixture
def engine(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = GenerationEngine(model, tokenizer, GatedIO(), max_batch_size=8, name="tiny")
    engine.start()
    yield engine
    engine.io.gate.set()
    engine.stop()


def run(engine, job_id, model="tiny", **params):
    params = {"temperature": 0, "max_tokens": 12, **params}
    ticket = engine.submit({"id": job_id, "model": model, "prompts": [PROMPT], "params": params})
    return ticket


def text_of(engine, ticket, job_id):
    ticket.wait()
    return engine.io.text(job_id)


def test_an_adapter_loaded_while_serving_runs_beside_the_base(
    engine, tiny_model_dir, tiny_adapter_dirs
):
    base = text_of(engine, run(engine, "before"), "before")
    assert type(engine.decode_forward).__name__ == "LlamaDecoder"  # the lean forward
    engine.load_adapter("tiny-rt", str(tiny_adapter_dirs[0]))
    assert engine.peft
    tickets = {"base": run(engine, "base"), "lora": run(engine, "lora", "tiny-rt")}
    texts = {name: text_of(engine, t, name) for name, t in tickets.items()}
    assert texts["base"] == base
    assert texts["lora"] == merged_greedy(tiny_model_dir, tiny_adapter_dirs[0], PROMPT, 12)
    assert texts["lora"] != base

    engine.unload_adapter("tiny-rt")
    assert not engine.peft and type(engine.decode_forward).__name__ == "LlamaDecoder"
    assert "lora_" not in " ".join(n for n, _ in engine.model.named_parameters())
    with pytest.raises(JobFailed):
        run(engine, "late", "tiny-rt")
    assert text_of(engine, run(engine, "after"), "after") == base

    # Loaded again (a new adapter name inside: no cached prefix of the old one is read).
    engine.load_adapter("tiny-rt", str(tiny_adapter_dirs[1]))
    again = text_of(engine, run(engine, "again", "tiny-rt"), "again")
    assert again == merged_greedy(tiny_model_dir, tiny_adapter_dirs[1], PROMPT, 12)


def test_unloading_waits_for_the_adapters_running_sequences(engine, tiny_adapter_dirs):
    engine.load_adapter("tiny-rt", str(tiny_adapter_dirs[0]))
    engine.io.gate.clear()  # the next step holds: the job stays running
    ticket = run(engine, "long", "tiny-rt", max_tokens=40, ignore_eos=True)
    unloading = threading.Thread(target=engine.unload_adapter, args=("tiny-rt",))
    unloading.start()
    time.sleep(0.3)
    assert unloading.is_alive() and not ticket.finished  # waiting for the job
    with pytest.raises(JobFailed):  # refused at once, though
        run(engine, "new", "tiny-rt")
    engine.io.gate.set()
    unloading.join(timeout=30)
    assert not unloading.is_alive() and ticket.outcome == "done"
    tokens = [e for e in engine.io.of("long") if e["type"] == "token"]
    assert sum(len(e["token_ids"]) for e in tokens) == 40  # not cut
    assert not engine.peft


def test_a_path_that_holds_no_adapter_is_refused_and_changes_nothing(engine, tmp_path):
    with pytest.raises(ValueError):
        engine.load_adapter("tiny-rt", str(tmp_path))
    assert not engine.peft and engine.adapters == {}
    with pytest.raises(JobFailed):
        run(engine, "x", "tiny-rt")


def test_an_adapter_made_for_another_model_is_refused_and_changes_nothing(engine, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    narrower = LlamaConfig(
        vocab_size=400,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(LlamaForCausalLM(narrower), config).save_pretrained(tmp_path / "other")
    with pytest.raises(RuntimeError, match="size mismatch"):
        engine.load_adapter("tiny-rt", str(tmp_path / "other"))
    assert not engine.peft and engine.adapters == {}
    assert not any("lora_" in n for n, _ in engine.model.named_modules())
    assert type(engine.decode_forward).__name__ == "LlamaDecoder"
