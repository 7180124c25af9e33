"""Hostile and absurd input files: each is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_VIDEO


def _one_line_error(result, expected: str) -> None:
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.startswith("socialpipe: error:")]
    assert len(lines) == 1 and expected in lines[0], result.err
    assert "Traceback" not in result.err


def test_json_nested_100000_deep_is_one_line(socialpipe, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--tracks", deep, "--until", "people")
    _one_line_error(result, "deep.json: JSON nested too deeply to read")


def test_yaml_nested_3000_deep_is_one_line(socialpipe, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 3000)))
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--config", deep, "--until", "people")
    _one_line_error(result, "deep.yaml: YAML nested too deeply to read")


@pytest.mark.parametrize("name, content", [
    ("huge.csv", "99999999999999999999,1,10,10,20,20,1,-1,-1,-1\n"),
    ("huge.json", json.dumps({"socialpipe": "tracks", "version": 1, "fps": 25, "tracks": [
        {"track_id": 1, "observations": [{"frame": 10**30, "xyxy": [1, 1, 5, 5]}]}]})),
])
def test_a_frame_number_past_64_bits_is_one_line(socialpipe, tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--tracks", path, "--until", "people")
    _one_line_error(result, "frame_index holds a number too large")


@pytest.mark.parametrize("damage", ["deep speech.json", "manifest [", "manifest list"])
def test_a_damaged_run_folder_is_one_line_on_inspect(socialpipe, sample_gt_run, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(sample_gt_run, run)
    if damage == "deep speech.json":
        (run / "speech.json").write_text("[" * 100_000)
        expected = "speech.json: JSON nested too deeply to read"
    elif damage == "manifest [":
        (run / "manifest.json").write_text("[")
        expected = "manifest.json: not valid JSON"
    else:
        (run / "manifest.json").write_text("[]")
        expected = "manifest.json: expected a JSON object"
    _one_line_error(socialpipe("inspect", run, "--no-render"), expected)


def test_every_file_of_a_damaged_run_is_left_as_it_was(socialpipe, sample_gt_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sample_gt_run, run)
    (run / "speech.json").write_text("[" * 100_000)
    before = {p.name: p.read_bytes() for p in Path(run).iterdir() if p.is_file()}
    assert socialpipe("inspect", run, "--no-render").code == 2
    assert {p.name: p.read_bytes() for p in Path(run).iterdir() if p.is_file()} == before


@pytest.mark.parametrize("setting", ["people.detect_fps=1e999", "people.detect_fps=.inf", "link.min_margin=-.inf"])
def test_an_infinite_setting_is_refused(socialpipe, tmp_path, setting):
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--set", setting, "--until", "people")
    _one_line_error(result, f"config {setting.split('=')[0]}")
    assert not (tmp_path / "run" / "people.json").exists()


@pytest.mark.parametrize("args", [["people", "--min-iou", "2"], ["people", "--min-iou", "nan"],
                                  ["speech", "--collar", "-1"], ["speech", "--collar", "nan"],
                                  ["speakers", "--min-iou", "-3"], ["link", "--fps", "inf"]])
def test_an_out_of_range_score_option_is_refused(socialpipe, args):
    result = socialpipe("score", *args)
    assert result.code == 2 and f"Invalid value for '{args[1]}'" in result.err, result


def test_an_unknown_eval_task_is_refused(socialpipe):
    result = socialpipe("eval", "--dataset", "tvqa+", "--task", "bogus")
    assert result.code == 2 and "Invalid value for '--task'" in result.err, result


@pytest.mark.parametrize("size", ["1x1", "16000x16"])
def test_a_video_too_small_for_any_face_is_one_line_and_writes_nothing(socialpipe, tmp_path, size):
    import subprocess

    video = tmp_path / f"v{size}.mp4"
    source = "color=c=gray:s=2x2:d=1" if size == "1x1" else f"color=c=gray:s={size}:d=1"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, *(["-vf", "scale=1:1"] if size == "1x1"
                    else []), "-c:v", "libx264", "-pix_fmt", "yuv444p" if size == "1x1" else "yuv420p", str(video)],
                   check=True)
    result = socialpipe("run", video, "--out", tmp_path / "run", "--until", "people")
    _one_line_error(result, f"its {size} frames reach the face detector")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_works_from_any_working_folder_and_when_moved_with_its_video(socialpipe, tmp_path, monkeypatch):
    """video.json keeps the absolute path; a run folder shared with its video beside it still finds it (by
    name and sha256), so inspect and view work from anywhere."""
    from socialpipe.pipeline.presentation.report import load_run
    from tests.conftest import SAMPLE_TRACKS

    here = tmp_path / "work"
    here.mkdir()
    shutil.copy(SAMPLE_VIDEO, here / "clip.mp4")
    monkeypatch.chdir(here)
    assert socialpipe("run", "clip.mp4", "--out", "run", "--tracks", SAMPLE_TRACKS, "--until", "people").code == 0
    assert json.loads((here / "run" / "video.json").read_text())["path"] == str((here / "clip.mp4").resolve())
    monkeypatch.chdir(tmp_path)
    assert socialpipe("inspect", here / "run", "--no-render").code == 0
    shared = tmp_path / "shared"
    shutil.copytree(here / "run", shared / "run")
    shutil.move(here / "clip.mp4", shared / "clip.mp4")
    moved = load_run(shared / "run")
    assert Path(moved.video.path) == (shared / "clip.mp4").resolve() and moved.video_file[0] is not None


def test_workers_end_when_their_driver_is_killed(tmp_path):
    """A driver running jobs on two worker processes is killed with SIGKILL: its workers do not go on (they held
    about 1 GB each and finished videos nobody recorded)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    script = ("import functools, os, sys, time\n"
              f"sys.path.insert(0, {str(REPO)!r})\n"
              "from socialpipe.pipeline.run.parallel import Placement, spread\n"
              "factory = functools.partial(functools.partial, time.sleep)\n"
              "for index, _ in spread(factory, [60, 60, 60, 60], Placement(workers=2), lambda job, why: None):\n"
              "    pass\n")
    driver = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while len(workers) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.5)
            found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(driver.pid)], capture_output=True, text=True)
            workers = [int(p) for p in found.stdout.split()]
        time.sleep(2.0)  # the workers are in their jobs
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]
                  for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their driver"
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            driver.kill()


def test_a_full_disk_names_the_folder_and_keeps_what_was_written(tmp_path, monkeypatch):
    import errno
    import os

    from socialpipe.pipeline.contracts.errors import SocialpipeError
    from socialpipe.pipeline.contracts.io import write_text_atomic

    target = write_text_atomic(tmp_path / "speech.json", "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SocialpipeError, match=rf"{tmp_path}: no space left on its device to write speech.json \(3 bytes\)"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["speech.json"]


def test_a_full_disk_during_a_run_is_one_line(socialpipe, tmp_path, monkeypatch):
    import errno
    import os

    from tests.conftest import SAMPLE_TRACKS

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--tracks", SAMPLE_TRACKS, "--until", "people")
    _one_line_error(result, "no space left on its device")


@pytest.mark.parametrize("what", ["folder", "fifo", "/dev/zero"])
def test_a_folder_fifo_or_device_as_a_file_is_named_as_such(socialpipe, tmp_path, what):
    import os

    if what == "folder":
        path, expected = tmp_path / "a_folder", "is a folder"
        path.mkdir()
    elif what == "fifo":
        path, expected = tmp_path / "a_fifo", "is a fifo, socket or device"
        os.mkfifo(path)
    else:
        path, expected = Path("/dev/zero"), "is a fifo, socket or device"
    _one_line_error(socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--tracks", path, "--until", "people"),
                    f"--tracks {path}: {expected}")
    if what != "folder":
        _one_line_error(socialpipe("run", path, "--out", tmp_path / "run2", "--until", "people"), expected)


def test_a_gif_is_told_it_is_not_a_video_file(socialpipe, tmp_path):
    import subprocess

    gif = tmp_path / "a.gif"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=64x64:d=1", str(gif)], check=True)
    _one_line_error(socialpipe("run", gif, "--out", tmp_path / "run", "--until", "people"),
                    "its container gives no frame count or duration (an animated GIF or an image?)")


def test_a_non_utf8_ava_csv_is_one_line(socialpipe, tmp_path):
    bad = tmp_path / "gt.csv"
    bad.write_bytes(b"\xff\xfe\x00bad")
    _one_line_error(socialpipe("score", "asd", "--pred", bad, "--gt", bad), "gt.csv: not UTF-8 text")


def test_a_default_run_folder_for_a_250_character_name_is_made(socialpipe, tmp_path, monkeypatch):
    from tests.conftest import SAMPLE_TRACKS

    monkeypatch.chdir(tmp_path)
    video = tmp_path / ("x" * 250 + ".mp4")
    shutil.copy(SAMPLE_VIDEO, video)
    result = socialpipe("run", video.name, "--tracks", SAMPLE_TRACKS, "--until", "people")
    assert result.code == 0, result
    (folder,) = (tmp_path / "socialpipe_runs").iterdir()
    assert folder.name.startswith("x" * 100 + "-") and (folder / "people.json").is_file()


def test_score_link_with_no_voice_in_common_says_how_to_map_them(socialpipe, tmp_path):
    from tests.conftest import SAMPLE_LINKS

    links = json.loads(Path(SAMPLE_LINKS).read_text())
    for k, link in enumerate(links["links"]):
        link["voice"] = f"SPEAKER_{k:02d}"
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(links))
    _one_line_error(socialpipe("score", "link", "--pred", pred, "--gt", SAMPLE_LINKS), "none in common")


def test_an_artifact_edited_by_hand_is_said_on_inspect_and_made_again_by_run(socialpipe, tmp_path):
    """links.json edited to name track 777: inspect says the file was changed; run does not keep it as up to
    date but makes it again from the ground truth it came from."""
    from tests.conftest import SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT

    run = tmp_path / "run"
    common = ["run", SAMPLE_VIDEO, "--out", run, "--tracks", SAMPLE_TRACKS, "--transcript", SAMPLE_TRANSCRIPT,
              "--links", SAMPLE_LINKS, "--until", "link"]
    assert socialpipe(*common).code == 0
    written = (run / "links.json").read_text()
    links = json.loads(written)
    links["links"][0]["track_id"] = 777
    links["links"][0]["track_ids"] = [777]
    (run / "links.json").write_text(json.dumps(links))
    summary = socialpipe("inspect", run, "--no-render")
    assert summary.code == 0 and "edited  links.json was changed after the run wrote it" in summary.out
    again = socialpipe(*common)
    assert again.code == 0 and "links.json was changed after the run wrote it" in again.err + again.out
    assert json.loads((run / "links.json").read_text()) == json.loads(written)
    assert "edited  " not in socialpipe("inspect", run, "--no-render").out


@pytest.mark.parametrize("lost", ["manifest.json", "video.json"])
def test_a_run_that_lost_its_manifest_or_video_json_is_named_and_taken_up_again(socialpipe, tmp_path, lost):
    from tests.conftest import SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT

    run = tmp_path / "run"
    common = ["run", SAMPLE_VIDEO, "--out", run, "--tracks", SAMPLE_TRACKS, "--transcript", SAMPLE_TRANSCRIPT,
              "--links", SAMPLE_LINKS, "--until", "link"]
    assert socialpipe(*common).code == 0
    links = (run / "links.json").read_text()
    (run / lost).unlink()
    _one_line_error(socialpipe("inspect", run, "--no-render"), f"the run's {lost} is missing")
    again = socialpipe(*common)
    assert again.code == 0, again
    assert (run / lost).is_file() and (run / "links.json").read_text() == links
    assert socialpipe("inspect", run, "--no-render").code == 0
    if lost == "video.json":  # the manifest still knew every stage: they were kept, not made again
        assert "up to date, kept" in again.err + again.out


def test_a_folder_that_lost_its_manifest_is_not_taken_for_another_video(socialpipe, tmp_path):
    from tests.conftest import REPO, SAMPLE_TRACKS

    run = tmp_path / "run"
    assert socialpipe("run", SAMPLE_VIDEO, "--out", run, "--tracks", SAMPLE_TRACKS, "--until", "people").code == 0
    (run / "manifest.json").unlink()
    other = REPO / "sample_videos" / "shots.mp4"
    _one_line_error(socialpipe("run", other, "--out", run, "--until", "people"), "lost its manifest.json")


def test_inspect_renders_elsewhere_and_a_folder_it_cannot_write_is_one_line(socialpipe, sample_gt_run, tmp_path,
                                                                             monkeypatch):
    before = sorted(p.name for p in sample_gt_run.iterdir())
    pictures = tmp_path / "pictures"
    result = socialpipe("inspect", sample_gt_run, "--render-to", pictures)
    assert result.code == 0, result
    assert sorted(p.name for p in pictures.iterdir()) == ["contact_sheet.png", "preview.mp4"]
    assert sorted(p.name for p in sample_gt_run.iterdir()) == before

    from socialpipe.pipeline.presentation import report

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(report, "write_bytes_atomic", read_only)
    _one_line_error(socialpipe("inspect", sample_gt_run), "cannot write the preview and contact sheet there")


def test_a_yaml_number_written_with_an_exponent_is_a_number(socialpipe, tmp_path):
    """YAML 1.1 reads 1e308 and 1e-1 (no dot) as text: out of range is said as out of range, in range is taken."""
    big, fine = tmp_path / "big.yaml", tmp_path / "fine.yaml"
    big.write_text("people:\n  detect_scale: 1e308\n")
    fine.write_text("people:\n  detect_scale: 1e-1\n")
    _one_line_error(socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "a", "--config", big, "--until", "people"),
                    "people.detect_scale: 1e+308 is outside the allowed range (0, 1]")
    from socialpipe.pipeline.contracts.config import load_config

    assert load_config(fine).people.detect_scale == 0.1


def test_an_export_where_nothing_can_be_written_is_one_line(socialpipe, sample_gt_run):
    _one_line_error(socialpipe("view", sample_gt_run, "--export", "/proc/x.html"), "--export /proc/x.html: cannot write")


def test_a_language_the_english_only_model_cannot_hear_is_one_line(socialpipe, tmp_path):
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--set", "speech.language=de",
                        "--until", "speech")
    _one_line_error(result, "speech.language is 'de' but speech.asr_model 'bundled:tiny.en' knows English only")
    assert not (tmp_path / "run").exists()
    from socialpipe.stages.speech.asr import english_only

    assert english_only("bundled:tiny.en") and english_only("/models/medium.en/") and not english_only("large-v3-turbo")
