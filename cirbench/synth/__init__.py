"""The synthetic fashion world: cirbench's offline default, test bed and demo.

- ``attributes``: categories, attributes, values and which applies to what.
- ``render``: the seeded garment renderer (PIL + numpy).
- ``text``: vague crowd-style texts, detailed texts, captions, shop descriptions.
- ``mentions``: reads attribute claims back from any of those texts.
- ``presets``: difficulty knobs and the tiny / default / large presets.
- ``world``: sampling products and pairs, writing a world folder, reading it back
  (``image_caption_pairs``, ``fashioniq_detailed_texts``).
- ``writers``: the FashionIQ, Fashion200k and DeepFashion-MultiModal on-disk formats.
- ``text_stats``: vague vs detailed texts, measured.
- ``default_world``: the cached default world and its tiny CLIP as the FACap builders' input.
- ``tiny_backbones``: the world's pre-trained tiny CLIP and BLIP-2 (and the shipped pair).
- ``vocabulary``, ``probe``, ``follow``: the tiny tokenizer's words; what the backbones and CIR
  models see and follow.

It uses ``cirbench.facap`` (the world's sources are read by its readers, its vocabulary holds what
the offline FACap backends write); ``facap`` never imports ``synth``.
"""
