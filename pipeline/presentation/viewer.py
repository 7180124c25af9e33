"""``socialpipe view``: a run folder as a page in the browser, built from its artifacts only.

The page (``viewer_assets/``: one HTML template, one script, one style sheet, no library and no
CDN) shows the video with every track's box, id, linked name and speaking marker drawn over it in
sync, the transcript following the video, a timeline with a lane per voice and per track (shot
cuts marked), each voice's link with its evidence, and the answer with its option scores and
attention heatmaps.

``serve`` answers on localhost: the page, the video (with HTTP range requests, so the browser can
seek) and the heatmap. ``export`` writes one self-contained HTML file that plays the video from
a path relative to the file. Neither writes into the run folder.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from socialpipe.pipeline.media.drawing import PALETTE
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import write_text_atomic
from socialpipe.pipeline.presentation.report import RunContents, evidence_line, load_run, track_names
from socialpipe.pipeline.run.stage_table import HEATMAP_FILE, STAGE_TABLE

_CHUNK_BYTES = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


# ----------------------------------------------------------------------------- the page's data


def view_data(run: RunContents) -> dict[str, Any]:
    """Everything the page shows, in compact columns (a 1 h run stays a few MB)."""
    video = run.video
    names = track_names(run.links)
    data: dict[str, Any] = {
        "run": str(run.path),
        "video": {"file": Path(video.path).name, "fps": video.fps, "frame_count": video.frame_count,
                  "width": video.width, "height": video.height, "duration_s": video.duration_s},
        "stages": {name: entry.get("source") for name, entry in run.manifest.get("stages", {}).items()},
        "missing": missing_parts(run),
        "tracks": [], "voices": [], "utterances": [], "links": [], "answer": None, "shots": [],
        "palette": [list(colour) for colour in PALETTE],
    }
    if run.tracks is not None:
        for tid in run.tracks.track_ids:
            track = run.tracks.for_track(tid)
            frames = track.frame_index
            breaks = np.flatnonzero(np.diff(frames) != 1) + 1
            spans = [[int(run_[0]), int(run_[-1])] for run_ in np.split(frames, breaks)] if len(frames) else []
            data["tracks"].append({
                "id": tid, "kind": run.tracks.kinds[tid], "name": names.get(tid),
                "frames": frames.tolist(), "spans": spans,
                "boxes": np.round(track.xyxy).astype(int).ravel().tolist(),  # x1, y1, x2, y2 per frame
                "scores": _speaking_scores(run, tid),
            })
        data["shots"] = list(run.tracks.meta.get("shots", []))
    if run.transcript is not None:
        data["voices"] = run.transcript.speakers
        for u in run.transcript.utterances:
            name = run.links.label_of(u.speaker, u.start_s, u.end_s) if run.links else u.speaker
            data["utterances"].append({"start": round(u.start_s, 3), "end": round(u.end_s, 3), "voice": u.speaker,
                                       "name": name, "text": u.text})
    if run.links is not None:
        for link in run.links.links:
            evidence = dict(link.evidence)
            data["links"].append({"voice": link.voice, "name": link.name, "person": run.links.person_label(link.voice),
                                  "track": link.track_id,
                                  "tracks": list(link.track_ids), "person_id": link.person_id,
                                  "confidence": round(link.confidence, 4), "decision": evidence.get("decision"),
                                  "evidence": evidence_line(link) if evidence.get("candidates") else None,
                                  "candidates": evidence.get("candidates", {})})
    if run.answer is not None:
        answer = run.answer
        diagnostics = answer.diagnostics
        data["answer"] = {
            "question": answer.question, "text": answer.text, "options": list(answer.options),
            "chosen": answer.chosen_option, "scores": None if answer.option_scores is None else list(answer.option_scores),
            "model": answer.model, "variant": diagnostics.get("variant"),
            "alignment": {k: diagnostics[k] for k in ("attn_max_before", "attn_max_after", "attn_mean_before",
                                                      "attn_mean_after") if k in diagnostics},
            "heatmap_speaker": diagnostics.get("heatmap", {}).get("speaker"),
        }
    return data


def _speaking_scores(run: RunContents, track_id: int) -> list | None:
    """Per-frame speaking scores of a track, ``[[frame, probability], ...]``, when the run's link stage made them."""
    scores = run.links.speaking_scores.get(track_id) if run.links is not None else None
    return None if scores is None else [[frame, probability] for frame, probability in scores]


def missing_parts(run: RunContents) -> list[str]:
    """What a run that stopped early, or lost a file, does not have, in words."""
    missing = []
    present = {"people": run.tracks, "speech": run.transcript, "link": run.links, "answer": run.answer}
    for spec in STAGE_TABLE:
        if present[spec.name] is None:
            missing.append(f"no {spec.name} stage output ({spec.file})")
    video, why_not = run.video_file
    if video is None:
        missing.append(f"{why_not}: boxes and timeline only")
    if run.answer is not None and not (run.path / HEATMAP_FILE).is_file():
        missing.append(f"no attention heatmap ({HEATMAP_FILE}: the align variant draws one)")
    return missing


# ----------------------------------------------------------------------------- the page


def embedded_json(value: Any) -> str:
    """JSON that cannot leave the element it is written into: every ``<``, ``>`` and ``&`` is a ``\\u`` escape,
    so no string in it can close the script element or open a comment or tag (``</script>``,
    ``<!--<script``); JSON.parse reads it back unchanged."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def content_security_policy(script: str) -> str:
    """The page's policy: only its own script runs (by its hash; no inline handler, no other script), nothing is
    fetched but the run's video and heatmap, and no form or base URL can be set."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
            "img-src 'self' data:; media-src 'self' file: blob:; base-uri 'none'; form-action 'none'")


def render_page(data: dict[str, Any], video_src: str, heatmap_src: str | None) -> tuple[str, str]:
    """The page as one HTML string (template, style and script inlined, the data embedded as JSON that cannot
    leave its element) and its Content-Security-Policy, also written into the page."""
    assets = resources.files("socialpipe.pipeline.presentation").joinpath("viewer_assets")
    template = assets.joinpath("view.html").read_text(encoding="utf-8")
    script = "\n" + assets.joinpath("view.js").read_text(encoding="utf-8") + "\n"
    policy = content_security_policy(script)
    parts = {"title": html.escape(f"socialpipe: {Path(data['run']).name}"), "policy": html.escape(policy),
             "style": assets.joinpath("view.css").read_text(encoding="utf-8"), "script": script,
             "data": embedded_json({**data, "video_src": video_src, "heatmap_src": heatmap_src})}
    # one pass: text put in is never searched for placeholders again
    return re.sub(r"\{\{(\w+)\}\}", lambda match: parts[match[1]], template), policy


def export(run_dir: str | Path, out_file: str | Path) -> Path:
    """One self-contained HTML page of the run; it plays the video from a path relative to the page."""
    run = load_run(run_dir)
    out_file = Path(out_file)
    if out_file.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--export {out_file}: expected a file name ending in .html")
    if out_file.is_dir():
        raise InputError(f"--export {out_file}: is a folder; expected an .html file to write")
    video, _ = run.video_file  # only the run's own video is linked
    video_src = "" if video is None else Path(os.path.relpath(video.resolve(), out_file.resolve().parent)).as_posix()
    heatmap = run.path / HEATMAP_FILE
    heatmap_src = ("data:image/png;base64," + base64.b64encode(heatmap.read_bytes()).decode()
                   if run.answer is not None and heatmap.is_file() else None)
    page, _ = render_page(view_data(run), video_src, heatmap_src)
    try:
        return write_text_atomic(out_file, page)
    except OSError as exc:
        raise InputError(f"--export {out_file}: cannot write there ({exc.strerror}); expected a writable .html path") \
            from None


# ----------------------------------------------------------------------------- the server


@dataclass
class Viewer:
    """A running viewer: its address and the server to stop."""

    url: str
    server: ThreadingHTTPServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(page: bytes, policy: str, files: dict[str, tuple[Path, str]], allowed_hosts: set[str]):
    """The request handler of one served run: the page, the files in ``files``, each only to a request whose
    Host header is in ``allowed_hosts`` (filled in once the port is known); every response with ``policy``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.headers.get("Host", "").strip().lower() not in allowed_hosts:
                self._send(HTTPStatus.FORBIDDEN, "text/plain", b"this viewer answers only requests to its own address")
                return
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", page)
            elif path in files and files[path][0].is_file():
                self._send_file(*files[path])
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

        def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self._common_headers()
            self.end_headers()
            self.wfile.write(body)

        def _common_headers(self) -> None:
            self.send_header("Content-Security-Policy", policy)
            self.send_header("X-Content-Type-Options", "nosniff")

        def _send_file(self, path: Path, kind: str) -> None:
            """The file, or the byte range the browser asks for (video seeking needs ranges)."""
            size = path.stat().st_size
            first, last = 0, size - 1
            match = _RANGE.match(self.headers.get("Range", "").strip())
            ranged = bool(match and (match[1] or match[2]))
            if ranged:
                first, last = (int(match[1]), min(int(match[2] or size - 1), size - 1)) if match[1] else \
                    (max(size - int(match[2]), 0), size - 1)
                if not 0 <= first <= last < size:
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.end_headers()
                    return
            self.send_response(HTTPStatus.PARTIAL_CONTENT if ranged else HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self._common_headers()
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(last - first + 1))
            if ranged:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            with open(path, "rb") as handle:
                handle.seek(first)
                left = last - first + 1
                while left > 0:
                    chunk = handle.read(min(_CHUNK_BYTES, left))
                    if not chunk:
                        break
                    try:
                        self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):  # the browser stopped reading: it seeks
                        return
                    left -= len(chunk)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass  # the page's requests are not news
    return Handler


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 0) -> Viewer:
    """Serve the run on ``host:port`` (0: any free port) in a background thread; reads only.

    It answers three paths, the page, the run's video (only the file whose sha256 the run recorded) and the
    heatmap, and only to requests whose Host header names this server by the address it listens on or by
    ``localhost`` (a page elsewhere that reaches it through DNS rebinding names its own host and is refused).
    Every response carries the page's Content-Security-Policy."""
    run = load_run(run_dir)
    video, _ = run.video_file
    heatmap = run.path / HEATMAP_FILE
    has_heatmap = run.answer is not None and heatmap.is_file()
    page, policy = render_page(view_data(run), "video" if video is not None else "",
                               HEATMAP_FILE if has_heatmap else None)
    page = page.encode("utf-8")
    files = {} if video is None else {"/video": (video, "video/mp4")}
    if has_heatmap:
        files["/" + HEATMAP_FILE] = (heatmap, "image/png")
    allowed_hosts: set[str] = set()
    Handler = _handler(page, policy, files, allowed_hosts)
    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    server.daemon_threads = True
    bound = server.server_address[1]
    named = f"[{host}]" if ":" in host and not host.startswith("[") else host  # an IPv6 address, as browsers send it
    allowed_hosts.update(f"{name}:{bound}" for name in {named.lower(), "localhost", "127.0.0.1", "[::1]"})
    thread = threading.Thread(target=server.serve_forever, name="socialpipe-view", daemon=True)
    thread.start()
    return Viewer(f"http://{host}:{server.server_address[1]}/", server, thread)
