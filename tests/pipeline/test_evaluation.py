"""TVQA+ annotations read exactly, and evaluation end to end on tiny models with generated frames."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from socialpipe.pipeline.evaluation.datasets import load_dataset, load_tvqa_plus, tvqa_frame_path, tvqa_subtitles_path
from socialpipe.pipeline.contracts.errors import InputError
from tests.conftest import DEV_DATA, make_video
from tests.tiny_models import internvl, llava_next_video, qwen2_5_vl

TVQA_VAL = DEV_DATA / "tvqa_plus_val.json"
needs_tvqa = pytest.mark.skipif(not TVQA_VAL.is_file(), reason=f"{TVQA_VAL} is not here (SOCIALPIPE_DEV_DATA)")


@needs_tvqa
def test_every_tvqa_plus_validation_question_parses():
    loaded = load_tvqa_plus(TVQA_VAL)
    assert len(loaded.items) == 3017 and loaded.rejected == []
    assert {item.task for item in loaded.items} == {"videoqa"}
    first = loaded.items[0]
    assert first.item_id == "133290" and first.answer_index == 3 and len(first.options) == 5
    assert first.window_s == (0.0, 5.4) and first.boxes.label[first.boxes.frame_index == 1][0] == "Raj"
    assert all(0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360 for item in loaded.items
               for x1, y1, x2, y2 in item.boxes.xyxy)


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


def test_unknown_datasets_and_missing_roots_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="expected an MMSI data root"):
        load_dataset("mmsi", tmp_path)
    with pytest.raises(InputError, match="expected an OnlineMMSI data root"):
        load_dataset("onlinemmsi", tmp_path)
    with pytest.raises(InputError, match="unknown"):
        load_dataset("kinetics", tmp_path)
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


def tvqa_eval(tmp_path: Path) -> tuple[Path, list]:
    """(results folder, the eval command) for three TVQA+ questions on a tiny Qwen2.5-VL."""
    out = tmp_path / "eval"
    return out, ["eval", "--dataset", "tvqa+", "--data-root", make_tvqa_root(tmp_path / "tvqa"), "--model",
                 qwen2_5_vl(tmp_path / "model"), "--out", out, "--set", "answer.num_frames=4"]


@needs_tvqa
def test_eval_resumes_and_refuses_other_settings(socialpipe, tmp_path):
    out, common = tvqa_eval(tmp_path)
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
def test_eval_resume_drops_only_unreadable_lines_and_refuses_foreign_folders(socialpipe, tmp_path):
    out, common = tvqa_eval(tmp_path)
    assert socialpipe(*common).code == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    (out / "results.jsonl").write_text("\n".join([lines[0], '{"broken', '{"no_item_id": 1}', lines[2]]) + "\n")
    again = socialpipe(*common)
    assert again.code == 0 and again.err.count("[eval]") == 1, again  # only the item of the broken line
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    (out / "eval.json").write_text("{corrupt")
    assert "unreadable evaluation settings" in socialpipe(*common).err
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_text("x")
    refused = socialpipe(*[foreign if part == out else part for part in common])
    assert refused.code == 2 and "non-empty folder that holds no evaluation" in refused.err
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


@pytest.mark.parametrize("dataset, make, message", [
    ("tvqa+", lambda root: _write_json(root / "tvqa_plus_val.json", [{**TVQA_ROW, "bbox": [1, 2]}]), None),
    ("tvqa+", lambda root: _write_json(root / "tvqa_plus_val.json", [{**TVQA_ROW, "bbox": None}]), None),
    ("mmsi", lambda root: _write_json(root / "split.json", {"test": 5}), r"split.json: expected .* with a 'test' list"),
    ("mmsi", lambda root: root.rmdir() or root.write_text("x") or root, r"is a file; expected an MMSI data root"),
    ("onlinemmsi", lambda root: _onlinemmsi_latin1(root), None),
])
def test_malformed_datasets_are_reported_not_crashes(socialpipe, tmp_path, dataset, make, message):
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    model = qwen2_5_vl(tmp_path / "model")
    result = socialpipe("eval", "--dataset", dataset, "--data-root", root, "--model", model, "--out", tmp_path / "out")
    assert "Traceback" not in result.err
    if message:
        assert result.code == 2 and re.search(message, result.err), result
    else:  # every row rejected with its reason, none answered
        assert result.code == 0, result
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["rejected_rows"] == 1 and summary["tasks"] == {}
        assert summary["rejections"][0]["reason"] in ("bbox is list; expected {frame: [boxes]}",
                                                      "bbox is NoneType; expected {frame: [boxes]}", "not UTF-8 text")


TVQA_ROW = {"qid": 1, "q": "Why?", **{f"a{i}": f"option {i}" for i in range(5)}, "answer_idx": 0, "ts": [0, 2],
            "vid_name": "s01e01_seg01_clip_00"}


def _write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path.parent


def _onlinemmsi_latin1(root: Path) -> Path:
    (root / "STI" / "test").mkdir(parents=True)
    (root / "STI" / "test" / "metadata.csv").write_bytes("video_name,user,assistant\nclip,caf\xe9,Player1\n"
                                                         .encode("latin-1"))
    return root


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


MMSI_LINES = [
    ("[Player0] (00:01): Hello everyone, I am the seer.", "[Player0] (00:01): Hello everyone, I am the seer."),
    ("[Player1] (00:02): Do you trust me?", "[Player1] (00:02): Do you trust me? [Player2]"),
    ("[Player2] (00:03): I think he is lying.", "[Player2] (00:03): I think Player0 is lying."),
    ("[Player3] (00:04): [Player1] is the werewolf.", "[Player3] (00:04): [Player1] is the werewolf."),
    ("Moderator (00:05): Time to vote.", "Moderator (00:05): Time to vote."),
]


def make_mmsi_root(root: Path, bad_round: bool = False) -> Path:
    """One round of four players in MMSI's layout, with keypoints and a generated video."""
    for folder in ("txt", "txt_labeled", "meta", "keypoints", "videos"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = ["g1_r1"] + (["g1_r2"] if bad_round else [])
    (root / "split.json").write_text(json.dumps({"train": [], "test": names}))
    (root / "meta" / "g1.json").write_text(json.dumps({"r1": {"playerNames": ["Ann", "Ben", "Cat", "Dan"]},
                                                       "r2": {"playerNames": ["Ann", "Ben"]}}))
    (root / "txt" / "g1_r1.txt").write_text("\n".join(line for line, _ in MMSI_LINES) + "\n")
    (root / "txt_labeled" / "g1_r1.txt").write_text("\n".join(label for _, label in MMSI_LINES) + "\n")
    (root / "txt" / "g1_r2.txt").write_text("no timestamp here\n")
    (root / "txt_labeled" / "g1_r2.txt").write_text("no timestamp here\n")
    steps = [[{"idx": k, "keypoints": [v for j in range(17) for v in (60 + 140 * k + 3 * j, 80 + 10 * j, 0.9)]}
              for k in range(4)] for _ in range(30)]
    (root / "keypoints" / "g1_r1.json").write_text(json.dumps(steps))
    make_video(root / "videos" / "g1_r1.mp4", seconds=6.0, size="640x360", fps=10, audio=False)
    return root


def test_mmsi_questions_follow_the_labelled_transcript(tmp_path):
    loaded = load_dataset("mmsi", make_mmsi_root(tmp_path / "mmsi", bad_round=True))
    by_task = {item.task: item for item in loaded.items}
    assert sorted(by_task) == ["mpp", "pcr", "sti"] and len(loaded.items) == 3
    assert by_task["sti"].answer_index == 2 and "Do you trust me?" in by_task["sti"].question
    assert by_task["pcr"].answer_index == 0 and "I think [MASK] is lying." in by_task["pcr"].question
    assert by_task["mpp"].answer_index == 1 and "[MASK] is the werewolf." in by_task["mpp"].question
    assert by_task["sti"].options == ("Player0", "Player1", "Player2", "Player3")
    assert ("Player2", 3.0, "I think [MASK] is lying.") in by_task["pcr"].context
    assert loaded.rejected == [{"row": "g1_r2", "id": "g1_r2",
                                "reason": "line 1 'no timestamp here' is not '[PlayerK] (MM:SS): text'"}]


def test_mmsi_scene_boxes_come_from_keypoint_extents(tmp_path):
    from socialpipe.pipeline.evaluation.tasks import scene_for

    root = make_mmsi_root(tmp_path / "mmsi")
    item = next(i for i in load_dataset("mmsi", root).items if i.task == "pcr")
    scene = scene_for(item, root, 4)
    assert len(scene.frames) == 4 and all(1.0 <= t <= 5.0 for t in scene.times_s)
    assert scene.boxes.box_of("Player1", 0).tolist() == [200.0, 80.0, 248.0, 240.0]
    assert scene.line_speakers[0] == "Player0" and "[MASK]" in scene.lines[2]


class _Payload:
    """Unpickling this object creates a file: the proof that a loader ran code from its input."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_keypoints_are_refused_and_never_run(tmp_path):
    from socialpipe.pipeline.evaluation.datasets import load_keypoints
    from socialpipe.pipeline.evaluation.tasks import scene_for

    root = make_mmsi_root(tmp_path / "mmsi")
    (root / "keypoints" / "g1_r1.json").unlink()
    marker = tmp_path / "ran.txt"
    crafted = np.empty(1, dtype=object)
    crafted[0] = _Payload(marker)
    np.save(root / "keypoints" / "g1_r1.npy", crafted, allow_pickle=True)
    item = next(i for i in load_dataset("mmsi", root).items if i.task == "pcr")
    with pytest.raises(InputError, match=r"g1_r1.npy: holds pickled Python objects.*never loads.*g1_r1.json: "
                                         r"python -c"):
        scene_for(item, root, 4)
    assert not marker.exists()
    (root / "keypoints" / "g1_r1.json").write_text('[[{"idx": "one", "keypoints": [1, 2]}]]')
    with pytest.raises(InputError, match=r"g1_r1.json: step 0 holds .*expected"):
        load_keypoints(root / "keypoints" / "g1_r1.npy")


def make_onlinemmsi_root(root: Path) -> Path:
    folder = root / "STI" / "test"
    folder.mkdir(parents=True)
    make_video(folder / "clip1.mp4", seconds=3.0, size="320x180", fps=10, audio=False)
    with open(folder / "metadata.csv", "w", newline="") as handle:
        import csv

        writer = csv.writer(handle)
        writer.writerow(["video_name", "user", "assistant"])
        writer.writerow(["clip1", "Player0: I am the seer. Player2: Are you sure? Whom is Player2 speaking to?",
                         "Player0 is the target."])
        writer.writerow(["clip2", "Player1: hello", "Nobody."])
    return root


def test_onlinemmsi_rows_and_rejections(tmp_path):
    loaded = load_dataset("onlinemmsi", make_onlinemmsi_root(tmp_path / "online"))
    (item,) = loaded.items
    assert item.task == "sti" and item.options == ("Player0", "Player2") and item.answer_index == 0
    assert item.video == "STI/test/clip1.mp4"
    assert loaded.rejected[0]["id"] == "clip2" and "does not begin with the gold PlayerN" in loaded.rejected[0]["reason"]


@pytest.mark.parametrize("dataset, make", [("mmsi", make_mmsi_root), ("onlinemmsi", make_onlinemmsi_root)])
def test_eval_runs_on_mmsi_style_fixtures(socialpipe, tmp_path, dataset, make):
    root = make(tmp_path / dataset)
    result = socialpipe("eval", "--dataset", dataset, "--data-root", root, "--model", qwen2_5_vl(tmp_path / "m"),
                        "--out", tmp_path / "eval", "--set", "answer.num_frames=4", "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    expected = {"sti", "pcr", "mpp"} if dataset == "mmsi" else {"sti"}
    assert set(summary["tasks"]) == expected and all(row["failed"] == 0 for row in summary["tasks"].values())
    assert summary["rejected_rows"] == (1 if dataset == "onlinemmsi" else 0)


def test_dataset_names_that_would_leave_the_data_root_are_rejected_rows(tmp_path):
    """OnlineMMSI's video_name, TVQA+'s vid_name and MMSI's round names are joined to the data root: a name
    with a path in it (``../../etc/x``) is a rejected row with its reason, never a path outside the root."""
    root = make_onlinemmsi_root(tmp_path / "online")
    with open(root / "STI" / "test" / "metadata.csv", "a", newline="") as handle:
        handle.write("../../../../etc/passwd,Player0: hi. Whom is Player0 speaking to?,Player0 is\n")
    loaded = load_dataset("onlinemmsi", root)
    assert [item.clip for item in loaded.items] == ["clip1"]
    assert any("is not a plain name" in row["reason"] and row["id"] == "../../../../etc/passwd"
               for row in loaded.rejected), loaded.rejected
    row = {**TVQA_ROW, "bbox": {}}
    tvqa = load_tvqa_plus(_write_json(tmp_path / "tvqa.json", [row, {**row, "qid": 2, "vid_name": "../x"}])
                          / "tvqa.json")
    assert [item.item_id for item in tvqa.items] == ["1"] and "is not a plain name" in tvqa.rejected[0]["reason"]
    mmsi = make_mmsi_root(tmp_path / "mmsi")
    (mmsi / "split.json").write_text(json.dumps({"train": [], "test": ["g1_r1", "../../g1_r1"]}))
    loaded = load_dataset("mmsi", mmsi)
    assert loaded.items and [row["id"] for row in loaded.rejected] == ["../../g1_r1"]


def test_a_tvqa_frame_number_too_large_for_the_arrays_is_a_rejected_row(tmp_path):
    boxes = [{"left": 1, "top": 1, "width": 5, "height": 5, "label": "Sheldon"}]
    rows = [{**TVQA_ROW, "bbox": {}}, {**TVQA_ROW, "qid": 2, "bbox": {"99999999999999999999": boxes}}]
    loaded = load_tvqa_plus(_write_json(tmp_path / "tvqa.json", rows) / "tvqa.json")
    assert [item.item_id for item in loaded.items] == ["1"] and loaded.rejected[0]["id"] == 2
    assert "too large" in loaded.rejected[0]["reason"]
