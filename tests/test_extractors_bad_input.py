"""Bad input: each case fails with its own DocumentError code and a readable message,
and the extractor keeps working for the next, good file."""

from __future__ import annotations

import hashlib
import io
import random
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pypdf
import pytest

from accelerated.blobs import LocalBlobReader
from accelerated.errors import DocumentError
from accelerated.extractors import extract_bytes
from accelerated.models import SourceRef
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import extract as extract_stage
from tests.test_extract import NoCanonical

GOOD_PDF = "courtlistener/opinions_pdf/8thCircuit-071306U.pdf"


def noise(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def encrypted_pdf(corpus: Path) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(corpus / GOOD_PDF))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def zip_bomb_docx() -> bytes:
    """A DOCX-shaped ZIP whose body inflates to 300 MB of zeros (about 300 KB packed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        with package.open("word/document.xml", "w", force_zip64=True) as body:
            chunk = b"\0" * (1 << 20)
            for _ in range(300):
                body.write(chunk)
    return out.getvalue()


def many_parts_docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr("word/document.xml", "<w:document/>")
        for i in range(10_001):
            package.writestr(f"word/media/p{i}.bin", b"")
    return out.getvalue()


# (file name, bytes builder, expected code, words the message must contain)
CASES: list[tuple[str, str, Callable[[Path], bytes], str, str]] = [
    ("empty", "empty.pdf", lambda c: b"", "empty", "empty"),
    ("empty_txt", "notes.txt", lambda c: b"  \n\n\t ", "empty", "no readable text"),
    ("encrypted", "sealed.pdf", encrypted_pdf, "encrypted", "password"),
    ("corrupt_pdf", "broken.pdf", lambda c: b"%PDF-1.7\n" + noise(5000), "corrupt", "damaged"),
    (
        "truncated_pdf",
        "cut.pdf",
        lambda c: (c / GOOD_PDF).read_bytes()[:4000],
        "corrupt",
        "damaged",
    ),
    ("garbage_pdf", "scan.pdf", lambda c: noise(5000), "corrupt", "not one"),
    (
        "html_named_pdf",
        "download.pdf",
        lambda c: b"<html><body><h1>404 Not Found</h1></body></html>",
        "corrupt",
        "web page",
    ),
    ("binary_txt", "notes.txt", lambda c: noise(3000), "not_text", "not readable text"),
    (
        "controls_txt",
        "notes.txt",
        lambda c: ("Court order \x01\x02\x03\x04\x05\x06 " * 40).encode("cp1252") + b"\xe9",
        "not_text",
        "control characters",
    ),
    (
        "nul_txt",
        "memo.txt",
        lambda c: b"MEMORANDUM\x00\x00\x00 of law \xff\xfe\x00" * 50,
        "not_text",
        "NUL",
    ),
    ("docx_not_zip", "motion.docx", lambda c: b"This is plain text " * 30, "corrupt", "ZIP"),
    ("docx_random", "motion.docx", lambda c: noise(4000), "corrupt", "damaged"),
    (
        "zip_without_body",
        "motion.docx",
        lambda c: _zip({"readme.txt": b"hello"}),
        "corrupt",
        "word/document.xml",
    ),
    ("zip_bomb", "bomb.docx", lambda c: zip_bomb_docx(), "too_large", "zip bomb"),
    ("zip_many_parts", "parts.docx", lambda c: many_parts_docx(), "too_large", "zip bomb"),
    ("bad_json", "case.json", lambda c: b'{"casebody": {"data": ', "corrupt", "not valid JSON"),
    ("text_xml", "opinion.xml", lambda c: b"no markup here at all", "corrupt", "XML"),
    ("bad_xml", "opinion.xml", lambda c: noise(200).replace(b"<", b""), "not_text", "binary"),
    (
        "doc_cut_short",
        "brief.doc",
        lambda c: (c / "courtlistener/opinions_word/opinion_doc.doc").read_bytes()[:3000],
        "corrupt",
        "not really a Word document",
    ),
    ("wpd_noise", "brief.wpd", lambda c: b"\xffWPC" + noise(3000), "corrupt", "WordPerfect"),
    ("rtf_noise", "brief.rtf", lambda c: b"{\\rtf1 " + noise(3000), "corrupt", "RTF"),
    (
        "gif",
        "exhibit.gif",
        lambda c: b"GIF89a" + noise(500),
        "unsupported_format",
        "GIF",
    ),
    # Images are read by OCR: a PNG that is not one is corrupt, not unsupported.
    ("png_noise", "exhibit.png", lambda c: b"\x89PNG\r\n\x1a\n" + noise(500), "corrupt", "PNG"),
    ("tiff_noise", "scan.tif", lambda c: b"II*\x00" + noise(500), "corrupt", "TIFF"),
    (
        "encrypted_office",
        "sealed.docx",
        lambda c: (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
            + b"\0" * 512
            + "EncryptedPackage".encode("utf-16-le")
        ),
        "encrypted",
        "password",
    ),
]


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        for name, data in members.items():
            package.writestr(name, data)
    return out.getvalue()


def assert_readable(exc: DocumentError, code: str, words: str) -> None:
    message = exc.args[0]
    assert exc.code == code, f"{exc.code} != {code}: {message}"
    assert words.lower() in message.lower()
    assert str(exc).startswith(f"{code}: ")
    # One plain sentence: no Python repr, tracebacks or library jargon.
    assert message[0].isupper() and message.endswith(".")
    assert len(message) < 220 and "Traceback" not in message and "Error(" not in message


@pytest.mark.parametrize(
    ("case", "name", "build", "code", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_raises_clear_error_and_good_file_still_works(
    corpus: Path, case: str, name: str, build: Callable[[Path], bytes], code: str, words: str
) -> None:
    data = build(corpus)
    with pytest.raises(DocumentError) as info:
        extract_bytes(data, name)
    assert_readable(info.value, code, words)
    good = extract_bytes((corpus / GOOD_PDF).read_bytes(), "good.pdf")
    assert good.method == "text_layer" and "Linda R. Reade" in good.text


def test_owner_password_only_pdf_still_extracts(corpus: Path) -> None:
    """Permissions-only encryption (empty user password) opens without a password."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(corpus / GOOD_PDF))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    result = extract_bytes(out.getvalue(), "permissions.pdf")
    assert "Linda R. Reade" in result.text and len(result.pages) == 2


def test_hundreds_of_bad_and_good_files_in_a_row(corpus: Path) -> None:
    """Errors must not leave PDFium (or its lock) in a bad state."""
    good = (corpus / GOOD_PDF).read_bytes()
    bad = b"%PDF-1.4\n" + noise(2000)
    for i in range(150):
        with pytest.raises(DocumentError):
            extract_bytes(bad, f"bad{i}.pdf")
        assert len(extract_bytes(good, f"good{i}.pdf").pages) == 2


def _source(path: Path, size: int, sha: str) -> SourceRef:
    return SourceRef(
        document_id=uuid.uuid4(),
        project="p1",
        source=str(path),
        source_key=path.name,
        sha256=sha,
        size=size,
        format="txt",
    )


async def test_blob_reader_too_large_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 5000)
    reader = LocalBlobReader()
    assert await reader.read(_source(path, 5000, ""), 5000) == b"x" * 5000
    with pytest.raises(DocumentError) as info:
        await reader.read(_source(path, 5000, ""), 4999)
    assert_readable(info.value, "too_large", "limit")
    with pytest.raises(DocumentError) as info:
        await reader.read(_source(tmp_path / "gone.pdf", 1, ""), 5000)
    assert_readable(info.value, "missing", "no longer exists")
    with pytest.raises(DocumentError) as info:
        await reader.read(_source(tmp_path, 1, ""), 5000)
    assert info.value.code == "unreadable"


async def test_stage_refuses_oversized_file(tmp_path: Path, settings: Settings) -> None:
    data = b"ORDER\n" + b"The motion is granted.\n" * 200
    path = tmp_path / "order.txt"
    path.write_bytes(data)
    ctx = StageContext(
        project="p1",
        settings=settings.model_copy(update={"max_file_bytes": 1000}),
        blobs=LocalBlobReader(),
        canonical=NoCanonical(),
    )
    source = _source(path, len(data), hashlib.sha256(data).hexdigest())
    with pytest.raises(DocumentError) as info:
        await extract_stage.run(source, ctx)
    assert_readable(info.value, "too_large", "limit")
    ctx.settings = settings  # the default cap: the same file now extracts
    assert "The motion is granted." in (await extract_stage.run(source, ctx)).text
