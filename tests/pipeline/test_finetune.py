"""``socialpipe finetune`` on tiny models of each family, on a fixture set of 8 MMSI-style questions:
the loss falls and accuracy rises with and without alignment, one question can be learnt by heart
in every variant, an interrupted run resumes to the same adapter, and adapters work at run and eval."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from socialpipe.pipeline.contracts.config import AnswerConfig, FinetuneConfig
from socialpipe.pipeline.evaluation.finetuning import finetune
from tests.conftest import GROUND_TRUTH_ARGS, SAMPLE_VIDEO
from tests.pipeline.test_evaluation import MMSI_LINES, make_mmsi_root
from tests.tiny_models import internvl, llava_next_video, qwen2_5_vl

BUILDERS = {"qwen2_5_vl": qwen2_5_vl, "llava_next_video": llava_next_video, "internvl": internvl}
HEAD_STD = 0.3  # an output head that can express a confident answer (see tests/tiny_models.py)
FAST = ["--set", "answer.num_frames=4", "--set", "finetune.learning_rate=3e-3"]


@pytest.fixture(scope="module")
def mmsi_train(tmp_path_factory) -> Path:
    """Three rounds of four players (9 questions; the tests take 8): the same conversation with the
    players renumbered, each round filmed in its own colour, all in the train split."""
    root = make_mmsi_root(tmp_path_factory.mktemp("data") / "mmsi")
    names = []
    for r, colour in ((1, "red"), (2, "green"), (3, "blue")):
        order = [(r + k) % 4 for k in range(4)]

        def renumber(text: str) -> str:
            for k in range(4):
                text = text.replace(f"Player{k}", f"P#{order[k]}")
            return text.replace("P#", "Player")

        name = f"g1_r{r}"
        (root / "txt" / f"{name}.txt").write_text("\n".join(renumber(a) for a, _ in MMSI_LINES) + "\n")
        (root / "txt_labeled" / f"{name}.txt").write_text("\n".join(renumber(b) for _, b in MMSI_LINES) + "\n")
        if r != 1:
            shutil.copy(root / "keypoints" / "g1_r1.json", root / "keypoints" / f"{name}.json")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=10",
                        "-f", "lavfi", "-i", f"color=c={colour}:size=640x360:rate=10", "-filter_complex",
                        "[0][1]blend=all_expr='A*0.3+B*0.7'", "-t", "6", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                        str(root / "videos" / f"{name}.mp4")], check=True)
        names.append(name)
    meta = {f"r{r}": {"playerNames": ["Ann", "Ben", "Cat", "Dan"]} for r in (1, 2, 3)}
    (root / "meta" / "g1.json").write_text(json.dumps(meta))
    (root / "split.json").write_text(json.dumps({"train": names, "test": names}))
    return root


@pytest.fixture(scope="module", params=list(BUILDERS))
def family_model(request, tmp_path_factory) -> Path:
    return BUILDERS[request.param](tmp_path_factory.mktemp("models") / request.param, head_std=HEAD_STD)


@pytest.fixture(scope="module")
def qwen_model(tmp_path_factory) -> Path:
    return qwen2_5_vl(tmp_path_factory.mktemp("models") / "qwen", head_std=HEAD_STD)


def _accuracy(socialpipe, root: Path, model: Path, variant: str, out: Path, *extra) -> int:
    result = socialpipe("eval", "--dataset", "mmsi", "--data-root", root, "--split", "train", "--limit", "8",
                        "--model", model, "--variant", variant, "--out", out, "--set", "answer.num_frames=4",
                        "--json", *extra)
    assert result.code == 0, result
    tasks = json.loads(result.out)["tasks"]
    assert sum(row["failed"] for row in tasks.values()) == 0
    return sum(row["correct"] for row in tasks.values())


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss_and_beats_the_untrained_model(socialpipe, mmsi_train, family_model, tmp_path):
    """30 steps of 4 questions on 8, with the alignment and without: the loss falls, and the adapter
    answers more of the 8 right than the untrained model does."""
    for variant in ("none", "align"):
        out = tmp_path / f"ft-{variant}"
        result = socialpipe("finetune", "--dataset", "mmsi", "--data-root", mmsi_train, "--limit", "8", "--model",
                            family_model, "--variant", variant, "--out", out, *FAST, "--set",
                            "finetune.max_steps=30", "--json")
        assert result.code == 0, result
        summary = json.loads(result.out)
        assert summary["results"][0]["steps"] == 30 and summary["results"][0]["questions"] == 8
        losses = [row["loss"] for row in _log(out)]
        assert len(losses) == 30
        assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses
        assert sorted({i for row in _log(out) for i in row["questions"]}) == list(range(8))
        before = _accuracy(socialpipe, mmsi_train, family_model, variant, tmp_path / f"before-{variant}")
        after = _accuracy(socialpipe, mmsi_train, family_model, variant, tmp_path / f"after-{variant}",
                          "--adapter", out / "adapter")
        assert after > before, (variant, before, after)
        saved = json.loads((out / "adapter" / "adapter_config.json").read_text())
        assert saved["r"] == 128 and saved["peft_type"] == "LORA"
        assert not any(name.endswith((".bin", ".pt")) for name in map(str, (out / "adapter").iterdir()))


@pytest.mark.parametrize("variant", ["none", "box", "visual", "align"])
def test_one_question_is_learnt_by_heart_in_every_variant(mmsi_train, qwen_model, tmp_path, variant):
    from socialpipe.pipeline.evaluation.datasets import load_dataset
    from socialpipe.pipeline.evaluation.tasks import scene_for
    from socialpipe.stages.answer.stage import AnswerStage

    settings = AnswerConfig(model=str(qwen_model), num_frames=4, variant=variant)
    train = FinetuneConfig(learning_rate=1e-3, batch_size=1, max_steps=20, lora_dropout=0.0)
    summary = finetune("mmsi", mmsi_train, mmsi_train, settings, train, tmp_path / "ft", limit=1)
    losses = [row["loss"] for row in _log(tmp_path / "ft")]
    assert losses[-1] < 0.05 < losses[0], losses
    item = load_dataset("mmsi", mmsi_train, "train").items[0]
    trained = AnswerStage(AnswerConfig(model=str(qwen_model), num_frames=4, variant=variant,
                                       adapter=summary["results"][0]["adapter"]))
    answer = trained.answer(scene_for(item, mmsi_train, 4), item.question, item.options)
    assert answer.chosen_option == item.answer_index
    assert answer.option_scores[item.answer_index] > -0.05  # the gold option's tokens almost certain


class _Stop(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_adapter(mmsi_train, qwen_model, tmp_path):
    """Killed after step 5 (checkpoints every 2 steps), started again: it resumes at step 4, redoes 5
    and 6 on the same questions, and ends with the very adapter of an uninterrupted run."""
    settings = AnswerConfig(model=str(qwen_model), num_frames=4)
    train = FinetuneConfig(learning_rate=3e-3, batch_size=2, max_steps=6, checkpoint_every=2)  # dropout on
    whole = finetune("mmsi", mmsi_train, mmsi_train, settings, train, tmp_path / "whole", seed=3, limit=8)

    def stop_at_step_5(event):
        if event.done == 5:
            raise _Stop

    with pytest.raises(_Stop):
        finetune("mmsi", mmsi_train, mmsi_train, settings, train, tmp_path / "cut", seed=3, limit=8,
                 progress=stop_at_step_5)
    assert [row["step"] for row in _log(tmp_path / "cut")] == [1, 2, 3, 4, 5]
    resumed = finetune("mmsi", mmsi_train, mmsi_train, settings, train, tmp_path / "cut", seed=3, limit=8)
    assert resumed["results"][0]["resumed_at_step"] == 4 and whole["results"][0]["resumed_at_step"] == 0
    assert [row["step"] for row in _log(tmp_path / "cut")] == [1, 2, 3, 4, 5, 6]
    assert [row["questions"] for row in _log(tmp_path / "cut")] == [row["questions"] for row in _log(tmp_path / "whole")]
    a, b = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"), \
        load_file(tmp_path / "cut" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other_seed = finetune("mmsi", mmsi_train, mmsi_train, settings, train, tmp_path / "seed4", seed=4, limit=8)
    c = load_file(Path(other_seed["results"][0]["adapter"]) / "adapter_model.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # another seed, another order and dropout


def test_seeds_train_one_adapter_each_and_settings_are_kept(socialpipe, mmsi_train, qwen_model, tmp_path):
    out = tmp_path / "ft"
    common = ["finetune", "--dataset", "mmsi", "--data-root", mmsi_train, "--limit", "2", "--model", qwen_model,
              "--out", out, "--set", "answer.num_frames=2", "--set", "finetune.max_steps=1", "--seeds", "2",
              "--seed", "7"]
    result = socialpipe(*common)
    assert result.code == 0, result
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed-7", "seed-8"]
    assert all((out / f"seed-{s}" / "adapter" / "adapter_model.safetensors").is_file() for s in (7, 8))
    assert "seed 7: 1 steps on 2 questions" in result.out and "seed 8:" in result.out
    again = socialpipe(*common)  # done: resumes at the end, trains nothing
    assert again.code == 0 and "[finetune] seed 7 step" not in again.err
    other = socialpipe(*common[:-2], "--seed", "1")
    assert other.code == 2 and "holds a fine-tuning with other settings" in other.err


def test_adapters_apply_at_run_time(socialpipe, mmsi_train, qwen_model, sample_gt_run, tmp_path):
    summary = finetune("mmsi", mmsi_train, mmsi_train, AnswerConfig(model=str(qwen_model), num_frames=4),
                       FinetuneConfig(learning_rate=3e-3, max_steps=3), tmp_path / "ft", limit=4)
    adapter = summary["results"][0]["adapter"]
    scores = {}
    for name, extra in (("plain", []), ("adapted", ["--adapter", adapter])):
        out = tmp_path / name
        shutil.copytree(sample_gt_run, out)
        result = socialpipe("run", SAMPLE_VIDEO, "--out", out, *GROUND_TRUTH_ARGS, "--model", qwen_model,
                            "--question", "Who speaks first?", "--option", "Alice", "--option", "Bob", *extra)
        assert result.code == 0, result
        answer = json.loads((out / "answer.json").read_text())
        scores[name] = answer["option_scores"]
        recorded = yaml.safe_load((out / "config.yaml").read_text())["answer"]["adapter"]
        assert recorded == (adapter if name == "adapted" else None)
    assert scores["plain"] != scores["adapted"]


@pytest.mark.parametrize("make, message", [
    (lambda folder: None, "no such folder; expected the adapter folder that socialpipe finetune wrote"),
    (lambda folder: folder.mkdir(), "has no adapter_config.json"),
    (lambda folder: (folder.mkdir(), (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}'),
                     (folder / "adapter_model.bin").write_bytes(b"\x80\x04")),
     r"has no adapter_model.safetensors \(pickled .bin adapters are never loaded"),
    (lambda folder: (folder.mkdir(), (folder / "adapter_config.json").write_text('{"peft_type": "IA3"}'),
                     (folder / "adapter_model.safetensors").write_bytes(b"")), "not a LoRA adapter"),
])
def test_bad_adapters_are_one_line_errors(socialpipe, qwen_model, sample_gt_run, tmp_path, make, message):
    import re

    folder = tmp_path / "adapter"
    make(folder)
    out = tmp_path / "run"
    shutil.copytree(sample_gt_run, out)
    before = sorted(p.name for p in out.iterdir())
    result = socialpipe("run", SAMPLE_VIDEO, "--out", out, *GROUND_TRUTH_ARGS, "--model", qwen_model,
                        "--question", "Who?", "--adapter", folder)
    assert result.code == 2 and re.search(message, result.err), result
    assert len(result.err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before


def test_finetune_refuses_a_set_adapter_and_empty_question_sets(socialpipe, mmsi_train, qwen_model, tmp_path):
    adapter = tmp_path / "a"
    adapter.mkdir()
    result = socialpipe("finetune", "--dataset", "mmsi", "--data-root", mmsi_train, "--model", qwen_model,
                        "--out", tmp_path / "ft", "--set", f"answer.adapter={adapter}")
    assert result.code == 2 and "finetune trains a new adapter on the base model" in result.err
    result = socialpipe("finetune", "--dataset", "mmsi", "--data-root", mmsi_train, "--model", qwen_model,
                        "--out", tmp_path / "ft2", "--task", "videoqa")
    assert result.code == 2 and "no readable questions to train on" in result.err


def test_finetune_with_every_question_left_out_is_an_error_and_trains_nothing(socialpipe, mmsi_train, qwen_model,
                                                                              tmp_path):
    """The questions parse but none of their videos can be read: no adapter trained on nothing (loss 0.0)."""
    import shutil

    root = tmp_path / "mmsi"
    shutil.copytree(mmsi_train, root)
    shutil.rmtree(root / "videos")
    out = tmp_path / "ft"
    result = socialpipe("finetune", "--dataset", "mmsi", "--data-root", root, "--limit", "2", "--model", qwen_model,
                        "--out", out)
    assert result.code == 2 and "none of the 2 questions could be read" in result.err, result
    assert not out.exists()
