"""The synthetic fashion world: cirbench's offline default, test bed and demo.

- ``attributes``: categories, attributes, values and which applies to what.
- ``render``: the seeded garment renderer (PIL + numpy).
- ``text``: vague crowd-style texts, detailed texts, captions, shop descriptions.
- ``mentions``: reads attribute claims back from any of those texts.
- ``presets``: difficulty knobs and the tiny / default / large presets.
- ``world``: sampling products and pairs, writing a world folder, reading it back
  (``image_caption_pairs``, ``fashioniq_detailed_texts``).
- ``writers``: the FashionIQ, Fashion200k and DeepFashion-MultiModal on-disk formats.
- ``stats``: vague vs detailed texts, measured.
"""
