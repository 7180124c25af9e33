"""The socialpipe command end to end on the bundled sample with its ground truth, and bad input."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from socialpipe.pipeline.contracts.artifacts import Tracks, Transcript, Utterance
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.media.video import probe
from tests.conftest import (
    GROUND_TRUTH_ARGS,
    SAMPLE_LINKS,
    SAMPLE_TRACKS,
    SAMPLE_TRANSCRIPT,
    SAMPLE_VIDEO,
)

RUN_FILES = {"video.json", "people.json", "speech.json", "links.json", "asd.csv", "who_spoke_when.rttm", "transcript.vtt",
             "people.mot.csv", "speech.rttm", "speech.vtt", "config.yaml", "manifest.json", ".socialpipe.lock"}


@pytest.fixture
def run_copy(sample_gt_run, tmp_path) -> Path:
    return Path(shutil.copytree(sample_gt_run, tmp_path / "run"))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_run_with_ground_truth_writes_every_artifact(socialpipe, tmp_path):
    out = tmp_path / "run"
    result = socialpipe("run", SAMPLE_VIDEO, "--out", out, *GROUND_TRUTH_ARGS, "--until", "link")
    assert result.code == 0, result
    assert {p.name for p in out.iterdir()} == RUN_FILES
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"video", "people", "speech", "link"}
    assert manifest["stages"]["people"]["source"].startswith("ground truth")
    assert manifest["video"]["sha256"] == hashlib.sha256(SAMPLE_VIDEO.read_bytes()).hexdigest()
    assert "torch" in manifest["versions"]
    assert "[people] wrote" in result.err and "stopped after link" in result.err


def test_unchanged_stages_are_skipped_and_force_recomputes(socialpipe, run_copy):
    before = digests(run_copy)
    people_mtime = (run_copy / "people.json").stat().st_mtime_ns
    again = socialpipe("run", SAMPLE_VIDEO, "--out", run_copy, *GROUND_TRUTH_ARGS, "--until", "link")
    assert again.code == 0 and again.err.count("up to date") == 3, again
    assert (run_copy / "people.json").stat().st_mtime_ns == people_mtime and digests(run_copy) == before
    forced = socialpipe("run", SAMPLE_VIDEO, "--out", run_copy, *GROUND_TRUTH_ARGS, "--until", "link", "--force")
    assert forced.code == 0 and "up to date" not in forced.err
    assert (run_copy / "people.json").stat().st_mtime_ns != people_mtime


def test_changed_ground_truth_reruns_its_stage_and_the_ones_after(socialpipe, run_copy, tmp_path):
    transcript = Transcript.from_json(json.loads(SAMPLE_TRANSCRIPT.read_text()))
    edited = Transcript.from_utterances(transcript.utterances[:-1]).save(tmp_path / "shorter.json")
    result = socialpipe("run", SAMPLE_VIDEO, "--out", run_copy, "--tracks", SAMPLE_TRACKS, "--transcript", edited,
                        "--links", SAMPLE_LINKS, "--until", "link")
    assert result.code == 0, result
    assert "[people] up to date" in result.err
    assert "[speech] wrote" in result.err and "[link] wrote" in result.err


def test_without_a_question_the_run_stops_after_linking(socialpipe, run_copy):
    result = socialpipe("run", SAMPLE_VIDEO, "--out", run_copy, *GROUND_TRUTH_ARGS)
    assert result.code == 0 and "no --question given" in result.err and "stopped after link" in result.err
    assert not (run_copy / "answer.json").exists()


def test_default_out_folder_is_per_video(socialpipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other" / SAMPLE_VIDEO.name  # same file name, different content
    other.parent.mkdir()
    shutil.copy(SAMPLE_VIDEO, other)
    with open(other, "ab") as handle:
        handle.write(b"\0" * 16)
    assert socialpipe("run", SAMPLE_VIDEO, "--tracks", SAMPLE_TRACKS, "--until", "people").code == 0
    assert socialpipe("run", other, "--tracks", SAMPLE_TRACKS, "--until", "people").code == 0
    folders = sorted(p.name for p in (tmp_path / "socialpipe_runs").iterdir())
    assert len(folders) == 2 and all(name.startswith("conversation-") for name in folders)


def test_a_run_of_another_video_is_never_written_into(socialpipe, run_copy, tiny_video):
    before = digests(run_copy)
    result = socialpipe("run", tiny_video, "--out", run_copy, "--until", "people")
    assert result.code == 2 and "holds the run of another video" in result.err
    assert digests(run_copy) == before


def test_a_failed_stage_keeps_the_earlier_stages(socialpipe, silent_video, tmp_path):
    empty_tracks = Tracks.empty(fps=10.0).save(tmp_path / "none.json")
    out = tmp_path / "silent"
    late = Transcript.from_utterances([Utterance(0.1, 9.0, "A", "hi")]).save(tmp_path / "late.json")
    failed = socialpipe("run", silent_video, "--out", out, "--tracks", empty_tracks, "--transcript", late)
    assert failed.code == 2 and "ends at 9.00s but the video lasts" in failed.err
    assert (out / "people.json").exists() and not (out / "speech.json").exists()
    # a video without audio is refused before any stage runs, not after the people stage
    fresh = tmp_path / "fresh"
    result = socialpipe("run", silent_video, "--out", fresh, "--tracks", empty_tracks, "--until", "speech")
    assert result.code == 2 and "has no audio track; the speech stage needs one" in result.err
    assert not fresh.exists()
    with_transcript = Transcript.from_utterances([Utterance(0.1, 1.0, "A", "hi")]).save(tmp_path / "t.json")
    ok = socialpipe("run", silent_video, "--out", out, "--tracks", empty_tracks, "--transcript", with_transcript,
                    "--until", "speech")
    assert ok.code == 0, ok


def test_inspect_summarises_and_renders(socialpipe, run_copy):
    result = socialpipe("inspect", run_copy)
    assert result.code == 0, result
    assert "3 tracks" in result.out and "track 3 (Carol)" in result.out
    assert "Dana -> off screen (unlinked)" in result.out and "Alice:" in result.out and "s talking" in result.out
    preview = probe(run_copy / "preview.mp4")
    source = probe(SAMPLE_VIDEO)
    assert preview.frame_count == source.frame_count and preview.has_audio
    sheet = cv2.imread(str(run_copy / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 300 and sheet.shape[1] > 300


def test_inspect_without_rendering_and_on_a_non_run(socialpipe, run_copy, tmp_path):
    assert socialpipe("inspect", run_copy, "--no-render").code == 0
    assert not (run_copy / "preview.mp4").exists()
    result = socialpipe("inspect", tmp_path)
    assert result.code == 2 and "not a socialpipe run folder" in result.err


@pytest.mark.parametrize("stage, files, expected", [
    ("people", (SAMPLE_TRACKS, SAMPLE_TRACKS), {"idf1": 1.0, "mota": 1.0}),
    ("speech", (SAMPLE_TRANSCRIPT, SAMPLE_TRANSCRIPT), {"der": 0.0, "wer": 0.0}),
    ("link", (SAMPLE_LINKS, SAMPLE_LINKS), {"voice_accuracy": 1.0, "time_accuracy": 1.0}),
])
def test_ground_truth_scores_perfectly_against_itself(socialpipe, stage, files, expected):
    extra = ["--transcript", SAMPLE_TRANSCRIPT] if stage == "link" else []
    result = socialpipe("score", stage, "--pred", files[0], "--gt", files[1], *extra, "--json")
    assert result.code == 0, result
    scores = json.loads(result.out)
    assert {key: scores[key] for key in expected} == expected


def test_score_reads_exported_formats(socialpipe, run_copy):
    people = socialpipe("score", "people", "--pred", run_copy / "people.mot.csv", "--gt", SAMPLE_TRACKS, "--json")
    assert json.loads(people.out)["idf1"] == 1.0
    speech = socialpipe("score", "speech", "--pred", run_copy / "speech.vtt", "--gt", SAMPLE_TRANSCRIPT)
    assert speech.code == 0 and "collar +-0.25 s" in speech.out


def _write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _shifted_tracks(tmp_path: Path) -> Path:
    data = json.loads(SAMPLE_TRACKS.read_text())
    data["tracks"][0]["observations"][0]["xyxy"] = [600, 10, 700, 60]
    return _write(tmp_path, "outside.json", data)


BAD_INPUTS = [
    # (name, argv builder, expected message)
    ("missing video", lambda t, r: ["run", t / "missing.mp4", "--out", r], "missing.mp4: no such file"),
    ("not a video", lambda t, r: ["run", _write(t, "notes.mp4", "hello"), "--out", r], "not a readable video"),
    ("zero-length mp4", lambda t, r: ["run", _write(t, "zero.mp4", ""), "--out", r], r"is empty \(0 bytes\)"),
    ("truncated mp4", lambda t, r: ["run", _truncated(t), "--out", r],
     r"truncated or corrupt \(av_read_frame: invalid data found when processing input\)"),
    ("malformed json", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", _write(t, "t.json", "{oops")],
     "not valid JSON"),
    ("malformed csv", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", _write(t, "t.csv", "1,a,b\n")],
     "is not a MOT row"),
    ("malformed rttm", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS, "--transcript",
                                     _write(t, "s.rttm", "SPEAKER x 1 zero one\n")], "not an RTTM SPEAKER line"),
    ("malformed vtt", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS, "--transcript",
                                    _write(t, "s.vtt", "hello\n")], "begin with 'WEBVTT'"),
    ("boxes outside the frame", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", _shifted_tracks(t)],
     "lies outside the 640x360 frame"),
    ("negative times", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS, "--transcript",
                                     _write(t, "s.rttm", "SPEAKER x 1 -1.5 2 <NA> <NA> A <NA> <NA>\n")],
     "starts at -1.5s; expected times >= 0"),
    ("reversed times", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS, "--transcript",
                                     _write(t, "s.json", {"utterances": [
                                         {"start_s": 5, "end_s": 4, "speaker": "A", "text": "x"}]})],
     r"ends \(4.0s\) before it starts \(5.0s\)"),
    ("times past the video", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS,
                                           "--transcript", _write(t, "s.rttm", "SPEAKER x 1 50 2 <NA> <NA> A <NA> <NA>\n")],
     "ends at 52.00s but the video lasts"),
    ("links to unknown tracks", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS,
                                              "--transcript", SAMPLE_TRANSCRIPT, "--links",
                                              _write(t, "l.json", {"Alice": 9})],
     "linked to track 9, which does not exist"),
    ("out path is a file", lambda t, r: ["run", SAMPLE_VIDEO, "--out", _write(t, "file.txt", "x")],
     "is a file; expected a folder"),
    ("empty question", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, *GROUND_TRUTH_ARGS, "--question", " "],
     "--question is empty"),
    ("unknown setting", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--set", "answer.alpah=2"],
     "unknown key answer.alpah"),
    ("missing ground truth", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", t / "nope.json"],
     "--tracks .*nope.json: no such file"),
    # ground truth is never converted silently
    ("fractional track id", lambda t, r: [*_with_links(t, r, {"Alice": 2.7, "Bob": 2, "Carol": 3, "Dana": None})],
     r"track of 'Alice' is 2.7; expected an integer"),
    ("boolean track id", lambda t, r: [*_with_links(t, r, {"Alice": True, "Bob": 2, "Carol": 3, "Dana": None})],
     r"track of 'Alice' is true; expected an integer"),
    ("null speaker", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS, "--transcript",
                                   _write(t, "s.json", {"utterances": [
                                       {"start_s": 1, "end_s": 2, "speaker": None, "text": "x"}]})],
     r"utterance 0: speaker is null; expected a string"),
    ("null text", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS, "--transcript",
                                _write(t, "s.json", {"utterances": [
                                    {"start_s": 1, "end_s": 2, "speaker": "A", "text": None}]})],
     r"utterance 0: text is null; expected a string"),
    ("tracks at another frame rate", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", _retimed_tracks(t)],
     r"tracks are at 62.5 fps but the video is at 25 fps"),
    ("out below a file", lambda t, r: ["run", SAMPLE_VIDEO, "--out", _write(t, "file.txt", "x") / "run"],
     r"file.txt/run: cannot write there"),
    ("speech on cuda without cuda", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS,
                                                  "--set", "speech.device=cuda", "--until", "speech"],
     r"speech.device is cuda, but this machine has no CUDA device"),
    ("answer on cuda without cuda", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, *GROUND_TRUTH_ARGS, "--question",
                                                  "Who?", "--model", t, "--set", "answer.device=cuda"],
     r"answer.device is cuda, but this machine has no CUDA device"),
    ("faces on cuda without cuda", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--device", "cuda", "--until",
                                                 "people"],
     r"people.device is cuda, but this machine has no CUDA device"),
    ("active speaker on cuda without cuda", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS,
                                                          "--transcript", SAMPLE_TRANSCRIPT, "--set", "link.device=cuda"],
     r"link.device is cuda, but this machine has no CUDA device"),
    ("not a device", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--device", "gpu"],
     r"--device gpu: expected cpu, cuda, cuda:N or auto"),
    ("german with the english-only model", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS,
                                                         "--language", "de", "--until", "speech"],
     r"speech.language is 'de' but speech.asr_model 'bundled:tiny.en' knows English only"),
    ("more speakers at least than at most", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--min-speakers", "3",
                                                   "--max-speakers", "2"],
     r"speech.min_speakers \(3\) is above speech.max_speakers \(2\)"),
    ("inspect a run whose video moved", lambda t, r: ["inspect", _moved_video_run(t, r)],
     r"the run's video is not there \(moved or deleted\?\)"),
    ("missing active-speaker weights", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--tracks", SAMPLE_TRACKS,
                                                     "--transcript", SAMPLE_TRANSCRIPT, "--set",
                                                     f"link.asd_weights={t / 'nope.model'}"],
     r"active-speaker weights .*nope.model: no such file; expected an LR-ASD checkpoint"),
    ("a voice without a link", lambda t, r: [*_with_links(t, r, {"Alice": 1, "Bob": 2, "Carol": 3})],
     r"the transcript's voices \['Dana'\] have no link; .*or --unlisted-off-screen"),
]


def _moved_video_run(tmp_path: Path, run_dir: Path) -> Path:
    """A copy of the run folder whose video.json points at a video that is no longer there."""
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    info = json.loads((moved / "video.json").read_text())
    info["path"] = str(tmp_path / "gone.mp4")
    (moved / "video.json").write_text(json.dumps(info))
    return moved


def _with_links(tmp_path: Path, run_dir: Path, links: dict) -> list:
    return ["run", SAMPLE_VIDEO, "--out", run_dir, "--tracks", SAMPLE_TRACKS, "--transcript", SAMPLE_TRANSCRIPT,
            "--links", _write(tmp_path, "l.json", links)]


def _retimed_tracks(tmp_path: Path) -> Path:
    data = json.loads(SAMPLE_TRACKS.read_text())
    data["fps"] = 62.5
    return _write(tmp_path, "retimed.json", data)


# Every bad setting is refused when the settings are built: one line naming the key, the value and
# what is allowed, exit 2, and the run folder (its config.yaml too) unchanged.
BAD_SETTINGS = [
    (["answer.alpha=-1"], r"answer.alpha: -1.0 is outside the allowed range >= 0"),
    (["answer.alpha=.nan"], r"answer.alpha: nan is not a finite number; expected a finite float"),
    (["answer.layer_range=[0.7, 0.3]"], r"answer.layer_range: \[0.7, 0.3\] is empty; expected \[lo, hi\]"),
    (["answer.layer_range=[-0.1, 0.5]"], r"answer.layer_range: -0.1 is outside the allowed range \[0, 1\]"),
    (["answer.layer_range=[0.2]"], r"answer.layer_range: expected a list of 2 values"),
    (["answer.num_frames=0"], r"answer.num_frames: 0 is outside the allowed range >= 1"),
    (["answer.head_threshold=2"], r"answer.head_threshold: 2.0 is outside the allowed range \[0, 1\]"),
    (["answer.device=gpu"], r"answer.device: 'gpu' is not a device; expected auto, cpu, cuda or cuda:N"),
    (["answer.dtype=float8"], r"answer.dtype: 'float8' is not one of \['auto'"),
    (["answer.model=' '"], r"answer.model: empty; expected a hub id or a local checkpoint folder"),
    (["people.detect_scale=-0.5"], r"people.detect_scale: -0.5 is outside the allowed range \(0, 1\]"),
    (["people.detect_scale=1.5"], r"people.detect_scale: 1.5 is outside the allowed range \(0, 1\]"),
    (["people.detect_fps=0"], r"people.detect_fps: 0.0 is outside the allowed range > 0"),
    (["people.min_confidence=2"], r"people.min_confidence: 2.0 is outside the allowed range \[0, 1\]"),
    (["people.smooth_keyframes=0"], r"people.smooth_keyframes: 0 is outside the allowed range >= 1"),
    (["people.tracker=sort"], r"people.tracker: 'sort' is not one of \['bytetrack', 'botsort'\]"),
    (["answer.head_expand=0.5"], r"answer.head_expand: 0.5 is outside the allowed range >= 1"),
    (["speech.beam_size=0"], r"speech.beam_size: 0 is outside the allowed range >= 1"),
    (["speech.num_speakers=-2"], r"speech.num_speakers: -2 is outside the allowed range >= 1"),
    (["speech.min_speakers=3", "speech.max_speakers=2"], r"speech.min_speakers \(3\) is above speech.max_speakers"),
    (["speech.compute_type=int3"], r"speech.compute_type: 'int3' is not one of"),
    (["speech.device=gpu"], r"speech.device: 'gpu' is not a device; expected auto, cpu, cuda or cuda:N"),
    (["speech.cluster_threshold=0"], r"speech.cluster_threshold: 0.0 is outside the allowed range \(0, 2\]"),
    (["speech.activity_threshold=1"], r"speech.activity_threshold: 1.0 is outside the allowed range \(0, 1\)"),
    (["link.min_coverage=7"], r"link.min_coverage: 7.0 is outside the allowed range \[0, 1\]"),
    (["link.min_score=-0.1"], r"link.min_score: -0.1 is outside the allowed range \[0, 1\]"),
    (["link.asd_precision=half"], r"link.asd_precision: 'half' is not one of \['auto', 'float32', 'bfloat16', 'int8'\]"),
    (["link.analysis_fps=0"], r"link.analysis_fps: 0.0 is outside the allowed range > 0"),
    (["people.detect_fps=fast"], r"people.detect_fps: expected float, got 'fast'"),
    (["finetune.rank=0"], r"finetune.rank: 0 is outside the allowed range >= 1"),
    (["finetune.target=mlp"], r"finetune.target: 'mlp' is not one of \['all', 'attention'\]"),
    (["finetune.lora_dropout=1"], r"finetune.lora_dropout: 1.0 is outside the allowed range \[0, 1\)"),
    (["finetune.learning_rate=-1e-4"], r"finetune.learning_rate: -0.0001 is outside the allowed range > 0"),
]
BAD_INPUTS += [(f"setting {' '.join(overrides)}",
                lambda t, r, overrides=overrides: ["run", SAMPLE_VIDEO, "--out", r, *GROUND_TRUTH_ARGS,
                                                   *(x for o in overrides for x in ("--set", o))], message)
               for overrides, message in BAD_SETTINGS]
BAD_INPUTS += [
    ("bad value in a config file", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--config",
                                                 _write(t, "c.yaml", "link:\n  min_coverage: 7\n")],
     r"c.yaml: config link.min_coverage: 7.0 is outside the allowed range"),
    ("config file not UTF-8", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--config",
                                            _write(t, "c.yaml", b"people:\n  detector: \xff\n")],
     r"c.yaml: cannot read it as a UTF-8 YAML file"),
    ("config is a folder", lambda t, r: ["run", SAMPLE_VIDEO, "--out", r, "--config", t],
     r"cannot read it as a UTF-8 YAML file"),
]


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "cut.mp4"
    path.write_bytes(SAMPLE_VIDEO.read_bytes()[:150_000])
    return path


@pytest.mark.parametrize("name, argv, message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line_and_loses_nothing(socialpipe, run_copy, tmp_path, name, argv, message):
    before = digests(run_copy)
    result = socialpipe(*argv(tmp_path, run_copy))
    assert result.code == 2, result
    lines = result.err.strip().splitlines()  # progress lines may come first; the error is the one last line
    errors = [line for line in lines if line.startswith("socialpipe")]
    assert errors == [lines[-1]] and lines[-1].startswith("socialpipe: error: "), result
    assert "Traceback" not in result.err
    assert re.search(message, lines[-1]), lines[-1]
    assert digests(run_copy) == before, "an earlier artifact changed"


def test_first_class_options_set_every_stage_s_settings(socialpipe, tiny_video, tmp_path):
    """--device auto (the CPU here) runs the face detector; --language, the speaker counts and --device land in
    the run's settings of every stage that has them."""
    out = tmp_path / "run"
    result = socialpipe("run", tiny_video, "--out", out, "--until", "people", "--device", "auto", "--language", "auto",
                        "--num-speakers", "2", "--min-speakers", "1", "--max-speakers", "3")
    assert result.code == 0, result
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert [config[s]["device"] for s in ("people", "speech", "link", "answer")] == ["auto"] * 4
    assert config["speech"]["language"] is None and config["speech"]["num_speakers"] == 2
    assert (config["speech"]["min_speakers"], config["speech"]["max_speakers"]) == (1, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["people"]["inputs"]["settings"]["device"] == "auto"
    verbose = socialpipe("run", tiny_video, "--out", out, "--until", "people", "--device", "auto", "--force", "-v")
    assert verbose.code == 0 and re.search(r"\[people\] time: decode [\d.]+ s, .*detect [\d.]+ s", verbose.err)
    assert "[people] time" not in socialpipe("run", tiny_video, "--out", out, "--until", "people").err


def test_inspect_json_is_one_object_with_the_final_labels(socialpipe, sample_gt_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sample_gt_run, run)
    result = socialpipe("inspect", run, "--json")
    assert result.code == 0, result
    data = json.loads(result.out)
    assert {link["voice"]: link["label"] for link in data["links"]}["Dana"] == "Dana"
    assert {t["id"] for t in data["tracks"]} and not (run / "preview.mp4").exists()  # no pictures unless --render


def test_run_uses_the_people_stage_without_ground_truth(socialpipe, tiny_video, tmp_path):
    out = tmp_path / "run"
    result = socialpipe("run", tiny_video, "--out", out, "--until", "people", "--set", "people.detect_fps=2")
    assert result.code == 0, result
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["people"]["source"] == "people stage (mtcnn, bytetrack)"
    assert manifest["stages"]["people"]["inputs"]["settings"]["detect_fps"] == 2.0
    assert (out / "people.mot.csv").exists() and Tracks.from_json(json.loads((out / "people.json").read_text())).fps


def _sample_cut(tmp_path: Path, name: str, seconds: float, *extra: str) -> Path:
    """The first ``seconds`` of the bundled sample, re-encoded (``extra``: more ffmpeg output options)."""
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(SAMPLE_VIDEO), "-t", str(seconds), "-c:v", "libx264",
                    *extra, str(out)], check=True)
    return out


def test_a_one_second_video_runs_through_perception(socialpipe, tmp_path):
    video = _sample_cut(tmp_path, "one_second.mp4", 1.0, "-c:a", "aac")
    out = tmp_path / "run"
    result = socialpipe("run", video, "--out", out, "--until", "link")
    assert result.code == 0, result
    tracks = Tracks.from_json(json.loads((out / "people.json").read_text()))
    assert len(tracks.track_ids) == 3  # the sample's three faces are all on screen in its first second
    assert json.loads((out / "people.json").read_text())["meta"]["shots"] == [[0, probe(video).frame_count - 1]]
    links = json.loads((out / "links.json").read_text())
    assert set(links["speaking_scores"]) == {str(t) for t in tracks.track_ids}  # every face scored
    assert (out / "speech.json").is_file() and (out / "asd.csv").is_file()


def test_a_video_without_audio_links_a_given_transcript_by_the_visual_only_head(socialpipe, tmp_path):
    video = _sample_cut(tmp_path, "no_audio.mp4", 12.0, "-an")
    assert not probe(video).has_audio
    given = Transcript.from_utterances([u for u in Transcript.from_json(json.loads(SAMPLE_TRANSCRIPT.read_text()))
                                        .utterances if u.end_s < 12.0]).save(tmp_path / "given.json")
    out = tmp_path / "run"
    result = socialpipe("run", video, "--out", out, "--transcript", given, "--until", "link")
    assert result.code == 0, result
    links = json.loads((out / "links.json").read_text())
    assert links["meta"]["speaking"]["head"].startswith("visual only")
    assert links["speaking_scores"], "the visual-only head scored no face"
    assert {link["voice"] for link in links["links"]} == {"Alice", "Bob", "Carol"}
    tracks = Tracks.from_json(json.loads((out / "people.json").read_text()))
    truth = Tracks.from_json(json.loads(SAMPLE_TRACKS.read_text()))
    for link in links["links"]:  # each voice's face is its person's (the ground truth's track of that name)
        assert link["track_id"] is not None, link
        mine = tracks.for_track(link["track_id"])
        theirs = truth.for_track({"Alice": 1, "Bob": 2, "Carol": 3}[link["voice"]])
        frame = int(mine.frame_index[len(mine) // 2])
        box, true_box = mine.xyxy[len(mine) // 2], theirs.xyxy[list(theirs.frame_index).index(frame)]
        assert abs((box[0] + box[2]) / 2 - (true_box[0] + true_box[2]) / 2) < 60, link


def test_unlisted_voices_are_off_screen_only_when_asked(socialpipe, tmp_path):
    out = tmp_path / "run"
    argv = [*_with_links(tmp_path, out, {"Alice": 1, "Bob": 2, "Carol": 3}), "--until", "link"]
    assert socialpipe(*argv).code == 2
    result = socialpipe(*argv, "--unlisted-off-screen")
    assert result.code == 0, result
    links = json.loads((out / "links.json").read_text())["links"]
    assert {link["voice"]: link["track_id"] for link in links} == {"Alice": 1, "Bob": 2, "Carol": 3, "Dana": None}


def test_a_second_run_on_a_folder_in_use_stops_at_once(run_copy):
    from socialpipe.pipeline.contracts.io import sha256_file
    from socialpipe.pipeline.run.rundir import RunFolder

    sha = sha256_file(SAMPLE_VIDEO)
    holder = RunFolder.open(run_copy, SAMPLE_VIDEO, sha)
    try:
        with pytest.raises(InputError, match="another socialpipe run is writing this folder now"):
            RunFolder.open(run_copy, SAMPLE_VIDEO, sha)
    finally:
        holder.close()
    RunFolder.open(run_copy, SAMPLE_VIDEO, sha).close()  # free again once the first run is done


def test_concurrent_runs_never_mix_a_folder(tmp_path):
    """Two processes start a run on one new folder at once: one finishes, the other stops with a clear line."""
    import subprocess
    import sys

    out = tmp_path / "shared-run"
    command = [sys.executable, "-c", "from socialpipe.cli import main; main()", "run", str(SAMPLE_VIDEO),
               "--out", str(out), *map(str, GROUND_TRUTH_ARGS), "--until", "link"]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (0, 2), results
    for code, err in results:
        if code == 2:
            assert err.strip().splitlines()[-1].startswith("socialpipe: error: --out") and "another socialpipe run" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"video", "people", "speech", "link"}


def test_stale_downstream_files_are_removed_and_named(socialpipe, run_copy, tmp_path):
    """New tracks make the old links point at tracks that may not exist: links.json goes, and inspect says why."""
    assert (run_copy / "links.json").exists()
    moved = json.loads(SAMPLE_TRACKS.read_text())
    for track in moved["tracks"]:
        for observation in track["observations"]:
            observation["xyxy"][0] += 1
    result = socialpipe("run", SAMPLE_VIDEO, "--out", run_copy, "--tracks", _write(tmp_path, "t.json", moved),
                        "--until", "people")
    assert result.code == 0, result
    assert not (run_copy / "links.json").exists() and (run_copy / "speech.json").exists()
    summary = socialpipe("inspect", run_copy, "--no-render")
    assert ("removed link    links.json, asd.csv, who_spoke_when.rttm, transcript.vtt, names.json: its input people "
            "changed") in summary.out


def test_a_deleted_export_is_made_again(socialpipe, run_copy):
    (run_copy / "speech.vtt").unlink()
    result = socialpipe("run", SAMPLE_VIDEO, "--out", run_copy, *GROUND_TRUTH_ARGS, "--until", "link")
    assert result.code == 0 and (run_copy / "speech.vtt").exists()


def test_the_readme_synopsis_names_every_option_of_every_command():
    """Each command's options (click's) appear in the README's synopsis of that command; batch's "[run's
    options]" stands for the options it shares with run."""
    import click

    from socialpipe.cli import cli
    from tests.conftest import REPO

    block = (REPO / "README.md").read_text(encoding="utf-8").split("## Commands", 1)[1].split("```")[1]
    synopsis: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        found = re.match(r"socialpipe (score \w+|\w+)", line)
        current = found.group(1) if found else current
        if current:
            synopsis[current] = synopsis.get(current, "") + line + "\n"

    def commands(group, prefix=""):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    run_flags = {flag for param in cli.commands["run"].params for flag in param.opts}
    missing = {}
    for name, command in commands(cli):
        text = synopsis.get(name, "")
        for param in command.params:
            flags = [*param.opts, *getattr(param, "secondary_opts", [])]
            if not isinstance(param, click.Option) or "--help" in flags or any(re.search(re.escape(f) + r"\b", text)
                                                                              for f in flags):
                continue
            if "[run's options]" in text and set(flags) & run_flags:
                continue
            missing.setdefault(name, []).append(flags[0])
    assert not missing, f"options the README's synopsis lacks: {missing}"


def test_the_overall_line_weighs_each_stage_by_its_share_and_drops_kept_ones():
    from socialpipe.cli import BarProgress
    from socialpipe.pipeline.contracts.progress import ProgressEvent

    with BarProgress(("people", "speech", "link")) as bars:
        bars(ProgressEvent("people", 50.0, 100.0, "frame"))
        assert bars.overall_percent() == pytest.approx(100 * 0.58 * 0.475)
        bars(ProgressEvent("people", message="wrote people.json"))
        bars(ProgressEvent("speech", message="up to date, kept speech.json"))  # no time left for it
        bars(ProgressEvent("speaking", 10.0, 20.0, "face step"))
        bars(ProgressEvent("link", 5.0, 10.0, "frame"))  # the mouth fallback's counter: not the stage's
        assert bars.overall_percent() == pytest.approx(100 * (0.58 + 0.28 * 0.475) / (0.58 + 0.28))
