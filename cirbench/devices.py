"""The one rule every computing command uses to pick its device and its default precision.

``--device auto`` (the default of every command) is ``$CIRBENCH_DEVICE`` when set, else ``cuda``
when torch sees a GPU, else ``cpu``. Any other value (``cpu``, ``cuda``, ``cuda:N``, ``mps``) is taken
as given; a device this machine does not have (``cuda:9`` on one GPU, ``mps`` off a Mac) and a device
type cirbench does not run on (``tpu``, ``meta``, ``xla``) are refused with one clear line. Under torchrun a
``cuda`` device becomes ``cuda:LOCAL_RANK`` in ``cirbench.distributed.setup``.

Precision: ``auto`` is bf16 on CUDA and fp32 on CPU (bf16 autocast runs on CPU too, slowly).
torch loads inside the functions: the CLI imports this module at start-up.
"""

from __future__ import annotations

import os

from cirbench.errors import DataError

AUTO = "auto"
DEVICE_ENV = "CIRBENCH_DEVICE"
PRECISIONS = ("fp32", "bf16")
DEVICE_HELP = "auto (cuda when available, else cpu; $CIRBENCH_DEVICE overrides), cpu, cuda or cuda:N."
PRECISION_HELP = "auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32."


def resolve_device(device: str | None = AUTO) -> str:
    """The device a command runs on: ``auto`` resolved by the module's rule, any other name checked."""
    import torch

    name = (device or AUTO).strip()
    if name == AUTO:
        name = os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(name)
    except RuntimeError:
        raise DataError("--device", name, "not a device name (auto, cpu, cuda or cuda:N)") from None
    if parsed.type == "mps" and not _mps_available(torch):
        raise DataError("--device", name, "Apple's MPS is not available on this machine; use --device cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise DataError("--device", name, "cirbench runs on auto, cpu, cuda or cuda:N (mps on a Mac)")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise DataError("--device", name, "CUDA is not available on this machine; use --device cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise DataError("--device", name, f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_precision(precision: str | None, device: str) -> str:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere; ``bf16``/``fp32`` as given."""
    name = (precision or AUTO).strip()
    if name == AUTO:
        return "bf16" if str(device).startswith("cuda") else "fp32"
    if name not in PRECISIONS:
        raise DataError("--precision", name, f"must be one of {AUTO}, {', '.join(PRECISIONS)}")
    return name
