"""A character-level tokenizer built locally (no download): printable ASCII plus special tokens."""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


def build_char_tokenizer(extra_chars: str = "") -> PreTrainedTokenizerFast:
    """Every printable ASCII character (and ``extra_chars``) is one token; anything else maps to <unk>.

    A different ``extra_chars`` gives a different vocabulary (used to test heterogeneous swarms).
    """
    chars: list[str] = []
    for ch in string.printable + extra_chars:
        if ch not in chars and ch not in "\x0b\x0c\r":
            chars.append(ch)
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=False))
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    return fast
