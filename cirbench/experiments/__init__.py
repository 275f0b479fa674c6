"""Experiments: evaluate many models on many benchmarks, the paper's ablations, and the demo."""
