"""``socialpipe finetune``: LoRA adapters trained on a dataset's questions, seen exactly as ``eval``
sees them (the same loaders, scenes, prompts and boxes), one adapter per seed.

``OUT/finetune.json`` records the settings (a resume with other settings is refused) and
``OUT/summary.json`` each seed's result; one seed trains into ``OUT`` itself, several into ``OUT/seed-N``. See
``socialpipe.stages.answer.finetune`` for the training itself and the files each folder holds.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from socialpipe.pipeline.contracts.config import AnswerConfig, FinetuneConfig
from socialpipe.pipeline.evaluation.datasets import load_dataset
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.evaluation.tasks import claim_folder, scene_for
from socialpipe.pipeline.contracts.io import write_text_atomic
from socialpipe.pipeline.contracts.progress import ProgressEvent, ProgressHook, quiet

SETUP = "finetune.json"
SCENE_CACHE_BYTES = 1 << 30  # decoded frames kept between epochs (decoding is most of a tiny model's step)


class SceneCache:
    """Scenes by question index, the least recently used dropped once their frames pass ``budget`` bytes."""

    def __init__(self, budget: int):
        self.budget, self.used, self.scenes = budget, 0, OrderedDict()

    def get(self, key: int):
        scene = self.scenes.get(key)
        if scene is not None:
            self.scenes.move_to_end(key)
        return scene

    def put(self, key: int, scene) -> None:
        size = sum(frame.nbytes for frame in scene.frames)
        if size > self.budget:
            return
        self.scenes[key] = scene
        self.used += size
        while self.used > self.budget:
            _, dropped = self.scenes.popitem(last=False)
            self.used -= sum(frame.nbytes for frame in dropped.frames)


def finetune(dataset: str, annotations: Path, data_root: Path, settings: AnswerConfig, train: FinetuneConfig,
             out: Path, seed: int = 0, seeds: int = 1, tasks: tuple[str, ...] = (), limit: int | None = None,
             split: str = "train", progress: ProgressHook = quiet) -> dict[str, Any]:
    """Train ``seeds`` adapters (seeds ``seed``, ``seed + 1``, ...) on the chosen questions; resume
    whatever an interrupted run on ``out`` left; return the summary that ``OUT/finetune.json`` holds."""
    from socialpipe.stages.answer import Example, Finetuner

    loaded = load_dataset(dataset, annotations, split)
    items = [item for item in loaded.items if not tasks or item.task in tasks][:limit]
    if not items:
        raise InputError(f"--dataset {dataset} ({split} split{', tasks ' + ', '.join(tasks) if tasks else ''}): no "
                         "readable questions to train on; expected a split with questions")
    setup = {"dataset": dataset, "split": split, "annotations": str(annotations), "data_root": str(data_root),
             "answer": asdict(settings), "finetune": asdict(train), "tasks": list(tasks), "limit": limit,
             "seed": seed, "seeds": seeds, "questions": [item.item_id for item in items]}
    setup["answer"]["layer_range"] = list(settings.layer_range)
    trainers = [Finetuner(settings, train, seed + k, progress) for k in range(seeds)]  # settings checked first
    left_out: dict[str, str] = {}
    cache = SceneCache(SCENE_CACHE_BYTES)

    def example(i: int) -> Example | None:
        item = items[i]
        scene = cache.get(i)
        if scene is None:
            try:
                scene = scene_for(item, data_root, settings.num_frames)
            except InputError as exc:
                if item.item_id not in left_out:
                    left_out[item.item_id] = str(exc)
                    progress(ProgressEvent("finetune", message=f"left out {item.item_id}: {exc}"))
                return None
            cache.put(i, scene)
        return Example(scene, item.question, tuple(item.options), item.answer_index)

    if not any(example(i) is not None for i in range(len(items))):  # stops at the first readable one
        some, why = next(iter(left_out.items()))
        raise InputError(f"--dataset {dataset} ({split} split): none of the {len(items)} questions could be read, so "
                         f"there is nothing to train on (e.g. {some}: {why}); expected their frames under --data-root")
    claim_folder(out, SETUP, setup, "fine-tuning")
    results = []
    for trainer in trainers:
        folder = out if seeds == 1 else out / f"seed-{trainer.seed}"
        results.append(trainer.run(example, len(items), folder))
    summary = {**setup, "results": results, "left_out": left_out, "rejected_rows": len(loaded.rejected)}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
