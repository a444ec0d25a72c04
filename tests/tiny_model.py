"""A tiny randomly initialised Llama and its tokenizer, built at test time into a local directory.

Real transformers code paths, no weights to fetch. The EOS row of the output layer is zeroed so
greedy decoding never picks EOS (a zero logit is never the largest of hundreds of random ones):
every greedy sequence runs to max_tokens, which makes the tests' lengths deterministic.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Once upon a time there was a little queue that carried jobs to busy workers.",
    "The capital of France is Paris. Hello world! What is your name?",
    "Redis publishes events; Celery workers run models; Flask relays tokens to clients.",
    "0 1 2 3 4 5 6 7 8 9 the quick brown fox jumps over the lazy dog, again and again.",
]
CONTEXT = 256


def build_tiny_model(
    directory: Path,
    seed: int = 0,
    extra_special: tuple[str, ...] = (),
    chat_template: str = "",
    context: int = CONTEXT,
    extra_tokens: tuple[str, ...] = (),
) -> Path:
    """The tiny model in ``directory``; ``extra_special``: more special tokens (dropped when
    decoding), ``extra_tokens``: more tokens that decode as their text (``<think>``)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 20,
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra_special],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=context,
    )
    tokenizer.add_tokens(list(extra_tokens))
    tokenizer.chat_template = chat_template or CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id].zero_()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_adapter(base_dir: Path, directory: Path, seed: int) -> Path:
    """A random LoRA adapter for the tiny model (both LoRA matrices random, so that it really
    changes the outputs), saved the way PEFT saves adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, config)
    with torch.no_grad():  # larger than PEFT's small random init: the greedy path must change
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(directory)
    return directory


def build_tiny_cross_encoder(directory: Path) -> Path:
    """A tiny random BERT cross-encoder (one relevance label), with the default embedding
    model's tokenizer: what ``CrossEncoder`` loads. Its scores mean nothing, but they are the
    same for the same pair, whatever else shares its batch."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from config.registry import DEFAULT_MODELS, EMBEDDING, resolve_source

    (embedder,) = (spec for spec in DEFAULT_MODELS if spec.kind == EMBEDDING)
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(embedder))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
