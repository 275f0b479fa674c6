"""The word list of a synthetic world's tiny BLIP-2 tokenizer: every word its texts can contain.

A real BERT vocabulary holds every common English word, so a FACap text costs about one word
piece per word. The tiny tokenizer is built from a word list instead; a word missing from it is
spelled out in single-character pieces ("instead" -> 7 pieces), which makes sequences 2-3x
longer, training 2x slower and the model learn letters instead of words. So the list covers
every text the tiny models read in the world, written the way the world's own generators and the
offline FACap backends write them:

- the detailed captions the backbones are pre-trained on,
- the sources' own texts (shop titles, DeepFashion-MultiModal captions),
- the offline FACap captioner's captions and the modifier's texts between them,
- the FashionIQ-like detailed modification texts and every phrase of the vague annotator texts.

Typos of the vague annotations are not words: they still split into pieces, as in real FashionIQ.

The list starts with the generators' words as the package ships them (``generator_words.txt``:
the words of the default world's texts, in the order they first appeared there), so a word's
token id does not depend on which garments and pairs a world happened to draw: a world whose
FashionIQ-like part changes keeps the tokenizer, and the backbones, of its shop sources. Words a
world's texts add beyond it are appended.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Bumped when the list's recipe changes: it is part of the backbone recipe, so backbones built
# with another list are rebuilt.
VOCABULARY_VERSION = "generator_words_v2"
GENERATOR_WORDS = "generator_words.txt"


def generator_words() -> list[str]:
    """The package's list of the world generators' words, in token-id order."""
    return resources.files(__package__).joinpath(GENERATOR_WORDS).read_text().split()


def world_vocabulary(world_dir: Path) -> list[str]:
    """The generators' words, then any other word of the world's texts in order of first appearance."""
    from cirbench.backbones.blip2_tokenizers import words_of

    return words_of([*generator_words(), *world_texts(Path(world_dir))])


def world_texts(world_dir: Path) -> list[str]:
    from cirbench.synth.text import vague_phrases
    from cirbench.synth.world import fashioniq_detailed_texts, image_caption_pairs

    texts = [caption for _, caption in image_caption_pairs(world_dir)]
    texts += _facap_texts(world_dir)
    for captions in sorted((world_dir / "fashioniq" / "captions").glob("cap.*.json")):
        category, split = captions.name.split(".")[1:3]
        if split != "test":  # test entries have no target, so no modification text
            texts += fashioniq_detailed_texts(world_dir, category, split)
    return texts + list(vague_phrases())


def _facap_texts(world_dir: Path) -> list[str]:
    """The source texts, and what the offline FACap backends write from them."""
    from cirbench.facap.backends.offline import write_caption, write_modification
    from cirbench.facap.build import world_sources

    records = [record for spec in world_sources(world_dir) for record in spec.read().records]
    captions = [write_caption(r.category, r.description, r.attributes) for r in records]
    # Neighbouring records differ in most attributes: their modification texts use every template.
    modifications = [
        write_modification(a.category, caption_a, caption_b)
        for (a, caption_a), caption_b in zip(zip(records, captions), captions[1:])
    ]
    keep_same = [write_modification(r.category, c, c) for r, c in zip(records, captions)][:50]
    return [r.description for r in records] + captions + modifications + keep_same
