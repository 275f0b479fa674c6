"""Training: the one loop (``loop``), its data (``data``), checkpoints, schedules, losses,
multi-GPU helpers (``distributed``), per-epoch validation and the throughput benchmark (``bench``)."""
