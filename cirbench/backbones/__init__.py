"""Backbones shared by the zoo's models (BLIP-2 from transformers), with their tiny configs for the synthetic world."""
