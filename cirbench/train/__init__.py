"""Training: the recipe's sections (``recipe``), one run from a recipe (``recipe_run``), the one
loop (``loop``), its data (``data``), training checkpoints (``checkpoint``), schedules
(``schedule``), per-epoch validation (``validation``) and the throughput benchmark
(``bench_throughput``). The losses and the process-group helpers the models share sit one layer
down (``cirbench.losses``, ``cirbench.distributed``)."""
