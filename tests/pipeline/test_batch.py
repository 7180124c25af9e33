"""``socialpipe batch`` and spread evaluations: inputs, fault isolation, resuming after a kill, worker
processes and a local Ray (``num_cpus=2``), and an evaluation over 2 workers equal to one in a single process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from socialpipe.pipeline.scaling.batch import BatchSettings, expand_inputs, run_batch, run_names
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.run.parallel import Placement
from tests.conftest import SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT, SAMPLE_VIDEO, make_video


def test_inputs_are_folders_globs_lists_and_files(tmp_path):
    (tmp_path / "season" / "extra").mkdir(parents=True)
    for name in ("e01.mp4", "e02.mkv", "notes.txt", "extra/e03.mp4"):
        (tmp_path / "season" / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# my videos\nseason/e01.mp4\n\nseason/extra/e03.mp4\n")
    folder = expand_inputs([tmp_path / "season"])
    assert [p.name for p in folder] == ["e01.mp4", "e02.mkv"]
    assert [p.name for p in expand_inputs([str(tmp_path / "season" / "**" / "*.mp4")])] == ["e01.mp4", "e03.mp4"]
    both = expand_inputs([listing, tmp_path / "season" / "e01.mp4"])  # a duplicate counts once
    assert [p.name for p in both] == ["e01.mp4", "e03.mp4"]
    for bad, message in [(tmp_path / "nope.mp4", "no such file or folder"), (str(tmp_path / "*.avi"), "matches no file")]:
        with pytest.raises(InputError, match=message):
            expand_inputs([bad])
    (tmp_path / "blank.txt").write_text("# nothing\n\n")
    with pytest.raises(InputError, match="lists no videos"):
        expand_inputs([tmp_path / "blank.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        expand_inputs([tmp_path / "empty"])


def test_run_names_are_the_file_names_unless_two_collide(tmp_path):
    a, b, c = tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4", tmp_path / "x" / "other.mp4"
    names = run_names([a, b, c])
    assert names[c] == "other" and names[a] != names[b] and names[a].startswith("clip-")
    assert run_names([a, b, c]) == names  # a re-run finds the same folders


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory) -> Path:
    """Three 2 s test-pattern videos and one file that is not a video."""
    folder = tmp_path_factory.mktemp("batch_inputs")
    for name in ("a", "b", "c"):
        make_video(folder / f"{name}.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    return folder


def _check_isolated_batch(record: dict, workers: int) -> None:
    videos = record["videos"]
    assert sorted(videos) == ["a", "b", "broken", "c"]
    assert videos["broken"]["status"] == "failed" and "not a readable video" in videos["broken"]["error"]
    done = [videos[name] for name in "abc"]
    assert all(r["status"] == "done" and r["computed"] == ["video", "people"] for r in done)
    # the face detector is loaded once per worker, however many videos the worker ran
    by_worker: dict[str, list] = {}
    for r in done:
        by_worker.setdefault(r["worker"], []).append(r["model_loads"].get("mtcnn"))
    assert 1 < len(by_worker) <= workers and all(set(loads) == {1} for loads in by_worker.values())
    assert any(len(loads) > 1 for loads in by_worker.values())


def test_one_broken_video_fails_alone_on_worker_processes(tiny_videos, tmp_path):
    out = tmp_path / "batch"
    record = run_batch([tiny_videos], out, BatchSettings(until="people"), Placement(workers=2))
    _check_isolated_batch(record, workers=2)
    assert json.loads((out / "batch.json").read_text())["videos"]["a"]["status"] == "done"
    assert (out / "a" / "people.json").is_file() and not (out / "broken" / "people.json").exists()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is the optional extra socialpipe[ray]")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_one_broken_video_fails_alone_on_local_ray(local_ray, tiny_videos, tmp_path):
    record = run_batch([tiny_videos], tmp_path / "batch", BatchSettings(until="people"),
                       Placement(workers=2, ray="local"))
    _check_isolated_batch(record, workers=2)


def test_ray_workers_can_hand_the_run_folders_back(local_ray, tiny_videos, tmp_path):
    """A cluster without a shared disk: the run folders come back to the driver's --out."""
    record = run_batch([tiny_videos / "a.mp4", tiny_videos / "b.mp4"], tmp_path / "batch",
                       BatchSettings(until="people"), Placement(workers=2, ray="local"), return_files=True)
    assert all(r["status"] == "done" for r in record["videos"].values())
    for name in "ab":
        manifest = json.loads((tmp_path / "batch" / name / "manifest.json").read_text())
        assert set(manifest["stages"]) == {"video", "people"} and (tmp_path / "batch" / name / "people.json").is_file()


def _manifest_stages(folder: Path) -> dict:
    path = folder / "manifest.json"
    return json.loads(path.read_text())["stages"] if path.is_file() else {}


def test_a_killed_batch_resumes_without_redoing_or_losing_anything(tmp_path):
    videos, truth = tmp_path / "videos", tmp_path / "truth"
    videos.mkdir()
    truth.mkdir()
    for name in ("v1", "v2", "v3"):
        shutil.copy(SAMPLE_VIDEO, videos / f"{name}.mp4")
        shutil.copy(SAMPLE_TRACKS, truth / f"{name}.tracks.json")
        shutil.copy(SAMPLE_TRANSCRIPT, truth / f"{name}.transcript.json")
    out = tmp_path / "batch"
    command = [sys.executable, "-c", "from socialpipe.cli import main; main()", "batch", str(videos),
               "--out", str(out), "--tracks-dir", str(truth), "--transcript-dir", str(truth), "--until", "link",
               "--set", "link.method=mouth"]  # what is kept is the point, not how the link stage links: its quick way
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "batch.json").is_file() and json.loads((out / "batch.json").read_text())["videos"]:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = json.loads((out / "batch.json").read_text())["videos"]
    assert 1 <= len(before) < 3, "the kill must land while videos are left"
    stages_before = {name: _manifest_stages(out / name) for name in ("v1", "v2", "v3")}

    result = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    after = json.loads(result.stdout)["videos"]
    assert sorted(after) == ["v1", "v2", "v3"] and all(r["status"] == "done" for r in after.values())  # nothing lost
    for name, record in before.items():  # a finished video is not run again
        assert after[name] == record
    for name, stages in stages_before.items():  # a stage finished before the kill is kept, never redone
        now = _manifest_stages(out / name)
        assert all(now[stage] == entry for stage, entry in stages.items())
        assert not set(after[name]["computed"]) & set(stages) or name in before
    assert all(after[name]["computed"] for name in after if name not in before)


def test_a_rerun_retries_only_the_failures(tiny_videos, tmp_path):
    inputs = tmp_path / "inputs"
    shutil.copytree(tiny_videos, inputs)
    out = tmp_path / "batch"
    first = run_batch([inputs], out, BatchSettings(until="people"))
    assert first["videos"]["broken"]["status"] == "failed"
    make_video(inputs / "broken.mp4")  # repaired
    second = run_batch([inputs], out, BatchSettings(until="people"))
    assert second["videos"]["broken"]["status"] == "done"
    assert all(second["videos"][n] == first["videos"][n] for n in "abc")
    with pytest.raises(InputError, match="holds a batch with other settings"):
        run_batch([inputs], out, BatchSettings(until="speech"))


def test_batch_cli_reports_failures_with_exit_status_3(socialpipe, tiny_videos, tmp_path):
    result = socialpipe("batch", tiny_videos / "a.mp4", tiny_videos / "broken.mp4", "--out", tmp_path / "b",
                        "--until", "people")
    assert result.code == 3 and "1 done, 1 failed, of 2 videos" in result.out and "broken" in result.out
    result = socialpipe("batch", tmp_path / "missing", "--out", tmp_path / "c")
    assert result.code == 2 and "no such file or folder" in result.err
    result = socialpipe("batch", tiny_videos, "--out", tmp_path / "d", "--tracks-dir", tmp_path / "nowhere")
    assert result.code == 2 and "--tracks-dir" in result.err
    result = socialpipe("batch", tiny_videos / "a.mp4", "--out", tmp_path / "e", "--ray", "127.0.0.1:1")
    assert result.code == 2 and "--ray 127.0.0.1:1: nothing answers there" in result.err


# ----------------------------------------------------------------------------- evaluation spread out


@pytest.fixture(scope="module")
def mmsi_eval(tmp_path_factory):
    from tests.pipeline.test_evaluation import make_mmsi_root
    from tests.tiny_models import qwen2_5_vl

    folder = tmp_path_factory.mktemp("spread_eval")
    root = make_mmsi_root(folder / "mmsi")
    return root, qwen2_5_vl(folder / "model")


def _results(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return {row["item_id"]: row for row in rows}


def _eval(socialpipe, root, model, out, *placement):
    result = socialpipe("eval", "--dataset", "mmsi", "--data-root", root, "--model", model, "--variant", "align",
                        "--out", out, "--set", "answer.num_frames=4", "--threads", "1", *placement, "--json")
    assert result.code == 0, result
    return _results(out)


def test_eval_over_two_workers_gives_the_single_process_results(socialpipe, mmsi_eval, tmp_path):
    root, model = mmsi_eval
    single = _eval(socialpipe, root, model, tmp_path / "one")
    spread_out = _eval(socialpipe, root, model, tmp_path / "two", "--workers", "2")
    assert len(single) == 3 and spread_out == single


def test_eval_on_local_ray_gives_the_single_process_results(socialpipe, local_ray, mmsi_eval, tmp_path):
    root, model = mmsi_eval
    single = _eval(socialpipe, root, model, tmp_path / "one")
    assert _eval(socialpipe, root, model, tmp_path / "ray", "--workers", "2", "--ray") == single


def test_a_batch_gallery_names_each_video_s_people_and_says_why_not(socialpipe, tmp_path):
    """With ground-truth tracks (no face embeddings) the gallery's photo can name nobody: each run's names.json
    says so; a gallery folder with nothing in it is one line before any video runs."""
    from skimage import data
    from PIL import Image

    from socialpipe.pipeline.contracts.artifacts import Names, load_json

    videos, truth, gallery = tmp_path / "videos", tmp_path / "truth", tmp_path / "gallery"
    for folder in (videos, truth, gallery):
        folder.mkdir()
    shutil.copy(SAMPLE_VIDEO, videos / "v1.mp4")
    for kind, source in (("tracks", SAMPLE_TRACKS), ("transcript", SAMPLE_TRANSCRIPT), ("links", SAMPLE_LINKS)):
        shutil.copy(source, truth / f"v1.{kind}.json")
    Image.fromarray(data.astronaut()).save(gallery / "Eileen.jpg")
    result = socialpipe("batch", videos, "--out", tmp_path / "b", "--tracks-dir", truth, "--transcript-dir", truth,
                        "--links-dir", truth, "--until", "link", "--gallery", gallery)
    assert result.code == 0, result
    names = load_json(Names, tmp_path / "b" / "v1" / "names.json")
    assert names.names == {} and "no face embeddings" in names.matches[0]["why"]
    (tmp_path / "empty").mkdir()
    empty = socialpipe("batch", videos, "--out", tmp_path / "c", "--gallery", tmp_path / "empty")
    assert empty.code == 2 and "no photos" in empty.err
