"""``socialpipe view``: the page's data, the export, the server, and the page itself in headless Chromium
(Debian's ``chromium`` driven by Playwright; no browser is downloaded)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from socialpipe.pipeline.presentation import viewer
from socialpipe.pipeline.contracts.artifacts import SpeakerLink, SpeakerLinks, Tracks, Transcript, Utterance, VideoInfo
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.run.orchestrator import RunRequest, run
from socialpipe.pipeline.presentation.report import load_run
from tests.conftest import REPO, SAMPLE_TRACKS, SAMPLE_VIDEO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = REPO / "test-artifacts"  # screenshots the browser tests leave for people to look at


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def sample_run(sample_gt_run) -> Path:
    return sample_gt_run  # the page only reads it


def test_page_data_holds_every_track_voice_and_link(sample_run):
    contents = load_run(sample_run)
    data = viewer.view_data(contents)
    assert [t["id"] for t in data["tracks"]] == contents.tracks.track_ids
    first = data["tracks"][0]
    assert len(first["boxes"]) == 4 * len(first["frames"]) == 4 * len(contents.tracks.for_track(first["id"]))
    assert data["voices"] == contents.transcript.speakers and len(data["links"]) == len(contents.links)
    assert data["missing"] == ["no answer stage output (answer.json)"]


def test_export_is_one_file_that_plays_the_video_by_a_relative_path(sample_run, tmp_path, socialpipe):
    before = digests(sample_run)
    out = tmp_path / "shared" / "sample.html"
    result = socialpipe("view", sample_run, "--export", out)
    assert result.code == 0, result
    page = out.read_text()
    data = json.loads(page.split('id="run-data">', 1)[1].split("</script>", 1)[0])
    assert (out.parent / data["video_src"]).resolve() == SAMPLE_VIDEO.resolve()
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # nothing from a CDN
    assert digests(sample_run) == before  # nothing written into the run folder


def test_a_run_that_stopped_early_says_what_is_missing(tmp_path):
    out = tmp_path / "early"
    run(RunRequest(video=SAMPLE_VIDEO, out=out, tracks_file=SAMPLE_TRACKS, until="people"))
    data = viewer.view_data(load_run(out))
    assert data["missing"] == ["no speech stage output (speech.json)", "no link stage output (links.json)",
                               "no answer stage output (answer.json)"]
    assert data["tracks"] and data["utterances"] == [] and data["links"] == []


def test_server_answers_byte_ranges_of_the_video(sample_run):
    served = viewer.serve(sample_run)
    try:
        request = urllib.request.Request(served.url + "video", headers={"Range": "bytes=100-199"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 206 and response.headers["Content-Range"].endswith(
                f"/{SAMPLE_VIDEO.stat().st_size}")
            assert response.read() == SAMPLE_VIDEO.read_bytes()[100:200]
        with urllib.request.urlopen(served.url, timeout=10) as response:
            assert b"run-data" in response.read()
    finally:
        served.stop()


def test_export_refuses_a_name_that_is_not_html(sample_run, tmp_path, socialpipe):
    result = socialpipe("view", sample_run, "--export", tmp_path / "page.txt")
    assert result.code == 2 and "expected a file name ending in .html" in result.err


# ----------------------------------------------------------------------------- in the browser

needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_view(browser, run_dir: Path):
    served = viewer.serve(run_dir)
    # Playwright's wait_for_function compiles its predicate in the page, which the page's policy forbids (no
    # eval): these tests of behaviour lift the policy; the hostile-run test below keeps it
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(served.url)
    page.wait_for_function("window.socialpipeView && window.socialpipeView.ready", timeout=15_000)
    return served, page, errors


@needs_browser
def test_the_page_plays_follows_and_seeks(browser, sample_run):
    contents = load_run(sample_run)
    served, page, errors = open_view(browser, sample_run)
    try:
        page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=15_000)
        # the video plays
        page.evaluate("document.getElementById('video').muted = true; document.getElementById('video').play()")
        page.wait_for_function("document.getElementById('video').currentTime > 0.3", timeout=10_000)
        page.evaluate("document.getElementById('video').pause()")

        # seeking moves the highlighted transcript line, and the boxes drawn match people.json at that frame
        for k in (1, 4, len(contents.transcript) - 2):
            utterance = contents.transcript.utterances[k]
            at = (utterance.start_s + utterance.end_s) / 2
            frame = int(np.floor(at * contents.video.fps + 1e-6))
            page.evaluate(f"window.socialpipeView.seek({at})")
            page.wait_for_function(f"document.getElementById('overlay').dataset.frame === '{frame}'", timeout=10_000)
            current = page.eval_on_selector("#transcript li.current", "li => Number(li.dataset.index)")
            assert contents.transcript.utterances[current] in contents.transcript.speaking_at(at)
            drawn = int(page.eval_on_selector("#overlay", "c => c.dataset.boxes"))
            assert drawn == len(contents.tracks.at_frame(frame)) > 0

        # every voice has a lane, every track too
        lanes = json.loads(page.eval_on_selector("#timeline", "c => c.dataset.lanes"))
        assert [lane for lane in lanes if lane.startswith("voice:")] == [f"voice:{v}" for v in
                                                                          contents.transcript.speakers]
        assert [lane for lane in lanes if lane.startswith("track:")] == [f"track:{t}" for t in
                                                                          contents.tracks.track_ids]

        # clicking a transcript line seeks the video to it
        target = contents.transcript.utterances[6]
        page.click("#transcript li[data-index='6']")
        page.wait_for_function(f"Math.abs(document.getElementById('video').currentTime - {target.start_s}) < 0.1",
                               timeout=10_000)
        page.wait_for_function("document.querySelector('#transcript li.current')?.dataset.index === '6'")
        # Dana speaks from off screen: the picture says so; while Bob speaks on screen it does not
        assert target.speaker == "Dana" and page.eval_on_selector("#overlay", "c => c.dataset.offScreen") == "Dana"
        bob = contents.transcript.utterances[1]
        page.evaluate(f"window.socialpipeView.seek({(bob.start_s + bob.end_s) / 2})")
        page.wait_for_function("document.getElementById('overlay').dataset.offScreen === ''", timeout=10_000)
        page.click("#transcript li[data-index='6']")
        page.wait_for_function("document.getElementById('overlay').dataset.offScreen === 'Dana'", timeout=10_000)

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-sample.png"), full_page=True)
        assert errors == []
    finally:
        page.close()
        served.stop()


def synthetic_hour(folder: Path) -> Path:
    """A run folder for a 1 h video at the sample's density: 3 face tracks on every frame at 25 fps and a
    turn of about 3 s every 3.5 s among four voices. No video file: the page follows its slider."""
    fps, seconds = 25.0, 3600.0
    frames = int(fps * seconds)
    folder.mkdir(parents=True)
    video = VideoInfo(str(folder / "hour.mp4"), fps, frames, 640, 360, seconds, True)
    index = np.arange(frames)
    parts = []
    for k, x in enumerate((90, 300, 520)):
        sway = 6 * np.sin(index / 40.0 + k)
        boxes = np.stack([x + sway, np.full(frames, 120.0), x + 70 + sway, np.full(frames, 210.0)], axis=1)
        parts.append(Boxes(boxes, np.ones(frames), track_id=np.full(frames, k + 1), frame_index=index))
    Tracks.from_boxes(Boxes.concat(parts), fps).save(folder / "people.json")
    voices = ["Alice", "Bob", "Carol", "Dana"]
    starts = np.arange(0.0, seconds - 4, 3.5)
    Transcript.from_utterances([Utterance(float(s), float(s) + 3.0, voices[i % 4], "words spoken in this turn")
                                for i, s in enumerate(starts)]).save(folder / "speech.json")
    SpeakerLinks(tuple(SpeakerLink(v, (i + 1) if i < 3 else None) for i, v in enumerate(voices))).save(
        folder / "links.json")
    video.save(folder / "video.json")
    (folder / "manifest.json").write_text(json.dumps({"video": {"path": video.path, "sha256": "0" * 64},
                                                      "stages": {}}))
    return folder


@needs_browser
def test_a_one_hour_run_is_interactive_within_two_seconds(browser, tmp_path):
    run_dir = synthetic_hour(tmp_path / "hour")
    started = time.perf_counter()
    served, page, errors = open_view(browser, run_dir)
    try:
        ready_ms = page.evaluate("window.socialpipeView.readyMs")  # from the navigation's start to interactive
        assert ready_ms < 2000, f"the page took {ready_ms:.0f} ms to become interactive"
        page.evaluate("window.socialpipeView.seek(1800.5)")
        assert page.evaluate("window.socialpipeView.frame") == 45012
        assert errors == []
        print(f"1 h run: ready after {ready_ms:.0f} ms in the page, {time.perf_counter() - started:.1f} s with the "
              "server's preparation")
    finally:
        page.close()
        served.stop()


def test_the_view_command_prints_its_address_and_serves(sample_run):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "from socialpipe.cli import main; main()", "view",
                                str(sample_run), "--no-open"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("socialpipe view: http://127.0.0.1:"), line
        with urllib.request.urlopen(line.split()[2], timeout=10) as response:
            assert b'id="run-data"' in response.read()
    finally:
        process.terminate()
        process.wait(timeout=10)


# ----------------------------------------------------------------------------- hostile runs

HOSTILE = ["<img src=x onerror=\"window.__pwned='img'\">", "hello <!--<script> world", "</script><script>window.__pwned='tag'</script>",
           "{{script}}", "\u2028'\"&amp;"]


def hostile_run(sample_run: Path, tmp_path: Path) -> Path:
    """The sample's run with hostile strings in every free-text field that reaches the page: a voice's link
    evidence (candidate keys and values, the decision), the transcript's text and voice names."""
    out = tmp_path / "hostile"
    shutil.copytree(sample_run, out)
    links = json.loads((out / "links.json").read_text())
    for k, link in enumerate(links["links"]):
        evidence = link.setdefault("evidence", {})
        evidence["decision"] = HOSTILE[k % len(HOSTILE)]
        evidence["candidates"] = {str(link.get("track_id") or 1): {HOSTILE[0]: HOSTILE[2], "margin": HOSTILE[1]}}
        link["display_name"] = HOSTILE[(k + 1) % len(HOSTILE)]
    (out / "links.json").write_text(json.dumps(links))
    speech = json.loads((out / "speech.json").read_text())
    for k, utterance in enumerate(speech["utterances"]):
        utterance["text"] = HOSTILE[k % len(HOSTILE)]
        utterance.pop("words", None)
    (out / "speech.json").write_text(json.dumps(speech))
    return out


def test_embedded_data_cannot_leave_its_element():
    text = viewer.embedded_json({"a": HOSTILE})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": HOSTILE}


@needs_browser
def test_hostile_strings_in_a_run_stay_text_in_the_served_and_the_exported_page(browser, sample_run, tmp_path):
    hostile = hostile_run(sample_run, tmp_path)
    exported = viewer.export(hostile, tmp_path / "page.html")
    served = viewer.serve(hostile)
    try:
        for url in (served.url, exported.resolve().as_uri()):
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            deadline = time.monotonic() + 15
            while not page.evaluate("Boolean(window.socialpipeView && window.socialpipeView.ready)"):
                assert time.monotonic() < deadline, "the page's own script did not run under its policy"
                time.sleep(0.1)
            assert page.evaluate("window.__pwned") is None, url
            assert page.eval_on_selector_all("#links img, #transcript img, #links script", "els => els.length") == 0
            shown = page.inner_text("body")
            assert HOSTILE[0] in shown and "hello <!--<script> world" in shown  # as text, whole
            assert errors == [], errors
            page.close()
    finally:
        served.stop()


def _get(url: str, host: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_server_answers_only_its_own_address_and_sends_a_content_policy(sample_run):
    served = viewer.serve(sample_run)
    port = served.url.rsplit(":", 1)[1].strip("/")
    try:
        assert _get(served.url)[0] == 200 and _get(served.url, f"localhost:{port}")[0] == 200
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1:1"):
            status, body = _get(served.url + "video", host)
            assert status == 403 and SAMPLE_VIDEO.read_bytes()[:64] not in body, host
        with urllib.request.urlopen(served.url, timeout=10) as response:
            policy = response.headers["Content-Security-Policy"]
        assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    finally:
        served.stop()


def test_the_server_serves_only_the_run_s_own_video(sample_run, tmp_path):
    """video.json names another file (/etc/passwd, or a different video): it is neither served nor linked."""
    for other in (Path("/etc/passwd"), REPO / "sample_videos" / "shots.mp4"):
        moved = tmp_path / f"moved-{other.name}"
        shutil.copytree(sample_run, moved)
        info = json.loads((moved / "video.json").read_text())
        info["path"] = str(other)
        (moved / "video.json").write_text(json.dumps(info))
        served = viewer.serve(moved)
        try:
            status, body = _get(served.url + "video")
            assert status == 404 and other.read_bytes()[:32] not in body
            data = viewer.view_data(load_run(moved))
            assert any("is not this run's video" in line for line in data["missing"]), data["missing"]
        finally:
            served.stop()
        page = viewer.export(moved, tmp_path / f"{other.name}.html").read_text()
        assert json.loads(page.split('id="run-data">', 1)[1].split("</script>", 1)[0])["video_src"] == ""


# ----------------------------------------------------------------------------- hostile strings, searched

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_HTML_BITS = st.sampled_from(["<", ">", "&", "</script>", "<!--", "<script>", "-->", "{{data}}", "{{script}}", "\"",
                              "'", "\\", "\u2028", "<img src=x onerror=alert(1)>", "]]>", "</", "<!"])
hostile_text = st.lists(st.one_of(_HTML_BITS, st.text(max_size=6)), min_size=1, max_size=6).map("".join)


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(voice=hostile_text.filter(lambda s: s.strip()), text=hostile_text, name=hostile_text, decision=hostile_text, key=hostile_text,
       value=hostile_text, question=hostile_text, answer=hostile_text, option=hostile_text, run_name=hostile_text)
def test_no_artifact_string_escapes_the_page_s_data(tmp_path, voice, text, name, decision, key, value, question,
                                                   answer, option, run_name):
    """Whatever a run's artifacts hold in the fields that reach the page (voice labels, transcript text, display
    names, link evidence keys and values, question, answer, options, the run folder's name): the page has
    exactly its own two script elements, the policy's hash is its script's, and the data reads back intact."""
    import base64
    import re

    from socialpipe.pipeline.contracts.artifacts import Answer
    from socialpipe.pipeline.presentation.report import RunContents

    video = VideoInfo(path=str(SAMPLE_VIDEO), fps=25.0, frame_count=10, width=64, height=36, duration_s=0.4,
                      has_audio=True)
    tracks = Tracks.from_rows([{"track_id": 1, "frame_index": 0, "xyxy": [1, 1, 9, 9]}], fps=25.0)
    transcript = Transcript.from_utterances([Utterance(0.0, 0.3, voice, text)])
    links = SpeakerLinks((SpeakerLink(voice, 1, track_ids=(1,), display_name=name or None,
                                      evidence={"decision": decision, "candidates": {"1": {key: value}}}),))
    answer = Answer(question or "?", answer, options=(option or "A", "B"), model=name)
    contents = RunContents(tmp_path / (re.sub(r"[/\0]", "_", run_name)[:40] or "run"), video, tracks, transcript,
                           links, answer, {})
    data = viewer.view_data(contents)
    page, policy = viewer.render_page(data, "video", None)
    assert len(re.findall(r"<script\b", page)) == 2 and len(re.findall(r"</script>", page)) == 2
    assert "<!--" not in page
    embedded = page.split('<script type="application/json" id="run-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded)["utterances"][0]["text"] == text
    assert json.loads(embedded)["links"][0]["candidates"] == {"1": {key: value}}
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy and policy in page.replace("&#x27;", "'")


def test_tags_stay_inside_the_picture_and_never_cover_each_other():
    from socialpipe.pipeline.media.drawing import draw_box

    image = np.zeros((120, 200, 3), np.uint8)
    taken: list = []
    for x in (150, 155, 160):  # three faces close together at the right edge, long names
        draw_box(image, (x, 40, x + 30, 70), (200, 0, 0), f"{x} a long name speaking", taken=taken)
    assert len(taken) == 3 and all(0 <= x1 and x2 <= 200 and 0 <= y1 and y2 <= 120 for x1, y1, x2, y2 in taken)
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(taken) for b in taken[i + 1:])


def test_a_voice_speaking_from_no_face_on_screen_is_marked_off_screen(sample_run):
    """The sample's Dana speaks from off screen at 00:20-00:23: the preview says so at the top; while Alice
    speaks on screen, no such line."""
    from socialpipe.pipeline.media.video import read_frames
    from socialpipe.pipeline.presentation.report import draw_overlay, track_names

    contents = load_run(sample_run)
    dana = next(u for u in contents.transcript.utterances if u.speaker == "Dana")
    alice = next(u for u in contents.transcript.utterances if u.speaker == "Alice")
    marked = []
    for u in (dana, alice):
        frame_index = int((u.start_s + u.end_s) / 2 * contents.video.fps)
        frame = read_frames(contents.video, [frame_index])[0]
        drawn = draw_overlay(frame, frame_index, contents, track_names(contents.links))
        marked.append(drawn[4:20, 8:120].mean() < 0.6 * frame[4:20, 8:120].mean())  # the dark band behind the line
    assert marked == [True, False]
