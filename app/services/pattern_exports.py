"""What Pattern Review exports: the findings CSV (with each finding's latest annotation),
the members CSV, the per-finding SHAP summary, the HTML review pack, and their file names."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from app.views.review_pack import review_pack_html
from data_access.exports import BeforeCommit, ExportResult, atomic_write_bytes, write_csv
from data_access.findings import FINDING_COLUMNS
from data_access.review_queries import Window
from explainers.timeutil import to_utc

if TYPE_CHECKING:
    from app.services.pattern_review import MiningResult

__all__ = ["ANNOTATION_EXPORT_COLUMNS", "JSON_COLUMNS", "Written", "csv_table", "export_stem",
           "members_table", "mined_at_text", "shap_summary_table", "write_exports"]

ANNOTATION_EXPORT_COLUMNS = ("annotation_title", "annotation_status", "annotation_owner",
                             "annotation_notes", "annotation_author", "annotation_revision")
JSON_COLUMNS = ("rule_json", "drivers_json", "backtest_daily_json", "drift_json")


def csv_table(findings: pd.DataFrame, notes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The findings CSV: the findings table without its JSON columns (and any storage
    columns such as mined_at); with `notes` (`review_journal.latest_annotations`), the latest
    annotation of each finding as the HTML pack shows it (empty when not annotated)."""
    cols = [c for c in FINDING_COLUMNS if c not in JSON_COLUMNS]
    out = findings[cols].reset_index(drop=True)
    if notes is None:
        return out
    latest = notes.set_index("finding_id") if len(notes) else None
    for column in ANNOTATION_EXPORT_COLUMNS:
        field = column.removeprefix("annotation_")
        if latest is None:
            out[column] = ""
            continue
        values = out["finding_id"].map(latest[field])
        out[column] = (values.astype("Int64").astype(object) if field == "revision"
                       else values.astype(object)).where(values.notna(), "")
    return out


def export_stem(model_id: str, window: Window) -> str:
    """The page's export file names: model, then the first and the last day of the window
    as the page shows them (the window's `until` is the first day left out)."""
    last = window.until - timedelta(days=1)
    return f"{model_id.replace('@', '_v')}_{window.since}_{last}"


def members_table(members: pd.DataFrame) -> pd.DataFrame:
    """The members CSV: transaction_id, finding_id (DESIGN.md's contract)."""
    return members[["transaction_id", "finding_id"]].sort_values(
        ["finding_id", "transaction_id"], kind="mergesort").reset_index(drop=True)


def shap_summary_table(findings: pd.DataFrame) -> pd.DataFrame:
    """Per finding and feature: mean SHAP and mean |SHAP| over its cases (current findings)."""
    frames = []
    for row in findings.itertuples(index=False):
        if row.change == "gone":
            continue
        d = pd.DataFrame(json.loads(row.drivers_json))
        d.insert(0, "finding_id", row.finding_id)
        d.insert(1, "population", row.population)
        d["rank_in_finding"] = np.arange(1, len(d) + 1)
        frames.append(d)
    cols = ["finding_id", "population", "feature", "mean_shap", "mean_abs_shap",
            "rank_in_finding"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


@dataclass(frozen=True)
class Written:
    """The exports of one `write_exports` call."""

    findings: ExportResult
    members: ExportResult | None
    pack: ExportResult | None


def write_exports(result: MiningResult, out: str, *, members_out: str | None = None,
                  pack_out: str | None = None, annotations: pd.DataFrame | None = None,
                  audit: Callable[[str, ExportResult, int | None], None] | None = None,
                  ) -> Written:
    """Write the findings CSV (and members CSV, review pack); `audit(what, result, rows)` runs
    before each file appears — if it raises, that file is not published."""

    def hook(what: str, rows: int | None) -> BeforeCommit | None:
        if audit is None:
            return None
        return lambda r: audit(what, r, rows)

    table = csv_table(result.findings)
    findings = write_csv(table, out, hook("findings", len(table)))
    members = None
    if members_out:
        m = members_table(result.members)
        members = write_csv(m, members_out, hook("finding members", len(m)))
    pack = None
    if pack_out:
        about = (result.model_id, result.window, result.threshold, result.seed)
        data = review_pack_html(result.findings, annotations, about=about).encode("utf-8")
        path = str(pack_out)
        captured: list[ExportResult] = []

        def before(r: ExportResult) -> None:
            captured.append(r)
            if audit is not None:
                audit("review pack", r, None)

        atomic_write_bytes(path, data, before)
        pack = captured[0]
    return Written(findings, members, pack)


def mined_at_text(findings: pd.DataFrame) -> str:
    """When and by whom stored findings were mined, for a caption."""
    if "mined_at" not in findings.columns or findings.empty:
        return ""
    stamp: datetime = to_utc(findings["mined_at"].iloc[0]).to_pydatetime()
    return f"mined {stamp:%Y-%m-%d %H:%M} UTC by {findings['mined_by'].iloc[0]}"
