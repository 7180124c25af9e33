"""Models shared within one process: each is loaded once and reused by every later run.

A ``socialpipe run`` loads its models once anyway; a batch worker or a Python session that runs many
videos reuses them instead of loading them per video. Only models used for inference are shared
(detectors, recognisers, voice encoders, the answer model as the run command uses it); a model that is
trained (``socialpipe finetune``) is loaded privately. :func:`load_counts` tells how often each kind was
loaded in this process (the batch summary reports it).

The CPU threads one process may use come from :func:`thread_budget`: ``SOCIALPIPE_THREADS`` when set
(a batch sets it so that its workers do not oversubscribe the cores), else every core.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
THREADS_VARIABLE = "SOCIALPIPE_THREADS"
# every variable that holds a process to a number of CPU threads: torch, the BLAS libraries and socialpipe's own
THREAD_LIMITS = (THREADS_VARIABLE, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_models: dict[tuple[str, Hashable], Any] = {}
_loads: Counter[str] = Counter()
_lock = threading.Lock()


def shared(kind: str, key: Hashable, load: Callable[[], T]) -> T:
    """The model of this ``kind`` and ``key`` (its settings), loaded by ``load()`` the first time only."""
    with _lock:
        if (kind, key) not in _models:
            _models[kind, key] = load()
            _loads[kind] += 1
        return _models[kind, key]


def forget(kind: str, key: Hashable) -> None:
    """Drop the model of this ``kind`` and ``key``: the next :func:`shared` call for it loads it anew."""
    with _lock:
        _models.pop((kind, key), None)


def load_counts() -> dict[str, int]:
    """How many times each kind of model was loaded in this process."""
    return dict(_loads)


def thread_budget() -> int:
    """CPU threads this process may use."""
    value = os.environ.get(THREADS_VARIABLE, "")
    return max(1, int(value)) if value.isdigit() else (os.cpu_count() or 1)


def torch_device(setting: str, value: str) -> str:
    """The torch device a ``*.device`` setting names: ``auto`` is cuda when this machine has a CUDA device, else
    cpu; cuda asked for on a machine without one is a one-line SocialpipeError naming the setting."""
    import torch

    from socialpipe.pipeline.contracts.errors import SocialpipeError

    device = value if value != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SocialpipeError(f"{setting} is {device}, but this machine has no CUDA device; expected {setting}=cpu "
                              "or auto here (or --device cpu)")
    return device
