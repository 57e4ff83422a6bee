"""The Redis value codec: header, round trip, caps, bounded decompression, corruption."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import zstandard

from accelerated.codec import HEADER_LEN, MAGIC, VERSION, Codec, train_dictionary
from accelerated.errors import CodecError
from accelerated.models import Chunk, Chunked, Page


def _chunked(n: int, text: str = "The court held that the statute applies. ") -> Chunked:
    doc = uuid.uuid4()
    return Chunked(
        document_id=doc,
        chunks=[
            Chunk(
                id=uuid.uuid5(doc, str(i)),
                document_id=doc,
                index=i,
                text=text * 20,
                start=i * 100,
                end=i * 100 + 90,
                page_start=1,
                page_end=2,
            )
            for i in range(n)
        ],
    )


def test_round_trip_with_header_and_real_compression() -> None:
    codec = Codec()
    value = _chunked(50)
    data = codec.encode(value)
    assert data[:2] == MAGIC and data[2] == VERSION and data[3] == 0
    assert len(data) < len(codec.dumps_json(value)) / 4
    assert codec.decode(data, Chunked) == value


def test_encode_refuses_values_over_the_cap() -> None:
    with pytest.raises(CodecError, match="cap"):
        Codec(max_value_bytes=200).encode(_chunked(50, text="x" * 7 + str(uuid.uuid4())))


def test_decompression_is_bounded_even_when_the_frame_lies() -> None:
    bomb = b"0" * (5 * 1024 * 1024)
    # A frame without a content size in its header, as a hostile writer would make it.
    body = zstandard.ZstdCompressor(write_content_size=False).compress(bomb)
    data = MAGIC + bytes((VERSION, 0)) + body
    with pytest.raises(CodecError, match="decompresses past"):
        Codec(max_decompressed_bytes=1024 * 1024).decompress(data)
    assert Codec().decompress(data) == bomb


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no codec header"),
        (b'{"plain": "json"}', "no codec header"),
        (MAGIC + bytes((99, 0)) + b"xx", "unknown codec version 99"),
        (MAGIC + bytes((VERSION, 0)) + b"not zstd at all", "corrupt"),
    ],
)
def test_foreign_or_corrupt_values_raise_codec_error(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        Codec().decode(data, Chunked)


def test_a_value_of_the_wrong_shape_is_a_codec_error() -> None:
    codec = Codec()
    with pytest.raises(CodecError, match="does not match"):
        codec.decode(codec.encode([Page(1, 0, 5)]), Chunked)


def test_trained_dictionary_is_flagged_and_required_to_read() -> None:
    samples = [
        Codec().dumps_json(_chunked(3, text=f"Sample {i} v. Other {i}. ")) for i in range(200)
    ]
    with_dict = Codec(dictionary=train_dictionary(list(samples), size=16 * 1024))
    value = _chunked(2, text="Sample 7 v. Other 7. ")
    data = with_dict.encode(value)
    assert data[3] == 1
    assert with_dict.decode(data, Chunked) == value
    with pytest.raises(CodecError, match="dictionary"):
        Codec().decode(data, Chunked)
    assert len(data) > HEADER_LEN


def test_a_frame_declaring_more_than_the_cap_is_refused_before_decompressing() -> None:
    body = zstandard.ZstdCompressor().compress(b"1" * (2 * 1024 * 1024))
    assert zstandard.frame_content_size(body) == 2 * 1024 * 1024
    with pytest.raises(CodecError, match="decompresses past"):
        Codec(max_decompressed_bytes=1024 * 1024).decompress(MAGIC + bytes((VERSION, 0)) + body)


def test_a_frame_whose_declared_size_is_wrong_is_corrupt() -> None:
    body = bytearray(zstandard.ZstdCompressor().compress(b"abc" * 1000))
    # Frame header: magic (4 bytes), descriptor, then a 2-byte content size stored
    # as size - 256 (RFC 8878); declare 2,000 bytes instead of 3,000.
    assert zstandard.get_frame_parameters(bytes(body)).content_size == 3000
    idx = bytes(body).find((3000 - 256).to_bytes(2, "little"))
    assert 0 < idx < 8
    body[idx : idx + 2] = (2000 - 256).to_bytes(2, "little")
    assert zstandard.frame_content_size(bytes(body)) == 2000
    with pytest.raises(CodecError, match="corrupt"):
        Codec().decompress(MAGIC + bytes((VERSION, 0)) + bytes(body))


def test_values_over_the_cap_spill_and_read_back(tmp_path: Path) -> None:
    from accelerated.codec import FLAG_SPILLED
    from accelerated.errors import ValueTooLarge
    from accelerated.spill import LocalSpill

    value = {"text": os.urandom(40_000).hex()}  # incompressible: ~80 KB
    small = Codec(max_value_bytes=10_000)
    with pytest.raises(ValueTooLarge, match="MAX_VALUE_BYTES"):
        small.encode(value)
    spill = LocalSpill(tmp_path / "spill")
    codec = Codec(max_value_bytes=10_000, spill=spill)
    frame = codec.encode(value)
    assert len(frame) < 100 and frame[3] & FLAG_SPILLED  # a reference, not the value
    assert codec.decode(frame, dict[str, str]) == value
    assert codec.encode(value) == frame  # content-addressed: written once
    assert len(list((tmp_path / "spill").iterdir())) == 1
    with pytest.raises(CodecError, match="no spill store"):
        small.decode(frame, dict[str, str])
    # A corrupt or missing file is a clear codec error, never a wrong value.
    path = next((tmp_path / "spill").iterdir())
    path.write_bytes(b"LP\x01\x00garbage")
    with pytest.raises(CodecError, match="does not match its reference"):
        codec.decode(frame, dict[str, str])
    path.unlink()
    with pytest.raises(CodecError, match="is gone"):
        codec.decode(frame, dict[str, str])
    tiny = Codec(max_value_bytes=10_000, spill=spill, max_spilled_bytes=20_000)
    with pytest.raises(ValueTooLarge):
        tiny.encode(value)
