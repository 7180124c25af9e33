"""Spreading jobs over workers: in this process, in local worker processes, or on a Ray cluster.

A *worker* is a picklable callable made once per worker by a picklable ``factory`` (so the models it
loads are loaded once per worker, not once per job) and called with one job at a time; it must
catch its own failures and return them as results, so that one bad job never stops the others.
:func:`spread` yields ``(job index, result)`` as jobs finish, in any order; only the caller (the
driver) writes results anywhere.

- ``workers=1``, no Ray: the jobs run here, one after another.
- ``workers=N``: N processes (spawned, not forked: torch and ffmpeg pipes do not survive a fork),
  each limited to ``cores // N`` CPU threads so that together they do not oversubscribe the machine,
  and given one GPU each, round robin, when there are GPUs.
- ``ray``: Ray actors (one per worker) on a local Ray instance (``"local"``) or an existing cluster
  (its address, e.g. ``ray://head:10001`` or ``auto``), each declaring the CPUs (and GPUs) it needs
  so that Ray places it. Ray is an optional extra: ``pip install socialpipe[ray]``.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

from socialpipe.pipeline.contracts.errors import InputError, SocialpipeError, first_line
from socialpipe.pipeline.media.models import THREAD_LIMITS

LOCAL_RAY = "local"


@dataclass(frozen=True)
class Placement:
    """Where the jobs run: ``workers`` workers, here (``ray is None``) or on Ray, each worker using
    ``threads`` CPU threads (default: the cores shared out) and ``gpus`` GPUs."""

    workers: int = 1
    ray: str | None = None  # None: this machine without Ray; "local": a local Ray; else a cluster address
    threads: int | None = None
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InputError(f"--workers {self.workers}: expected 1 or more")

    @property
    def threads_per_worker(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def with_gpus(placement: Placement, device: str, answering: bool = True) -> Placement:
    """``placement`` with a GPU per worker when the answer model will run on CUDA: asked for (``cuda``), or
    ``auto`` with GPUs on this machine (locally; a cluster's GPUs are asked for with ``answer.device=cuda``)."""
    if not answering or placement.gpus:
        return placement
    if device.startswith("cuda") or (device == "auto" and placement.ray is None and _visible_gpus()):
        return replace(placement, gpus=1.0)
    return placement


def spread(factory: Callable[[], Callable[[Any], Any]], jobs: Sequence[Any], placement: Placement,
           lost: Callable[[Any, str], Any]) -> Iterator[tuple[int, Any]]:
    """Run every job on a worker made by ``factory``; yield (index of the job, its result) as each ends.
    A worker that dies (killed, out of memory) turns each job it held into ``lost(job, reason)``."""
    if not jobs:
        return
    if placement.ray is not None:
        yield from _on_ray(factory, jobs, placement)
    elif placement.workers == 1:
        if placement.threads:
            limit_threads(placement.threads)
        worker = factory()
        for index, job in enumerate(jobs):
            yield index, worker(job)
    else:
        yield from _in_processes(factory, jobs, placement, lost)


# ----------------------------------------------------------------------------- local processes

_worker: Callable[[Any], Any] | None = None


def limit_threads(threads: int) -> None:
    """Hold this process to ``threads`` CPU threads: torch, the BLAS libraries, and socialpipe's own
    model loaders (``SOCIALPIPE_THREADS``), through the environment variables THREAD_LIMITS."""
    for variable in THREAD_LIMITS:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _end_with_parent() -> None:
    """A worker ends when the process that started it does (a driver killed with kill -9 leaves no worker
    finishing videos nobody records): on Linux the kernel sends it SIGKILL then (PR_SET_PDEATHSIG); elsewhere, and
    for a parent that died before that was set, a thread looks once a second whether its parent changed."""
    import signal
    import time

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="socialpipe-parent-watch", daemon=True).start()


def _start_worker(factory, threads: int, gpu_ids: list[int], counter) -> None:
    global _worker
    _end_with_parent()
    with counter.get_lock():
        rank = counter.value
        counter.value += 1
    if gpu_ids:  # before torch initialises CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_ids[rank % len(gpu_ids)])
    limit_threads(threads)
    _worker = factory()


def _call_worker(index: int, job: Any) -> tuple[int, Any]:
    return index, _worker(job)


def _visible_gpus() -> list[int]:
    try:
        import torch

        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    except Exception:  # a CPU-only torch build
        return []


def _in_processes(factory, jobs: Sequence[Any], placement: Placement, lost) -> Iterator[tuple[int, Any]]:
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    gpus = _visible_gpus() if placement.gpus else []
    workers = min(placement.workers, len(jobs))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                             initargs=(factory, placement.threads_per_worker, gpus, counter)) as pool:
        pending = {pool.submit(_call_worker, index, job): index for index, job in enumerate(jobs)}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool as exc:
                        yield index, lost(jobs[index], f"its worker process died ({exc})")
        finally:
            for future in pending:
                future.cancel()


# ----------------------------------------------------------------------------- Ray


def _ray():
    try:
        import ray
    except ImportError:
        raise SocialpipeError("--ray needs Ray, which is an optional extra: pip install 'socialpipe[ray]'") from None
    return ray


class _RayWorker:
    """A Ray actor around one worker: made once, then called per job."""

    def __init__(self, factory, threads: int):
        limit_threads(threads)
        self.worker = factory()

    def run(self, index: int, job: Any) -> tuple[int, Any]:
        return index, self.worker(job)


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, in one line, when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not answer: Ray itself
    retries an unreachable cluster for minutes, printing its own warnings."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms: Ray resolves them itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"--ray {address}: nothing answers there ({exc.strerror or exc}); expected the address of "
                         "a running Ray cluster (ray start --head), or --ray alone for a local one") from None


def connect_ray(address: str, num_cpus: int | None = None):
    """Join the Ray cluster at ``address``, or start a local Ray instance for ``"local"``."""
    ray = _ray()
    if address != LOCAL_RAY:
        _reachable(address)
    if not ray.is_initialized():
        try:
            if address == LOCAL_RAY:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise InputError(f"--ray {address}: cannot reach a Ray cluster there ({exc}); expected the address of "
                             "a running cluster (ray start --head) or --ray alone for a local one") from None
    return ray


def _on_ray(factory, jobs: Sequence[Any], placement: Placement) -> Iterator[tuple[int, Any]]:
    ray = connect_ray(placement.ray, num_cpus=placement.workers * placement.threads_per_worker
                      if placement.ray == LOCAL_RAY else None)
    from ray.util import ActorPool

    actor = ray.remote(num_cpus=placement.threads_per_worker, num_gpus=placement.gpus)(_RayWorker)
    actors = [actor.remote(factory, placement.threads_per_worker) for _ in range(min(placement.workers, len(jobs)))]
    pool = ActorPool(actors)
    for index, job in enumerate(jobs):
        pool.submit(lambda a, pair: a.run.remote(*pair), (index, job))
    try:
        while pool.has_next():
            try:
                yield pool.get_next_unordered()
            except ray.exceptions.RayError as exc:  # a lost actor or node: what finished is kept by the caller
                reason = first_line(exc, 200)
                raise SocialpipeError(f"a Ray worker was lost ({reason}); the finished work is recorded, run the "
                                      "same command again to resume") from None
    finally:
        for a in actors:
            ray.kill(a)
