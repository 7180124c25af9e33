"""TVQA+ annotations read exactly, and evaluation end to end on tiny models with generated frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.datasets import load_dataset, load_tvqa_plus, tvqa_frame_path, tvqa_subtitles_path
from pipeline.errors import InputError
from tests.conftest import REPO
from tests.tiny_models import internvl, llava_next_video, qwen2_5_vl

TVQA_VAL = REPO.parent / "shared" / "data" / "tvqa_plus_val.json"
needs_tvqa = pytest.mark.skipif(not TVQA_VAL.is_file(), reason="../shared/data/tvqa_plus_val.json is not here")


@needs_tvqa
def test_every_tvqa_plus_validation_question_parses():
    loaded = load_tvqa_plus(TVQA_VAL)
    assert len(loaded.items) == 3017 and loaded.rejected == []
    assert {item.task for item in loaded.items} == {"videoqa"}
    first = loaded.items[0]
    assert first.item_id == "133290" and first.answer_index == 3 and len(first.options) == 5
    assert first.window_s == (0.0, 5.4) and first.boxes[1][0][0] == "Raj"
    assert all(0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360 for item in loaded.items
               for boxes in item.boxes.values() for _, (x1, y1, x2, y2) in boxes)


def test_unreadable_rows_are_counted_with_their_reason(tmp_path):
    good = {"qid": 1, "q": "Who?", "a0": "A", "a1": "B", "a2": "C", "a3": "D", "a4": "E", "answer_idx": "2",
            "ts": [1.0, 3.0], "vid_name": "s01e01_seg01_clip_00", "bbox": {}}
    rows = [good, {**good, "qid": 2, "answer_idx": "7"}, {k: v for k, v in good.items() if k != "q"},
            {**good, "qid": 4, "ts": [5.0, 1.0]}, {**good, "qid": 5, "a3": " "}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    loaded = load_tvqa_plus(tmp_path / "a.json")
    assert [item.item_id for item in loaded.items] == ["1"]
    reasons = [r["reason"] for r in loaded.rejected]
    assert reasons == ["answer_idx 7 is not 0-4", "missing field 'q'",
                       "ts [5.0, 1.0] is not a window [start, end] with 0 <= start <= end", "an empty answer option"]


def test_unknown_or_unbuilt_datasets_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="loader is not built yet"):
        load_dataset("mmsi", tmp_path / "x.json")
    with pytest.raises(InputError, match="no such file"):
        load_tvqa_plus(tmp_path / "missing.json")


def make_tvqa_root(root: Path, count: int = 3) -> Path:
    """A TVQA+ data root for the first ``count`` real validation questions: generated 3 fps frames with a
    bright block where each character's box is, and subtitles naming the characters."""
    rows = json.loads(TVQA_VAL.read_text())[:count]
    (root / "tvqa_subtitles").mkdir(parents=True, exist_ok=True)
    for row in rows:
        start, end = row["ts"]
        names = sorted({b["label"] for boxes in row["bbox"].values() for b in boxes})[:3] or ["Sheldon"]
        for n in range(int(start * 3) + 1, int(end * 3) + 2):
            frame = np.full((360, 640, 3), 60, np.uint8)
            for boxes in row["bbox"].values():
                for b in boxes[:2]:
                    frame[b["top"]:b["top"] + b["height"], b["left"]:b["left"] + b["width"]] = 200
            path = tvqa_frame_path(root, row["vid_name"], n)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), frame)
        cues = [f"{i + 1}\n00:00:{int(start) + i:02d},000 --> 00:00:{int(start) + i:02d},900\n({name}:) Line {i}.\n"
                for i, name in enumerate(names)]
        cues.append(f"{len(names) + 1}\n00:00:{int(start):02d},500 --> 00:00:{int(start):02d},800\nno name here\n")
        tvqa_subtitles_path(root, row["vid_name"]).write_text("\n".join(cues))
    (root / "tvqa_plus_val.json").write_text(json.dumps(rows))
    return root


@needs_tvqa
@pytest.mark.parametrize("build", [qwen2_5_vl, llava_next_video, internvl],
                         ids=["qwen2_5_vl", "llava_next_video", "internvl"])
def test_eval_runs_every_variant_for_each_family(socialpipe, build, tmp_path):
    root = make_tvqa_root(tmp_path / "tvqa")
    model = build(tmp_path / "model")
    for variant in ("none", "box", "visual", "align"):
        out = tmp_path / f"eval-{variant}"
        result = socialpipe("eval", "--dataset", "tvqa+", "--data-root", root, "--model", model, "--variant", variant,
                            "--out", out, "--set", "answer.num_frames=4", "--json")
        assert result.code == 0, result
        summary = json.loads(result.out)
        assert summary["tasks"]["videoqa"]["items"] == 3 and summary["tasks"]["videoqa"]["failed"] == 0
        assert 0.0 <= summary["tasks"]["videoqa"]["accuracy"] <= 1.0
        assert ("attn_max_after" in summary["diagnostics"]) == (variant == "align")
        results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert [r["correct"] == (r["chosen"] == r["answer_index"]) for r in results] == [True] * 3


@needs_tvqa
def test_eval_resumes_and_refuses_other_settings(socialpipe, tmp_path):
    root = make_tvqa_root(tmp_path / "tvqa")
    model = qwen2_5_vl(tmp_path / "model")
    out = tmp_path / "eval"
    common = ["eval", "--dataset", "tvqa+", "--data-root", root, "--model", model, "--out", out,
              "--set", "answer.num_frames=4"]
    first = socialpipe(*common, "--limit", "2")
    assert first.code == 0 and first.err.count("[eval]") == 2
    with open(out / "results.jsonl", "a") as handle:
        handle.write('{"item_id": "half-writ')  # an interrupted write
    second = socialpipe(*common)
    assert second.code == 0 and second.err.count("[eval]") == 1, second  # only the third question is new
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    other = socialpipe(*common, "--variant", "none")
    assert other.code == 2 and "holds an evaluation with other settings" in other.err


@needs_tvqa
def test_a_question_without_frames_is_reported_not_dropped(socialpipe, tmp_path):
    root = make_tvqa_root(tmp_path / "tvqa", count=2)
    rows = json.loads((root / "tvqa_plus_val.json").read_text())
    rows.append({**rows[0], "qid": 999, "vid_name": "s09e09_seg01_clip_99"})
    (root / "tvqa_plus_val.json").write_text(json.dumps(rows))
    result = socialpipe("eval", "--dataset", "tvqa+", "--data-root", root, "--model", qwen2_5_vl(tmp_path / "m"),
                        "--out", tmp_path / "eval", "--set", "answer.num_frames=4", "--json")
    summary = json.loads(result.out)
    assert summary["tasks"]["videoqa"] == {**summary["tasks"]["videoqa"], "items": 3, "failed": 1}
    assert summary["failed_items"][0]["item_id"] == "999" and "no frames" in summary["failed_items"][0]["error"]
