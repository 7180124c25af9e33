"""Small file helpers: atomic writes and content hashes."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from socialpipe.pipeline.contracts.errors import SocialpipeError

_UMASK = os.umask(0)
os.umask(_UMASK)


def not_a_regular_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file, in words ("no such file", "is a folder", "is a fifo or device,
    not a file"), or None for a regular file. Reading a fifo would wait forever and ``/dev/zero`` never ends."""
    path = Path(path)
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder"
    if not path.is_file():
        return "is a fifo, socket or device, not a file"
    return None


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SocialpipeError(f"{path.parent}: no space left on its device to write {path.name} "
                                  f"({len(data):,} bytes); free some space there and run again "
                                  "(files written before are kept)") from None
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def temporary_sibling(path: str | Path) -> Path:
    """A fresh temporary path beside ``path`` for tools that write files themselves (ffmpeg);
    move it into place with ``os.replace`` when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)
    return Path(tmp)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_lines(text: str) -> list[str]:
    """Lines split at the line ends text files use (LF, CRLF, CR) only. ``str.splitlines`` also splits at
    characters such as U+001E or U+2028 inside a line, which would cut a subtitle or a speaker name."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
