"""Downloading generated images from the fake server, and fitting them under an upload limit."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from core.images import (
    DownloadedImage,
    ImageDownloadError,
    download_image,
    fit_to_limit,
    fit_to_limit_async,
    from_bytes,
)
from tests.fakes.doubao_server import FakeDoubao, make_png

MIB = 1024 * 1024
CAP = 20 * MIB  # the size cap where a test does not try it
SECRET_QUERY = "X-Tos-Signature=very-secret-signature&X-Tos-Expires=60"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDoubao]:
    async with FakeDoubao() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def expect_download_error(session: aiohttp.ClientSession, url: str, *, max_bytes: int = CAP) -> str:
    with pytest.raises(ImageDownloadError) as info:
        await download_image(session, url, max_bytes=max_bytes)
    message = str(info.value)
    assert "very-secret-signature" not in message
    assert "?" not in message
    return message


def noisy_png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    img = Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


# --- download --------------------------------------------------------------------------------------------


async def test_download_returns_the_exact_bytes(fake: FakeDoubao, session: aiohttp.ClientSession) -> None:
    url = fake.image_url("default", query=SECRET_QUERY)

    image = await download_image(session, url, max_bytes=CAP)

    assert image == DownloadedImage(data=fake.image_bytes("default"), content_type="image/png", filename="doubao.png")
    assert fake.downloads == ["default"]


async def test_download_sniffs_octet_stream(fake: FakeDoubao, session: aiohttp.ClientSession) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(jpeg, format="JPEG")
    url = fake.serve_file("blob", jpeg.getvalue(), content_type="application/octet-stream")

    image = await download_image(session, url, max_bytes=CAP)

    assert image.content_type == "image/jpeg"
    assert image.filename == "doubao.jpg"


async def test_download_trusts_magic_bytes_over_declared_image_type(
    fake: FakeDoubao, session: aiohttp.ClientSession
) -> None:
    url = fake.serve_file("mislabelled", make_png(3), content_type="image/jpeg")

    image = await download_image(session, url, max_bytes=CAP)

    assert image.content_type == "image/png"


async def test_download_rejects_octet_stream_that_is_not_an_image(
    fake: FakeDoubao, session: aiohttp.ClientSession
) -> None:
    url = fake.serve_file("blob", b"PK\x03\x04 a zip file", content_type=None)

    message = await expect_download_error(session, url + "?" + SECRET_QUERY)

    assert "not a recognised image" in message


async def test_download_rejects_wrong_content_type(fake: FakeDoubao, session: aiohttp.ClientSession) -> None:
    url = fake.serve_file("page", b"<html>login</html>", content_type="text/html")

    message = await expect_download_error(session, url + "?" + SECRET_QUERY)

    assert "text/html" in message


async def test_download_rejects_declared_length_over_max(fake: FakeDoubao, session: aiohttp.ClientSession) -> None:
    url = fake.serve_file("big", make_png(1) + os.urandom(50_000))

    message = await expect_download_error(session, url, max_bytes=10_000)

    assert "larger than 10000" in message
    assert "50" in message  # the declared length is reported


async def test_download_stops_reading_chunked_body_over_max(fake: FakeDoubao, session: aiohttp.ClientSession) -> None:
    url = fake.serve_file("stream", make_png(2) + os.urandom(400_000), chunked=True)

    message = await expect_download_error(session, url, max_bytes=100_000)

    assert "larger than 100000" in message


async def test_download_accepts_chunked_body_under_max(fake: FakeDoubao, session: aiohttp.ClientSession) -> None:
    data = make_png(4, size=(300, 300))
    url = fake.serve_file("stream", data, chunked=True)

    image = await download_image(session, url, max_bytes=len(data))

    assert image.data == data


async def test_download_404(fake: FakeDoubao, session: aiohttp.ClientSession) -> None:
    message = await expect_download_error(session, fake.image_url("missing", query=SECRET_QUERY))

    assert "404" in message
    assert "/files/missing" in message


def download_retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name == "core.images" and "retrying once" in r.getMessage())


# aiohttp itself resends an idempotent request once when the server drops it, so one of our attempts
# may cost two drops; the tests count our retries from the log instead of counting requests.
async def test_download_retries_once_on_dropped_connections(
    fake: FakeDoubao, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    url = fake.serve_file("flaky", make_png(5), drop_first=2)

    image = await download_image(session, url, max_bytes=CAP)

    assert image.data == fake.image_bytes("flaky")
    assert download_retries(caplog) == 1
    assert fake.downloads == ["flaky"] * 3


async def test_download_gives_up_after_the_retry_fails(
    fake: FakeDoubao, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    url = fake.serve_file("dead", make_png(6), drop_first=100)

    message = await expect_download_error(session, url + "?" + SECRET_QUERY)

    assert "ServerDisconnectedError" in message
    assert download_retries(caplog) == 1
    assert 2 <= len(fake.downloads) <= 4


async def test_download_connection_refused(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    message = await expect_download_error(session, f"http://127.0.0.1:{port}/x.png?{SECRET_QUERY}")

    assert "could not download" in message


async def test_download_invalid_url(session: aiohttp.ClientSession) -> None:
    await expect_download_error(session, f"ftp://example.invalid/x.png?{SECRET_QUERY}")


def test_from_bytes() -> None:
    assert from_bytes(make_png(1)).filename == "doubao.png"
    with pytest.raises(ImageDownloadError):
        from_bytes(b"<html>")


# --- fit_to_limit ----------------------------------------------------------------------------------------


def test_small_image_is_unchanged() -> None:
    image = from_bytes(make_png(1))
    assert fit_to_limit(image, len(image.data)) is image


@pytest.fixture(scope="module")
def big_noisy_png() -> bytes:
    data = noisy_png((1500, 1500))
    assert len(data) > 5 * MIB
    return data


def test_big_noisy_png_fits_under_one_mib(big_noisy_png: bytes) -> None:
    fitted = fit_to_limit(from_bytes(big_noisy_png), MIB)

    assert len(fitted.data) <= MIB
    assert fitted.content_type == "image/jpeg"
    assert fitted.filename == "doubao.jpg"
    with Image.open(io.BytesIO(fitted.data)) as decoded:
        assert decoded.format == "JPEG"
        decoded.load()


def test_downscales_when_quality_is_not_enough(big_noisy_png: bytes) -> None:
    fitted = fit_to_limit(from_bytes(big_noisy_png), MIB // 2)

    assert len(fitted.data) <= MIB // 2
    with Image.open(io.BytesIO(fitted.data)) as decoded:
        decoded.load()
        assert decoded.width < 1500
        assert decoded.width == decoded.height  # aspect ratio kept


def test_lowering_quality_alone_keeps_the_size() -> None:
    image = from_bytes(noisy_png((500, 500)))
    limit = len(image.data) // 2

    fitted = fit_to_limit(image, limit)

    assert len(fitted.data) <= limit
    with Image.open(io.BytesIO(fitted.data)) as decoded:
        assert decoded.size == (500, 500)


def test_transparency_is_flattened_onto_white() -> None:
    img = Image.frombytes("RGBA", (400, 400), os.urandom(400 * 400 * 4))
    img.paste((0, 0, 0, 0), (0, 0, 200, 400))  # left half fully transparent (black underneath)
    out = io.BytesIO()
    img.save(out, format="PNG")
    image = from_bytes(out.getvalue())

    fitted = fit_to_limit(image, len(image.data) // 2)

    with Image.open(io.BytesIO(fitted.data)) as decoded:
        assert decoded.mode == "RGB"
        r, g, b = decoded.convert("RGB").getpixel((20, decoded.height // 2))  # type: ignore[misc]
        assert min(r, g, b) > 240


def test_impossible_limit_raises() -> None:
    image = from_bytes(noisy_png((300, 300)))

    with pytest.raises(ImageDownloadError, match="cannot be made small enough"):
        fit_to_limit(image, 200)


def test_undecodable_data_raises() -> None:
    image = DownloadedImage(data=b"\x89PNG\r\n\x1a\n" + b"garbage" * 100, content_type="image/png", filename="x.png")

    with pytest.raises(ImageDownloadError, match="could not be decoded"):
        fit_to_limit(image, 100)


async def test_fit_to_limit_async() -> None:
    image = from_bytes(noisy_png((400, 400)))
    limit = len(image.data) // 3

    fitted = await fit_to_limit_async(image, limit)

    assert len(fitted.data) <= limit
    assert fitted.content_type == "image/jpeg"
    small = from_bytes(make_png(1))
    assert await fit_to_limit_async(small, MIB) is small
