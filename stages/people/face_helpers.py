"""Face embeddings spread over helper processes.

dlib's face descriptor (83 ms a face on these cores) holds Python's lock and uses one core, so a
second thread gains nothing: on 2 cores the face identity step of the sample took 2.2 s with the
other core idle. Each helper is a plain child process (``python -m socialpipe.stages.people.face_helpers
MODEL``) that loads the same model and embeds aligned face chips sent over its stdin as raw pixels,
answering with raw float32 vectors on its stdout: nothing is pickled, the caller's ``__main__`` is
never imported again (as multiprocessing's spawn would), and a helper ends when its stdin closes.

Protocol, per request: a little-endian uint32 ``n`` then ``n`` chips of ``CHIP_SIZE`` x ``CHIP_SIZE``
x 3 uint8 pixels; the answer is ``n`` x ``dimension`` float32 values. A helper that fails (it could
not start, or died) is dropped and its chips are embedded here, so the vectors are always those of
the model in this process: the same numbers, in the same order.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Hashable

import numpy as np

from socialpipe.pipeline.media.models import THREAD_LIMITS, thread_budget

CHIP_SIZE = 150  # the aligned face dlib's descriptor reads (compute_face_descriptor cuts the same chip itself)
GROUP = 96  # chips shared out at a time: memory holds at most this many (67 KB each)
MIN_SHARED = 8  # fewer faces than this are embedded here alone: a helper takes about 0.5 s to start
MAX_HELPERS = 3  # more processes than this start more slowly than they help on the faces one video has


class _Helper:
    """One helper process and its pipes."""

    def __init__(self, model_name: str):
        env = {**os.environ, **dict.fromkeys(THREAD_LIMITS, "1")}  # dlib uses one core
        self.process = subprocess.Popen([sys.executable, "-m", __name__, model_name], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)

    def send(self, chips: list[np.ndarray]) -> bool:
        try:
            self.process.stdin.write(struct.pack("<I", len(chips)) + b"".join(c.tobytes() for c in chips))
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def receive(self, count: int, dimension: int) -> np.ndarray | None:
        size = count * dimension * 4
        data = self.process.stdout.read(size)
        if data is None or len(data) != size:
            return None
        return np.frombuffer(data, np.float32).reshape(count, dimension).copy()

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class SharedEmbedder:
    """Embeds faces here and in up to ``thread_budget() - 1`` helper processes (none when the budget is one
    core, the model cannot work on chips, or there are fewer than MIN_SHARED faces). A model works on chips
    when it has ``chip(frame, xyxy)`` (the aligned CHIP_SIZE x CHIP_SIZE RGB face), ``embed_chips(chips)``
    and ``dimension``, as ``DlibFaceEmbedding`` has. ``add`` faces with a key;
    ``results`` gives (key, vector) in the order they were added. Use it as a context manager."""

    def __init__(self, model, model_name: str, faces: int):
        self.model = model
        self.on_chips = hasattr(model, "chip") and hasattr(model, "embed_chips")
        wanted = min(thread_budget() - 1, MAX_HELPERS) if self.on_chips and faces >= MIN_SHARED else 0
        self.helpers: list[_Helper] = []
        for _ in range(wanted):
            try:
                self.helpers.append(_Helper(model_name))
            except OSError:
                break
        self.keys: list[Hashable] = []
        self.chips: list[np.ndarray] = []
        self.done: list[tuple[Hashable, np.ndarray]] = []

    def __enter__(self) -> SharedEmbedder:
        return self

    def __exit__(self, *exc) -> None:
        for helper in self.helpers:
            helper.close()
        self.helpers = []

    def add(self, key: Hashable, frame: np.ndarray, xyxy: np.ndarray) -> None:
        if not self.on_chips:
            self.done.append((key, self.model.embed(frame, xyxy)))
            return
        self.keys.append(key)
        self.chips.append(np.ascontiguousarray(self.model.chip(frame, xyxy), np.uint8))
        if len(self.chips) >= GROUP:
            self._embed_waiting()

    def results(self) -> list[tuple[Hashable, np.ndarray]]:
        self._embed_waiting()
        return self.done

    def _embed_waiting(self) -> None:
        """The waiting chips shared out: one part per helper (sent first, so they work while this process
        embeds its own part), this process's part, then the helpers' answers."""
        if not self.chips:
            return
        parts = np.array_split(np.arange(len(self.chips)), len(self.helpers) + 1)
        sent = [helper.send([self.chips[i] for i in part]) for helper, part in zip(self.helpers, parts[1:])]
        vectors: list[np.ndarray | None] = [None] * len(self.chips)
        for i, vector in zip(parts[0], self.model.embed_chips([self.chips[i] for i in parts[0]])):
            vectors[i] = vector
        failed = []
        for helper, part, ok in zip(self.helpers, parts[1:], sent):
            answer = helper.receive(len(part), self.model.dimension) if ok and len(part) else None
            if answer is None and len(part):
                failed.append(helper)
                answer = self.model.embed_chips([self.chips[i] for i in part])
            for i, vector in zip(part, answer):
                vectors[i] = np.asarray(vector, np.float32)
        for helper in failed:
            helper.close()
            self.helpers.remove(helper)
        self.done += list(zip(self.keys, vectors))
        self.keys, self.chips = [], []


def _serve(model_name: str) -> None:
    """The helper's loop: requests from stdin, answers to stdout, until stdin closes."""
    from socialpipe.pipeline.contracts.config import FACE_EMBEDDINGS, PeopleConfig

    model = FACE_EMBEDDINGS.build(model_name, PeopleConfig(face_embedding=model_name))
    read, write = sys.stdin.buffer, sys.stdout.buffer
    chip_bytes = CHIP_SIZE * CHIP_SIZE * 3
    while True:
        header = read.read(4)
        if len(header) < 4:
            return
        (count,) = struct.unpack("<I", header)
        data = read.read(count * chip_bytes)
        if len(data) < count * chip_bytes:
            return
        chips = np.frombuffer(data, np.uint8).reshape(count, CHIP_SIZE, CHIP_SIZE, 3)
        vectors = model.embed_chips(list(chips))
        write.write(np.asarray(vectors, np.float32).reshape(count, model.dimension).tobytes())
        write.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
