"""Image references of catalogue items: resolved, and checked by their first bytes; never a rejection.

Pure but for reading a file's first 16 bytes. ``clean.py`` flags an item whose image is missing or
unreadable (``no_image``, ``image_unreadable``) and indexes it anyway; the storefront checks an
uploaded photo with :func:`looks_like_image`.

>>> looks_like_image(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8)), looks_like_image(b"<html>")
(True, False)
"""

from __future__ import annotations

from pathlib import Path


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes are a JPEG, PNG, GIF or WEBP signature."""
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def check_image(path: str | None, base_dir: str | Path | None = None) -> tuple[str | None, str | None]:
    """``(resolved_path_or_url, flag)`` for an image reference; never rejects.

    No reference gives ``(None, "no_image")``; an http(s) URL is kept as-is (not fetched);
    a relative path is resolved against ``base_dir``; a file that is missing, empty or not a
    JPEG/PNG/GIF/WEBP by its magic bytes gives ``(None, "image_unreadable")``.
    """
    if path is None or not str(path).strip():
        return None, "no_image"
    reference = str(path).strip()
    if reference.lower().startswith(("http://", "https://")):
        return reference, None
    resolved = Path(reference)
    if not resolved.is_absolute() and base_dir is not None:
        resolved = Path(base_dir) / resolved
    try:
        with open(resolved, "rb") as f:
            head = f.read(16)
    except OSError:
        return None, "image_unreadable"
    return (str(resolved), None) if looks_like_image(head) else (None, "image_unreadable")
