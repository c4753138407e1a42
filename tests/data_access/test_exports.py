"""Exports: OWASP CSV-injection neutralising, and all-or-nothing writes guarded by a hook."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_access import exports
from data_access.audit import AuditLog
from data_access.exports import (
    DANGEROUS_PREFIXES,
    ExportResult,
    atomic_write_bytes,
    csv_bytes,
    neutralise_cell,
    safe_frame,
    write_csv,
    write_parquet,
)
from data_access.journal import open_journal
from explainers.errors import AuditError, ExportError

DANGEROUS = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(len(DANGEROUS))],
            "note": DANGEROUS,
            "amount": [-1.5, 2.0, -3.25, 0.1, 1e-12, 123456789.123456789],
            "count": [-1, 2, 3, 4, 5, 6],
        }
    )


def _folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("cell", DANGEROUS)
def test_dangerous_prefix_gets_a_quote(cell: str) -> None:
    assert neutralise_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["hello", "", "1.5", "a=b", "O'Brien", "'=already"])
def test_harmless_text_is_unchanged(cell: str) -> None:
    assert neutralise_cell(cell) == cell


def test_formula_after_leading_space_is_neutralised() -> None:
    assert neutralise_cell("  =1+1") == "'  =1+1"


def test_csv_reads_back_quoted_text_and_numeric_numbers(tmp_path: Path) -> None:
    df = _frame()
    result = write_csv(df, tmp_path / "out.csv")
    back = pd.read_csv(result.path, keep_default_na=False)
    assert list(back["note"]) == ["'" + c for c in DANGEROUS]
    assert list(back["transaction_id"]) == list(df["transaction_id"])
    assert pd.api.types.is_float_dtype(back["amount"])
    assert pd.api.types.is_integer_dtype(back["count"])
    assert back["amount"].tolist() == df["amount"].tolist()  # exact round trip, no rounding
    assert back["count"].tolist() == df["count"].tolist()


def test_safe_frame_keeps_numbers_and_does_not_touch_input() -> None:
    df = _frame()
    before = df.copy()
    out = safe_frame(df)
    pd.testing.assert_frame_equal(df, before)
    assert out["amount"].dtype == df["amount"].dtype
    assert out["amount"].iloc[0] == -1.5
    assert out["note"].iloc[0] == "'" + DANGEROUS[0]


def test_safe_frame_handles_category_object_and_missing_values() -> None:
    df = pd.DataFrame(
        {
            "cat": pd.Categorical(["=a", "b", "=a"]),
            "obj": pd.Series(["-x", None, 3], dtype=object),
            "s": pd.Series(["@y", pd.NA, "z"], dtype="string"),
        }
    )
    out = safe_frame(df)
    assert isinstance(out["cat"].dtype, pd.CategoricalDtype)
    assert out["cat"].tolist() == ["'=a", "b", "'=a"]
    assert out["obj"].tolist()[0] == "'-x" and out["obj"].tolist()[1] is None
    assert out["obj"].tolist()[2] == 3
    assert out["s"].iloc[0] == "'@y" and out["s"].isna().iloc[1]


def test_colliding_categories_fall_back_to_text() -> None:
    df = pd.DataFrame({"cat": pd.Categorical(["=a", "'=a"])})
    out = safe_frame(df)["cat"]
    assert out.tolist() == ["'=a", "'=a"]
    assert not isinstance(out.dtype, pd.CategoricalDtype)


def test_dangerous_column_names_are_neutralised() -> None:
    out = safe_frame(pd.DataFrame({"=cmd|' /C calc'!A0": [1]}))
    assert list(out.columns) == ["'=cmd|' /C calc'!A0"]


@given(st.text())
def test_neutralised_cell_is_never_a_formula_and_round_trips(value: str) -> None:
    out = neutralise_cell(value)
    if out:
        assert out[0] not in DANGEROUS_PREFIXES
        assert out.lstrip()[:1] not in DANGEROUS_PREFIXES or out.lstrip()[:1] == ""
    restored = out[1:] if out != value else out
    assert restored == value
    assert out == value or out == "'" + value


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_csv_round_trips_random_text(values: list[str]) -> None:
    data = csv_bytes(pd.DataFrame({"id": range(len(values)), "v": values}))
    back = pd.read_csv(io.BytesIO(data), keep_default_na=False, dtype={"v": str})
    assert back["id"].tolist() == list(range(len(values)))
    assert back["v"].tolist() == [neutralise_cell(v) for v in values]
    for cell in back["v"]:
        assert cell[:1] not in DANGEROUS_PREFIXES


def test_carriage_return_inside_a_cell_cannot_start_a_new_row() -> None:
    data = csv_bytes(pd.DataFrame({"v": ["ok\r=HYPERLINK(1)", "\r=1"], "n": [1, 2]}))
    assert b'"\'\r=1"' in data  # quoted, so \r stays inside the cell
    back = pd.read_csv(io.BytesIO(data))
    assert back["v"].tolist() == ["ok\r=HYPERLINK(1)", "'\r=1"]
    assert back["n"].tolist() == [1, 2]


def test_csv_bytes_match_the_written_file(tmp_path: Path) -> None:
    df = _frame()
    data = csv_bytes(df)
    result = write_csv(df, tmp_path / "out.csv")
    assert Path(result.path).read_bytes() == data
    assert data.startswith(b'"transaction_id","note","amount","count"\n')
    assert result == ExportResult(
        str(tmp_path / "out.csv"), hashlib.sha256(data).hexdigest(), len(df), len(data)
    )
    assert csv_bytes(df) == data  # deterministic


def test_parquet_export_is_neutralised_and_keeps_types(tmp_path: Path) -> None:
    df = _frame()
    result = write_parquet(df, tmp_path / "out.parquet")
    back = pq.read_table(result.path).to_pandas()
    assert back["note"].tolist() == ["'" + c for c in DANGEROUS]
    assert back["amount"].tolist() == df["amount"].tolist()
    assert back["count"].tolist() == df["count"].tolist()
    assert result.rows == len(df)
    assert result.sha256 == hashlib.sha256(Path(result.path).read_bytes()).hexdigest()


def test_atomic_write_returns_sha_and_replaces_old_content(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    digest = atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert digest == hashlib.sha256(b"new").hexdigest()
    assert _folder_names(tmp_path) == ["f.bin"]


def test_crash_at_rename_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"old content")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(exports.os, "replace", boom)
    with pytest.raises(ExportError, match="disk vanished"):
        write_csv(_frame(), target)
    assert target.read_bytes() == b"old content"
    assert _folder_names(tmp_path) == ["out.csv"]


def test_crash_during_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(fd: int) -> None:
        raise OSError("fsync failed")

    monkeypatch.setattr(exports.os, "fsync", boom)
    with pytest.raises(ExportError, match="fsync failed"):
        write_parquet(_frame(), tmp_path / "out.parquet")
    assert _folder_names(tmp_path) == []


def test_interrupt_in_hook_leaves_no_file(tmp_path: Path) -> None:
    def interrupt(result: ExportResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "x.bin", b"data", before_commit=interrupt)
    assert _folder_names(tmp_path) == []


def test_hook_sees_complete_temp_file_before_rename(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    seen: list[ExportResult] = []

    def hook(result: ExportResult) -> None:
        assert not target.exists()
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1
        assert hashlib.sha256(temps[0].read_bytes()).hexdigest() == result.sha256
        seen.append(result)

    result = write_csv(_frame(), target, before_commit=hook)
    assert seen == [result]
    assert _folder_names(tmp_path) == ["out.csv"]


def test_hook_failure_prevents_the_export(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"previous export")

    class Refused(RuntimeError):
        pass

    def hook(result: ExportResult) -> None:
        raise Refused("audit down")

    with pytest.raises(Refused, match="audit down"):
        write_csv(_frame(), target, before_commit=hook)
    assert target.read_bytes() == b"previous export"
    assert _folder_names(tmp_path) == ["out.csv"]


def test_export_is_audited_first_and_not_written_when_audit_fails(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    journal = open_journal(tmp_path / "ws")
    log = AuditLog(journal)

    def audit(result: ExportResult) -> None:
        log.append(
            "ana",
            "analyst",
            "export",
            "shap-summary",
            details={"path": result.path, "rows": result.rows, "sha256": result.sha256},
        )

    ok = write_csv(_frame(), out / "a.csv", before_commit=audit)
    logged = log.records(action="export")
    assert logged["details"].iloc[0] == (
        f'{{"path":"{ok.path}","rows":{ok.rows},"sha256":"{ok.sha256}"}}'
    )
    journal.close()
    with pytest.raises(AuditError):
        write_csv(_frame(), out / "b.csv", before_commit=audit)
    assert _folder_names(out) == ["a.csv"]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        write_csv(_frame(), tmp_path / "nope" / "out.csv")


def test_result_path_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = write_csv(_frame(), "rel.csv")
    assert os.path.isabs(result.path) and Path(result.path).exists()
