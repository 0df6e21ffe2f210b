"""Fetch a generated image (size-capped) and shrink it to fit an upload limit."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field

import aiohttp
from PIL import Image, ImageOps, UnidentifiedImageError
from yarl import URL

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_FILENAME_STEM = "doubao"
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
_JPEG_QUALITIES = (90, 85, 80, 75, 70, 65, 60)
_DOWNSCALE_QUALITY = 80
_DOWNSCALE_STEP = 0.8
_MIN_SIDE = 64


class ImageDownloadError(Exception):
    """The image could not be fetched or fitted. The message never contains a URL's query string."""


@dataclass(frozen=True)
class DownloadedImage:
    data: bytes = field(repr=False)
    content_type: str
    filename: str


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type told by the magic bytes, for the formats Discord shows inline."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def _filename(content_type: str) -> str:
    return _FILENAME_STEM + _EXTENSIONS.get(content_type, ".img")


def from_bytes(data: bytes) -> DownloadedImage:
    """Wrap image bytes that came inline (base64) rather than by URL."""
    content_type = sniff_image_type(data)
    if content_type is None:
        raise ImageDownloadError("image data is not PNG, JPEG, WEBP or GIF")
    return DownloadedImage(data=data, content_type=content_type, filename=_filename(content_type))


def _safe_url(url: str) -> str:
    """The URL without query or fragment (signed URLs carry credentials there)."""
    try:
        return str(URL(url).with_query(None).with_fragment(None).with_user(None))
    except (ValueError, TypeError):
        return "<invalid URL>"


async def download_image(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    timeout: float = 60.0,  # noqa: ASYNC109 - becomes aiohttp's ClientTimeout, per attempt
) -> DownloadedImage:
    """GET an image, refusing anything that is not an image or is larger than `max_bytes`.

    A connection error is retried once: result URLs are fresh and the first hop sometimes drops.
    """
    safe = _safe_url(url)
    for attempt in (1, 2):
        try:
            return await _download_once(session, url, safe, max_bytes, aiohttp.ClientTimeout(total=timeout))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            if isinstance(exc, TimeoutError):
                raise ImageDownloadError(f"timed out downloading {safe}") from None
            if attempt == 2:
                raise ImageDownloadError(f"could not download {safe} ({type(exc).__name__})") from None
            log.warning("Download of %s failed (%s); retrying once", safe, type(exc).__name__)
        except TimeoutError:
            raise ImageDownloadError(f"timed out downloading {safe}") from None
        except aiohttp.InvalidURL:
            raise ImageDownloadError(f"invalid image URL {safe}") from None
        except aiohttp.ClientError as exc:
            raise ImageDownloadError(f"could not download {safe} ({type(exc).__name__})") from None
    raise AssertionError("unreachable")  # pragma: no cover


async def _download_once(
    session: aiohttp.ClientSession, url: str, safe: str, max_bytes: int, client_timeout: aiohttp.ClientTimeout
) -> DownloadedImage:
    async with session.get(url, timeout=client_timeout) as resp:
        if not 200 <= resp.status < 300:
            raise ImageDownloadError(f"HTTP {resp.status} downloading {safe}")
        declared = resp.content_type if "Content-Type" in resp.headers else None
        if declared not in (None, "application/octet-stream") and not declared.startswith("image/"):
            raise ImageDownloadError(f"{safe} is not an image ({declared})")
        if resp.content_length is not None and resp.content_length > max_bytes:
            raise ImageDownloadError(f"image is larger than {max_bytes} bytes ({resp.content_length})")
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            buf += chunk
            if len(buf) > max_bytes:
                raise ImageDownloadError(f"image is larger than {max_bytes} bytes")
    data = bytes(buf)
    if not data:
        raise ImageDownloadError(f"empty body downloading {safe}")
    sniffed = sniff_image_type(data)
    if sniffed is None and declared in (None, "application/octet-stream"):
        raise ImageDownloadError(f"{safe} is not a recognised image")
    content_type = sniffed or declared
    assert content_type is not None
    log.debug("Downloaded %s: %d bytes, %s", safe, len(data), content_type)
    return DownloadedImage(data=data, content_type=content_type, filename=_filename(content_type))


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten onto white: JPEG has no alpha, and black behind transparency looks broken."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def fit_to_limit(image: DownloadedImage, limit: int) -> DownloadedImage:
    """Return `image` unchanged when it fits, else a JPEG of at most `limit` bytes.

    CPU-bound: call it through `fit_to_limit_async` (or `asyncio.to_thread`) from async code.
    """
    if len(image.data) <= limit:
        return image
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            opened.load()
            img = _to_rgb(ImageOps.exif_transpose(opened))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ImageDownloadError("image could not be decoded") from None
    stem = image.filename.rsplit(".", 1)[0] or _FILENAME_STEM
    for quality in _JPEG_QUALITIES:
        data = _encode_jpeg(img, quality)
        if len(data) <= limit:
            return _fitted(image, data, stem, f"quality {quality}")
    width, height = img.size
    while True:
        width, height = int(width * _DOWNSCALE_STEP), int(height * _DOWNSCALE_STEP)
        if min(width, height) < _MIN_SIDE:
            raise ImageDownloadError("image cannot be made small enough")
        data = _encode_jpeg(img.resize((width, height), Image.Resampling.LANCZOS), _DOWNSCALE_QUALITY)
        if len(data) <= limit:
            return _fitted(image, data, stem, f"{width}x{height}")


def _fitted(original: DownloadedImage, data: bytes, stem: str, how: str) -> DownloadedImage:
    log.debug("Re-encoded image from %d to %d bytes (%s)", len(original.data), len(data), how)
    return DownloadedImage(data=data, content_type="image/jpeg", filename=f"{stem}.jpg")


async def fit_to_limit_async(image: DownloadedImage, limit: int) -> DownloadedImage:
    """`fit_to_limit` in a worker thread, so the event loop keeps serving Discord."""
    if len(image.data) <= limit:
        return image
    return await asyncio.to_thread(fit_to_limit, image, limit)
