"""Results kept per data version: the exact version is read when kept, else the newest kept
for an earlier version (with that version and when it was written), and at most three data
versions are kept per stable key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from data_access import report_cache as rc

STABLE = ("fraud_xgb@1", "sha-1", "settings(capacity=20)")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Result:
    name: str
    total: float
    frame: pd.DataFrame


def _result(total: float) -> Result:
    return Result("r", total, pd.DataFrame({"week": [1, 2], "rows": [10, int(total)]}))


def _keep(ws: Path, version: str, total: float, hours: int, stable=STABLE) -> None:
    assert rc.keep(ws, "demo", stable, version, _result(total), now=T0 + timedelta(hours=hours))


def test_the_result_for_exactly_this_data_version_is_read(tmp_path: Path):
    _keep(tmp_path, "v1", 1.0, 0)
    _keep(tmp_path, "v2", 2.0, 1)
    kept = rc.read_kept(tmp_path, "demo", STABLE, "v1", Result)
    assert kept is not None and kept.current
    assert (kept.data_version, kept.written_at, kept.result.total) == ("v1", T0, 1.0)
    assert kept.result.frame["rows"].tolist() == [10, 1]
    newest = rc.read_newest(tmp_path, "demo", STABLE, Result, "v1")  # exact beats newer
    assert newest is not None and newest.current and newest.result.total == 1.0
    assert rc.has_kept(tmp_path, "demo", STABLE, "v2")
    assert not rc.has_kept(tmp_path, "demo", STABLE, "v3")
    assert rc.read_kept(tmp_path, "demo", STABLE, "v3", Result) is None
    assert rc.read_kept(tmp_path, "demo", ("another",), "v1", Result) is None


def test_a_new_data_version_falls_back_to_the_newest_kept_with_its_version(tmp_path: Path):
    _keep(tmp_path, "v1", 1.0, 0)
    _keep(tmp_path, "v2", 2.0, 3)
    stale = rc.read_newest(tmp_path, "demo", STABLE, Result, "v3")
    assert stale is not None and not stale.current
    assert (stale.data_version, stale.written_at, stale.result.total) == (
        "v2", T0 + timedelta(hours=3), 2.0)
    assert stale.age_text(now=T0 + timedelta(hours=6)) == "2026-01-05 12:00 UTC (3 h ago)"
    assert rc.read_newest(tmp_path, "demo", ("other models",), Result, "v3") is None


def test_keeping_a_fourth_data_version_removes_the_oldest(tmp_path: Path):
    for hour, version in enumerate(["v1", "v2", "v3", "v4"]):
        _keep(tmp_path, version, float(hour), hour)
    _keep(tmp_path, "w1", 9.0, 0, stable=("other",))  # another key is left alone
    folder = rc.kept_folder(tmp_path, "demo", STABLE)
    assert len([p for p in folder.iterdir() if not p.name.startswith(".")]) == 3
    assert [rc.has_kept(tmp_path, "demo", STABLE, v) for v in ("v1", "v2", "v3", "v4")] == [
        False, True, True, True]
    assert rc.read_kept(tmp_path, "demo", ("other",), "w1", Result).result.total == 9.0
    # keeping a version again replaces it (no second copy), and nothing staged is left over
    _keep(tmp_path, "v4", 40.0, 5)
    assert rc.read_kept(tmp_path, "demo", STABLE, "v4", Result).result.total == 40.0
    assert sorted(p.name.startswith(".") for p in folder.iterdir()) == [False] * 3


def test_ago_reads_in_minutes_hours_and_days():
    assert [rc.ago(s) for s in (5, 300, 3 * 3600, 3 * 86400)] == [
        "just now", "5 min ago", "3 h ago", "3 days ago"]
