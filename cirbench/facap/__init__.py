"""The FACap construction pipeline (``cirbench build-facap`` / ``build-enhfiq``).

sources (records) -> embedding (CLIP) -> pairing (top-20 within source and category, other views
excluded, seeded pick) -> captions (stage 1 backend) -> modification texts (stage 2 backend) ->
release files. ``pipeline`` runs the stages over resumable stores (``store``); ``backends`` holds
the offline, transformers and OpenAI-compatible annotators; ``output`` and ``enhfiq`` write the
FACap and FashionIQ layouts; ``dataset_stats`` and ``quality`` measure what was built;
``attribute_phrases`` is the attribute vocabulary the offline backends and the faithfulness score
read texts with; ``bench_pairing`` times the pairing against bare FAISS. It never imports
``cirbench.synth``: the synthetic world is only one of its inputs (``synth.default_world``).
"""
