"""The BLIP-2 word-piece tokenizers: the tiny models' in-memory vocabulary and LAVIS's from a vocab.txt.

Both are BERT's lower-casing word-piece tokenizer, built with the ``tokenizers`` library (no files,
no network): ``BertTokenizerFast(vocab_file=...)`` silently maps everything to [UNK] in
transformers 5, and ``BertTokenizerFast(vocab=dict)`` does not exist in transformers 4.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

from transformers import PreTrainedTokenizerFast

# LAVIS's tokenizer: bert-base-uncased plus this bos token, appended after the vocabulary.
LAVIS_BOS_TOKEN = "[DEC]"

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARACTERS = string.ascii_lowercase + string.digits
# Fashion words known to every tiny tokenizer; anything else falls back to character pieces.
_BASE_WORDS = """
a an and the is are be with without more less than to of in on it its has have make makes
dress shirt top tee toptee skirt pants jacket coat blouse sweater
black white grey gray red blue green yellow orange pink purple brown beige navy
solid stripes striped dots dotted checks checked floral plaid pattern patterned print printed
sleeve sleeves sleeveless short long longer shorter medium three quarter
neck neckline round v square collar collared crew
length mini midi maxi knee ankle fit fitted loose tight slim relaxed wide narrow
darker lighter brighter color colour colored different same similar change changed
""".split()


def words_of(texts: Iterable[str]) -> list[str]:
    """Lower-case alphabetic words of ``texts``, in order of first appearance."""
    return list(dict.fromkeys(w for text in texts for w in re.findall(r"[a-z]+", text.lower())))


def build_tiny_tokenizer(extra_words: Iterable[str] = (), max_length: int = 128) -> PreTrainedTokenizerFast:
    """A BERT word-piece tokenizer built from an in-memory vocabulary (no files, no network).

    Single characters and their ``##`` continuations are in the vocabulary, so unknown words split
    into pieces instead of collapsing to [UNK].
    """
    pieces = [*_SPECIAL_TOKENS, *string.punctuation, *_CHARACTERS, *(f"##{c}" for c in _CHARACTERS)]
    tokens = list(dict.fromkeys([*pieces, *_BASE_WORDS, *extra_words]))
    return wordpiece_tokenizer(tokens, max_length)


def tokenizer_from_vocab_file(vocab_file: str | Path, bos_token: str | None = LAVIS_BOS_TOKEN,
                              max_length: int = 512) -> PreTrainedTokenizerFast:
    """LAVIS's BLIP-2 tokenizer from a WordPiece ``vocab.txt`` (e.g. bert-base-uncased's): lower-casing
    BERT tokenization, with ``bos_token`` appended after the vocabulary as LAVIS adds it.

    Args:
        vocab_file: one token per line; a token's id is its line number.
        bos_token: the added token (LAVIS: ``[DEC]``); None adds nothing.
        max_length: the tokenizer's ``model_max_length``.
    """
    tokenizer = wordpiece_tokenizer(Path(vocab_file).read_text(encoding="utf-8").splitlines(), max_length)
    if bos_token:
        tokenizer.add_special_tokens({"bos_token": bos_token})
    return tokenizer


def wordpiece_tokenizer(tokens: Sequence[str], max_length: int) -> PreTrainedTokenizerFast:
    """BERT's lower-casing word-piece tokenizer over ``tokens`` (a token's id is its index), with the
    [CLS] ... [SEP] template; the special tokens must be among ``tokens``.

    Built with the ``tokenizers`` library, which every transformers release wraps alike:
    ``BertTokenizerFast(vocab_file=...)`` silently maps everything to [UNK] in transformers 5, and
    ``BertTokenizerFast(vocab=dict)`` does not exist in transformers 4.

    Args:
        tokens: the vocabulary in id order.
        max_length: the tokenizer's ``model_max_length``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {token: index for index, token in enumerate(tokens)}
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    wordpiece.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", model_max_length=max_length,
    )
