"""The run folder: one artifact file per stage, exports beside them, and a manifest.

``manifest.json`` records the video's hash, library versions, and per stage the key
(a hash of its inputs and settings), where its output came from, and how long it took.
A stage whose key is unchanged and whose files exist is skipped. A folder holding a
run of a different video is never written into.
"""

from __future__ import annotations

import fcntl
import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from socialpipe.pipeline import __version__
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import sha256_file, sha256_text, write_text_atomic
from socialpipe.pipeline.run.stage_table import downstream_of, spec_of

MANIFEST = "manifest.json"
LOCK = ".socialpipe.lock"
DEFAULT_RUNS_DIR = Path("socialpipe_runs")
_REPORTED_PACKAGES = ("torch", "transformers", "whisperx", "pyannote.audio", "ultralytics", "facenet-pytorch",
                      "decord", "numpy")


def stage_key(*parts: Any) -> str:
    """A stable hash of a stage's inputs and settings."""
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))[:16]


def default_run_dir(video_path: Path, video_sha256: str) -> Path:
    """``socialpipe_runs/<video stem>-<hash prefix>``: a different video never lands in the same folder. A stem
    longer than 100 characters is shortened (file systems allow 255 bytes a name)."""
    stem = video_path.stem
    while len(stem.encode("utf-8")) > 100:
        stem = stem[:-1]
    return DEFAULT_RUNS_DIR / f"{stem}-{video_sha256[:8]}"


def edited_artifact(folder: Path, manifest: dict[str, Any], stage: str) -> bool:
    """Whether the stage's artifact in ``folder`` differs from the file the run wrote (sha256 in the manifest;
    runs made before hashes were recorded are taken as written)."""
    entry = (manifest.get("stages") or {}).get(stage) or {}
    recorded, path = entry.get("sha256"), folder / spec_of(stage).file
    return isinstance(recorded, str) and path.is_file() and sha256_file(path) != recorded


def _run_files() -> set[str]:
    """Every file name a run folder can hold (artifacts, exports, pictures, previews, temporary files aside)."""
    from socialpipe.pipeline.run.stage_table import STAGE_TABLE, VIDEO

    from socialpipe.pipeline.contracts.outputs import OUTPUT_FORMATS, OUTPUT_STEM

    return {MANIFEST, "config.yaml", "preview.mp4", "contact_sheet.png",
            *(name for spec in (VIDEO, *STAGE_TABLE) for name in spec.files),
            *(f"{OUTPUT_STEM}.{kind}" for kind in OUTPUT_FORMATS)}


def _same_video_or_refuse(path: Path, video_path: Path, video_sha256: str) -> None:
    """A run folder without its manifest is taken up again only for the video its video.json names (that
    file, by sha256), or when video.json is gone too."""
    info = path / "video.json"
    if not info.is_file():
        return
    try:
        named = Path(json.loads(info.read_text(encoding="utf-8"))["path"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return  # unreadable: it is written again
    if named.is_file() and sha256_file(named) == video_sha256:
        return
    if named.resolve() != video_path.resolve():
        raise InputError(f"--out {path}: lost its {MANIFEST} and holds the run of {named}, not {video_path}; "
                         "expected a new folder, or this run's own video")


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "socialpipe": __version__}
    for name in _REPORTED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


@dataclass
class RunFolder:
    """An open run folder. While open it holds an advisory lock (``.socialpipe.lock``), so a second run
    on the same folder stops at once with a clear message instead of mixing its files with ours."""

    path: Path
    manifest: dict[str, Any]
    lock: Any = None  # the open lock file

    @classmethod
    def open(cls, path: str | Path, video_path: Path, video_sha256: str) -> RunFolder:
        """Open (or create) the run folder for this video, refusing one that holds anything else."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(f"--out {path}: is a file; expected a folder for the run's artifacts")
        fresh = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = open(path / LOCK, "a+b")  # noqa: SIM115 (held until close())
        except OSError as exc:
            raise InputError(f"--out {path}: cannot write there ({exc.strerror}); expected a folder socialpipe can "
                             "create and write") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise InputError(f"--out {path}: another socialpipe run is writing this folder now; wait for it to "
                             "finish, or choose another --out") from None
        try:
            manifest = cls._manifest(path, video_path, video_sha256, fresh)
        except BaseException:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
            raise
        return cls(path, manifest, lock)

    @staticmethod
    def _manifest(path: Path, video_path: Path, video_sha256: str, fresh: bool) -> dict[str, Any]:
        manifest_path = path / MANIFEST
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
                recorded = manifest["video"]["sha256"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
                raise InputError(f"{manifest_path}: unreadable run manifest; choose another --out folder") from None
            if recorded != video_sha256:
                raise InputError(
                    f"--out {path}: holds the run of another video ({manifest['video'].get('path')}, "
                    f"sha256 {recorded[:12]}); expected a new folder or one made for {video_path}")
            return manifest
        manifest = {"video": {"path": str(video_path), "sha256": video_sha256}, "stages": {}}
        present = {p.name for p in path.iterdir()} - {LOCK} if not fresh else set()
        if present and present <= _run_files():  # a run whose manifest was deleted: its stages are made again
            _same_video_or_refuse(path, video_path, video_sha256)
            manifest["rebuilt"] = f"{MANIFEST} was missing: every stage was made again"
        elif present:
            raise InputError(f"--out {path}: is a non-empty folder that is not a socialpipe run; "
                             "expected a new or empty folder")
        return manifest

    def close(self) -> None:
        """Release the folder for other runs."""
        if self.lock is not None:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.lock.close()
            self.lock = None

    def file(self, stage: str) -> Path:
        return self.path / spec_of(stage).file

    def is_current(self, stage: str, key: str) -> bool:
        """The stage's artifact was made from these inputs and settings and is still the file the run wrote
        (its sha256 as recorded: a file edited by hand is recomputed, never trusted)."""
        entry = self.manifest["stages"].get(stage)
        return bool(entry and entry.get("key") == key and self.file(stage).exists() and not self.edited(stage))

    def edited(self, stage: str) -> bool:
        """The stage's artifact is there but is not the file the run wrote (its sha256 differs from the one
        recorded when it was written)."""
        return edited_artifact(self.path, self.manifest, stage)

    def key_of(self, stage: str) -> str | None:
        return self.manifest["stages"].get(stage, {}).get("key")

    def record(self, stage: str, key: str, source: str, seconds: float, inputs: dict | None = None) -> None:
        """Note a finished stage and save the manifest (after the stage's files are in place). Stages that
        read this one and were made from an earlier version of it are removed: a stale file never looks
        current, and the manifest says what was removed and why."""
        spec = spec_of(stage)
        changed = self.key_of(stage) not in (None, key)
        self.manifest["stages"][stage] = {
            "key": key, "source": source, "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inputs": inputs or {},
            "files": spec.files, "sha256": sha256_file(self.file(stage)),
        }
        if changed:
            self._remove_downstream(stage)
        self.manifest["socialpipe_version"] = __version__
        self.manifest["versions"] = _versions()
        write_text_atomic(self.path / MANIFEST, json.dumps(self.manifest, indent=1) + "\n")

    def _remove_downstream(self, stage: str) -> None:
        for later in downstream_of(stage):
            entry = self.manifest["stages"].pop(later.name, None)
            if entry is None:
                continue
            for name in later.files:
                (self.path / name).unlink(missing_ok=True)
            self.manifest.setdefault("removed", []).append(
                {"stage": later.name, "files": later.files, "because": f"its input {stage} changed",
                 "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
