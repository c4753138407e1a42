"""Archives from a registry are read without trusting them (SECURITY.md item 11)."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from data_access.safe_tar import archive_budget, build_archive, read_members
from explainers.errors import ArtifactFormatError


def _tar(*members: tuple[str, bytes | None, bytes], gz: bool = True) -> bytes:
    """Members as (name, type, payload-or-linkname); type None is a regular file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind is None:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = kind
                info.linkname = payload.decode()
                tar.addfile(info)
    return gzip.compress(raw.getvalue()) if gz else raw.getvalue()


def test_round_trip_is_deterministic_and_plain_tar_works():
    files = {"manifest.json": b"{}", "model.ubj": b"{learner"}
    assert build_archive(files) == build_archive(dict(reversed(files.items())))
    assert read_members(build_archive(files)) == files
    assert read_members(_tar(("./a/b.txt", None, b"x"), gz=False)) == {"a/b.txt": b"x"}


@pytest.mark.parametrize(("member", "kind", "payload", "words"), [
    ("../evil.txt", None, b"x", "'..'"),
    ("models/../../evil.txt", None, b"x", "'..'"),
    ("/etc/cron.d/evil", None, b"x", "absolute path"),
    ("C:\\evil.txt", None, b"x", "absolute path"),
    ("model.ubj", tarfile.SYMTYPE, b"/etc/passwd", "symbolic link"),
    ("model.ubj", tarfile.LNKTYPE, b"manifest.json", "hard link"),
    ("dev", tarfile.CHRTYPE, b"", "device"),
    ("blk", tarfile.BLKTYPE, b"", "device"),
    ("pipe", tarfile.FIFOTYPE, b"", "fifo"),
])
def test_dangerous_members_are_refused_by_name(member, kind, payload, words):
    data = _tar(("manifest.json", None, b"{}"), (member, kind, payload))
    with pytest.raises(ArtifactFormatError, match=words) as err:
        read_members(data, source="s3://b/model.tar.gz")
    assert repr(member) in str(err.value)
    assert "s3://b/model.tar.gz" in str(err.value)


def test_duplicate_member_is_refused():
    with pytest.raises(ArtifactFormatError, match="twice"):
        read_members(_tar(("model.ubj", None, b"a"), ("./model.ubj", None, b"b")))


def test_member_count_and_total_size_are_capped():
    many = _tar(*[(f"f{i}", None, b"x") for i in range(10)])
    with pytest.raises(ArtifactFormatError, match="more than 5 members"):
        read_members(many, max_members=5)
    big = _tar(("a", None, b"x" * 600), ("b", None, b"x" * 600))
    with pytest.raises(ArtifactFormatError, match="more than 1,000 bytes"):
        read_members(big, max_total_bytes=1000)


def test_gzip_bomb_stops_at_the_cap_without_expanding():
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros, a few KiB compressed
    with pytest.raises(ArtifactFormatError, match="expands beyond"):
        read_members(bomb, max_total_bytes=1024)


def test_garbage_is_a_format_error_not_a_crash():
    for junk in (b"not a tar", gzip.compress(b"not a tar either" * 40), b"\x1f\x8b\x08junk"):
        with pytest.raises(ArtifactFormatError):
            read_members(junk)


def _declared_member(name: str, declared: int, payload: bytes) -> bytes:
    """A tar whose member header declares `declared` bytes, followed by `payload` (zeros
    compress to almost nothing: a 1 KB archive that expands to hundreds of MiB)."""
    info = tarfile.TarInfo(name)
    info.size = declared
    return info.tobuf(format=tarfile.USTAR_FORMAT) + payload


def test_member_bigger_than_the_budget_is_refused_before_it_is_read():
    import tracemalloc

    bomb = gzip.compress(_declared_member("model.ubj", 800 << 20, b"\0" * (64 << 20)))
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactFormatError, match=r"more than 1,000,000 bytes.*model\.ubj"):
            read_members(bomb, max_total_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak:,} bytes"


def test_stream_past_the_budget_stops_at_the_running_cap():
    import tracemalloc

    files = {"manifest.json": b"{}", "model.ubj": b"x" * 1000}
    padded = gzip.compress(gzip.decompress(build_archive(files)) + b"\0" * (64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactFormatError, match="expands beyond"):
            read_members(padded, max_total_bytes=archive_budget(1002))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak:,} bytes"
    assert read_members(build_archive(files), max_total_bytes=archive_budget(1002)) == files


def test_truncated_archives_are_format_errors():
    files = {"manifest.json": b"{}", "model.ubj": b"y" * 5000}
    whole = build_archive(files)
    raw = gzip.decompress(whole)
    for cut in (len(whole) // 2, len(whole) - 9):
        with pytest.raises(ArtifactFormatError):
            read_members(whole[:cut])
    with pytest.raises(ArtifactFormatError):
        read_members(raw[:len(raw) // 2], max_total_bytes=10_000)


def test_budget_is_the_declared_size_plus_a_small_margin():
    assert archive_budget(0) == 64 << 10
    assert archive_budget(100 << 20) == (100 << 20) + (1 << 20) + (64 << 10)
