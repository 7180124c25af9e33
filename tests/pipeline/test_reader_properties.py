"""Property-based tests of every reader of a user's or a dataset's file.

Whatever a file holds (any bytes, or the right structure filled with absurd values: NaN, huge or negative
numbers, booleans where numbers go, nulls, nested junk), a reader either returns a valid artifact or raises
the project's InputError: never another exception, which the CLI would show as a traceback. What a reader
returns must also survive its own writer and reader unchanged.

The examples are derandomised (the same every run) and bounded (``EXAMPLES`` per property), so that CI
stays fast and a failure reproduces; ``HYPOTHESIS_EXAMPLES=2000 pytest tests/pipeline/test_reader_properties.py``
searches harder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

from socialpipe.pipeline.contracts.artifacts import SpeakerLinks, Tracks, Transcript, load_json
from socialpipe.pipeline.contracts.config import load_config
from socialpipe.pipeline.evaluation.datasets import load_keypoints, load_mmsi, load_onlinemmsi, load_tvqa_plus
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import load_links, load_tracks, load_transcript, write_mot, write_rttm, write_vtt

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "60"))
PROPERTY = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ----------------------------------------------------------------------------- what files hold

# JSON leaves a careless or hostile writer puts where a number or a name belongs
absurd_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 1e308, -0.0, 2.7, 10**20]),
    st.text(max_size=12), st.sampled_from(["", "None", "null", "NaN", "1e3", "\n", "<v x>", "-->", "\u202e", "a\x00b"]),
)
json_values = st.recursive(absurd_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def maybe(strategy):
    """Mostly the right kind of value (so that whole files are often valid), sometimes anything at all."""
    return st.integers(0, 7).flatmap(lambda roll: json_values if roll == 0 else strategy)


numbers = st.integers(0, 9).flatmap(lambda roll: st.floats(allow_nan=True, allow_infinity=True) if roll == 0 else
                                    st.integers(-5, 2000) if roll < 4 else st.floats(-5, 2000))
boxes = maybe(st.lists(numbers, min_size=4, max_size=4))
observation = st.fixed_dictionaries({"frame": maybe(st.integers(-2, 500)), "xyxy": boxes},
                                    optional={"confidence": maybe(numbers), "time_s": maybe(numbers),
                                              "landmarks": maybe(st.lists(st.lists(numbers, min_size=2, max_size=2),
                                                                          min_size=5, max_size=5))})
tracks_json = st.fixed_dictionaries({
    "socialpipe": maybe(st.just("tracks")), "fps": maybe(numbers),
    "tracks": maybe(st.lists(st.fixed_dictionaries({
        "track_id": maybe(st.integers(-3, 9)), "kind": maybe(st.sampled_from(["face", "person", "car"])),
        "observations": maybe(st.lists(observation, max_size=4))}), max_size=3)),
}, optional={"version": maybe(st.just(1)), "meta": json_values})
word = st.fixed_dictionaries({"start_s": maybe(numbers), "end_s": maybe(numbers), "text": maybe(st.text(max_size=8))},
                             optional={"score": maybe(numbers)})
transcript_json = st.fixed_dictionaries({
    "socialpipe": maybe(st.just("transcript")),
    "utterances": maybe(st.lists(st.fixed_dictionaries(
        {"start_s": maybe(numbers), "end_s": maybe(numbers), "speaker": maybe(st.text(max_size=10)),
         "text": maybe(st.text(max_size=30))}, optional={"words": maybe(st.lists(word, max_size=3))}), max_size=4)),
}, optional={"version": maybe(st.just(1)), "meta": json_values})
links_json = st.one_of(
    st.fixed_dictionaries({"socialpipe": maybe(st.just("links")), "links": maybe(st.lists(st.fixed_dictionaries(
        {"voice": maybe(st.text(max_size=8)), "track_id": maybe(st.one_of(st.none(), st.integers(-2, 9)))},
        optional={"confidence": maybe(numbers), "display_name": maybe(st.text(max_size=8)),
                  "evidence": json_values}), max_size=4))}),
    st.dictionaries(st.text(max_size=8), maybe(st.one_of(st.none(), st.integers(0, 9))), max_size=4),
)
tvqa_row = st.fixed_dictionaries({
    "qid": maybe(st.integers(0, 10**6)), "q": maybe(st.text(max_size=20)), "vid_name": maybe(st.text(max_size=12)),
    "answer_idx": maybe(st.integers(-1, 6)), "ts": maybe(st.lists(numbers, min_size=2, max_size=2)),
    "bbox": maybe(st.dictionaries(st.text(st.characters(categories=["Nd"]), min_size=1, max_size=3), maybe(st.lists(
        st.fixed_dictionaries({"left": maybe(numbers), "top": maybe(numbers), "width": maybe(numbers),
                               "height": maybe(numbers), "label": maybe(st.text(max_size=6))}), max_size=2)),
        max_size=2)),
    **{f"a{i}": maybe(st.text(max_size=10)) for i in range(5)},
})
keypoints_json = maybe(st.lists(maybe(st.lists(maybe(st.fixed_dictionaries(
    {"idx": maybe(st.integers(-1, 5)), "keypoints": maybe(st.lists(numbers, max_size=51))})), max_size=3)), max_size=3))

# lines of the text formats: mostly near the real syntax, sometimes anything
clock = st.builds(lambda h, m, s, ms, sep: f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}", st.integers(0, 99),
                  st.integers(0, 99), st.integers(0, 99), st.integers(0, 999), st.sampled_from([".", ","]))
rttm_line = st.one_of(
    st.builds(lambda start, dur, who: f"SPEAKER video 1 {start} {dur} <NA> <NA> {who} <NA> <NA>",
              maybe(numbers).map(str), maybe(numbers).map(str), st.text(max_size=6)),
    st.text(max_size=40))
text_line = st.one_of(st.text(max_size=20), st.sampled_from(["", "-->", "<v >", "NOTE", "a: b: c", "</v>"]))

def _clock_of(ms: int, sep: str) -> str:
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


# start and end of a cue: mostly in order, sometimes any two clocks
cue_times = st.integers(0, 7).flatmap(lambda roll: st.tuples(clock, clock) if roll == 0 else st.builds(
    lambda start, length, sep: (_clock_of(start, sep), _clock_of(start + length, sep)),
    st.integers(0, 10**7), st.integers(0, 10**5), st.sampled_from([".", ","])))
cue = st.builds(lambda n, times, who, text: f"{n}\n{times[0]} --> {times[1]}\n{who}{text}\n",
                st.one_of(st.integers(0, 99).map(str), st.just("")), cue_times,
                st.one_of(st.just(""), st.text(max_size=8).map(lambda w: f"<v {w}>"),
                          st.text(max_size=8).map(lambda w: f"{w}: ")), text_line)
cues = st.lists(st.integers(0, 5).flatmap(lambda roll: text_line if roll == 0 else cue), max_size=5)
mot_row = st.tuples(maybe(st.integers(-1, 60)), maybe(st.integers(-2, 5)), maybe(numbers), maybe(numbers),
                    maybe(numbers), maybe(numbers), maybe(st.floats(0, 1)), st.just(-1), st.just(-1), st.just(-1))
mot_line = st.integers(0, 7).flatmap(lambda roll: st.text(max_size=30) if roll == 0 else
                                     mot_row.map(lambda row: ",".join(str(v) for v in row)))
mmsi_line = st.one_of(
    st.builds(lambda who, m, s, text: f"{who} ({m:02d}:{s:02d}): {text}",
              st.one_of(st.integers(0, 9).map(lambda k: f"[Player{k}]"), st.text(max_size=8)),
              st.integers(0, 99), st.integers(0, 99), st.text(max_size=20)),
    st.text(max_size=30))


def mostly(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Files of the format (with absurd values), and now and then any bytes at all."""
    return st.integers(0, 4).flatmap(lambda roll: st.binary(max_size=200) if roll == 0 else strategy)


def lines(line_strategy, header: str = "") -> st.SearchStrategy[bytes]:
    text = st.lists(line_strategy, max_size=8).map(lambda rows: header + "\n".join(rows))
    return mostly(text.map(lambda t: t.encode("utf-8", "surrogatepass")))


def json_bytes(strategy) -> st.SearchStrategy[bytes]:
    return mostly(strategy.map(lambda v: json.dumps(v, allow_nan=True).encode()))


# ----------------------------------------------------------------------------- the property


def reads_or_refuses(read: Callable[[Path], object], folder: Path, files: dict[str, bytes]):
    """Write ``files`` under a fresh ``folder`` and read them: the result, or None for an InputError."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    try:
        result = read(folder)
    except InputError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message.strip(), f"an error must be one line, got {message!r}"
        if currently_in_test_context():
            event("refused with InputError")  # --hypothesis-show-statistics counts both outcomes
        return None
    if currently_in_test_context():
        event("read")
    return result


def check(read: Callable[[Path], object], files: dict[str, bytes]):
    with tempfile.TemporaryDirectory() as scratch:
        return reads_or_refuses(read, Path(scratch), files)


def survives_its_own_format(artifact, write, read, suffix: str) -> None:
    """What a reader accepted is written and read back unchanged (as its canonical JSON)."""
    def canonical(artifact) -> dict:
        body = artifact.to_json()
        body["meta"] = {k: v for k, v in body["meta"].items() if k != "source"}  # the file it was read from
        return body

    with tempfile.TemporaryDirectory() as scratch:
        path = write(artifact, Path(scratch) / f"again{suffix}")
        assert canonical(read(path)) == canonical(read(write(read(path), Path(scratch) / f"twice{suffix}")))


# ----------------------------------------------------------------------------- tracks, transcripts, links


@PROPERTY
@given(json_bytes(tracks_json))
def test_tracks_json(data):
    tracks = check(lambda folder: load_tracks(folder / "t.json", None), {"t.json": data})
    if tracks is not None:
        assert isinstance(tracks, Tracks)
        survives_its_own_format(tracks, lambda t, p: t.save(p), lambda p: load_json(Tracks, p), ".json")


@PROPERTY
@given(lines(mot_line))
def test_mot_csv(data):
    tracks = check(lambda folder: load_tracks(folder / "t.mot.csv", 25.0), {"t.mot.csv": data})
    if tracks is not None:
        survives_its_own_format(tracks, write_mot, lambda p: load_tracks(p, 25.0), ".csv")


@PROPERTY
@given(json_bytes(transcript_json))
@example(b'{"utterances": [{"start_s": 0, "end_s": 0, "speaker": "0\\u001e0", "text": "a\\u2028b"}]}')
def test_transcript_json(data):
    transcript = check(lambda folder: load_transcript(folder / "s.json"), {"s.json": data})
    if transcript is not None:
        assert isinstance(transcript, Transcript)
        survives_its_own_format(transcript, lambda t, p: t.save(p), load_transcript, ".json")
        survives_its_own_format(transcript, write_vtt, load_transcript, ".vtt")


@PROPERTY
@given(lines(rttm_line))
def test_rttm(data):
    transcript = check(lambda folder: load_transcript(folder / "s.rttm"), {"s.rttm": data})
    if transcript is not None:
        survives_its_own_format(transcript, write_rttm, load_transcript, ".rttm")


@PROPERTY
@given(mostly(cues.map(lambda blocks: ("WEBVTT\n\n" + "\n".join(blocks)).encode("utf-8", "surrogatepass"))))
def test_webvtt(data):
    transcript = check(lambda folder: load_transcript(folder / "s.vtt"), {"s.vtt": data})
    if transcript is not None:
        survives_its_own_format(transcript, write_vtt, load_transcript, ".vtt")


@PROPERTY
@given(mostly(cues.map(lambda blocks: "\n".join(blocks).encode("utf-8", "surrogatepass"))))
def test_srt(data):
    transcript = check(lambda folder: load_transcript(folder / "s.srt"), {"s.srt": data})
    if transcript is not None:
        survives_its_own_format(transcript, write_vtt, load_transcript, ".vtt")


@PROPERTY
@given(json_bytes(links_json))
def test_links_json(data):
    links = check(lambda folder: load_links(folder / "l.json"), {"l.json": data})
    if links is not None:
        assert isinstance(links, SpeakerLinks)
        survives_its_own_format(links, lambda x, p: x.save(p), load_links, ".json")


# ----------------------------------------------------------------------------- datasets and settings


@PROPERTY
@given(json_bytes(maybe(st.lists(tvqa_row, max_size=3))))
def test_tvqa_plus_annotations(data):
    loaded = check(lambda folder: load_tvqa_plus(folder / "tvqa_plus_val.json"), {"tvqa_plus_val.json": data})
    if loaded is not None:
        assert all(0 <= item.answer_index < len(item.options) for item in loaded.items)


@PROPERTY
@given(split=json_bytes(maybe(st.fixed_dictionaries({"test": maybe(st.lists(st.sampled_from(["g1_r1", "x", ""]),
                                                                                max_size=2))}))),
       meta=json_bytes(maybe(st.fixed_dictionaries({"r1": maybe(st.fixed_dictionaries(
           {"playerNames": maybe(st.lists(st.text(max_size=4), max_size=5))}))}))),
       transcript=lines(mmsi_line), labelled=lines(mmsi_line))
def test_mmsi_annotations(split, meta, transcript, labelled):
    files = {"split.json": split, "meta/g1.json": meta, "txt/g1_r1.txt": transcript,
             "txt_labeled/g1_r1.txt": labelled}
    loaded = check(lambda folder: load_mmsi(folder, "test"), files)
    if loaded is not None:
        assert all(0 <= item.answer_index < len(item.options) for item in loaded.items)


@PROPERTY
@given(json_bytes(keypoints_json))
def test_mmsi_keypoints(data):
    check(lambda folder: load_keypoints(folder / "g1_r1.npy"), {"g1_r1.json": data})


online_row = st.lists(st.one_of(st.text(max_size=40), st.sampled_from(
    ["clip1", "Player0: I am the seer. Player2: Are you sure? Whom is Player2 speaking to?", "Player0 is it.",
     "Player3"])), min_size=0, max_size=4)


@PROPERTY
@given(st.one_of(st.lists(online_row, max_size=4).map(
    lambda rows: "video_name,user,assistant\n" + "\n".join(",".join(json.dumps(c) for c in r) for r in rows)).map(
    lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=200)))
def test_onlinemmsi_annotations(data):
    loaded = check(load_onlinemmsi, {"STI/test/metadata.csv": data})
    if loaded is not None:
        assert all(0 <= item.answer_index < len(item.options) for item in loaded.items)


@PROPERTY
@given(st.one_of(
    st.dictionaries(st.sampled_from(["people", "speech", "link", "answer", "finetune", "other"]),
                    maybe(st.dictionaries(st.sampled_from(["detect_fps", "model", "num_frames", "rank", "x"]),
                                          json_values, max_size=3)), max_size=3)
    .map(lambda v: json.dumps(v, allow_nan=True).encode()),  # JSON is YAML
    st.binary(max_size=200)))
def test_config_file(data):
    check(lambda folder: load_config(folder / "c.yaml"), {"c.yaml": data})


def test_the_examples_are_fixed_and_bounded():
    assert PROPERTY.derandomize and PROPERTY.max_examples == EXAMPLES and PROPERTY.database is None


@pytest.mark.parametrize("reader, name, valid", [
    (lambda f: load_transcript(f / "s.vtt"), "s.vtt", b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Ann>Hello\n"),
    (lambda f: load_tracks(f / "t.json", None), "t.json",
     b'{"fps": 25, "tracks": [{"track_id": 1, "observations": [{"frame": 0, "xyxy": [1, 2, 3, 4]}]}]}'),
])
def test_the_property_tells_a_refusal_from_a_read(reader, name, valid):
    """Not vacuous: nonsense is refused with InputError (None) and a real file is read."""
    assert check(reader, {name: b"\xff\xfe nonsense"}) is None
    assert len(check(reader, {name: valid})) == 1
