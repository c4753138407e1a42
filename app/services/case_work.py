"""Working cases: each case's status (unworked, assigned, decided) beside the queue, the
queue's status filter, and analysts' outcomes as labels kept apart from chargebacks.

Analysts decide within hours; chargebacks arrive weeks later. Analyst outcomes are earlier
but noisier, so every table shows them in their own `analyst_outcome` column and never mixes
them into the chargeback `outcome`. No Streamlit and no SQL: the journal is read through
`data_access.dispositions` by the shell, which passes the rows in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from data_access.dispositions import CASE_STATUSES, FINAL_OUTCOMES, OUTCOMES

__all__ = ["CASE_STATUSES", "OUTCOMES", "analyst_outcomes", "filter_status", "finding_outcomes",
           "with_analyst_outcome", "with_status"]


def with_status(rows: pd.DataFrame, statuses: Mapping[str, str]) -> pd.DataFrame:
    """`rows` with a `status` column right after `transaction_id` (unworked when unknown)."""
    if rows.empty and "transaction_id" not in rows.columns:
        return rows.assign(status=pd.Series(dtype=object))
    status = rows["transaction_id"].astype(str).map(lambda t: statuses.get(t, "unworked"))
    out = rows.drop(columns=["status"], errors="ignore")
    out.insert(1 if "transaction_id" in out.columns else 0, "status", status.to_numpy())
    return out


def filter_status(rows: pd.DataFrame, chosen: Iterable[str]) -> pd.DataFrame:
    """Only the rows whose status is chosen (nothing chosen: every row)."""
    wanted = set(chosen)
    if not wanted or "status" not in rows.columns:
        return rows
    return rows[rows["status"].isin(wanted)].reset_index(drop=True)


def analyst_outcomes(latest: pd.DataFrame) -> dict[str, str]:
    """Final analyst outcomes by transaction id ("fraud · card testing", "legit") from the
    newest disposition per case; open cases (assigned, needs information) have none."""
    found: dict[str, str] = {}
    for row in latest.itertuples(index=False):
        if row.outcome not in FINAL_OUTCOMES:
            continue
        label = "fraud" if row.outcome == "confirmed_fraud" else "legit"
        found[str(row.transaction_id)] = f"{label} · {row.typology}" if row.typology else label
    return found


def finding_outcomes(members: pd.DataFrame,
                     outcomes: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """Per finding: (cases analysts decided as fraud, as legit) among its members — shown
    beside the chargeback counts, never added to them."""
    counts: dict[str, tuple[int, int]] = {}
    for row in members.itertuples(index=False):
        label = outcomes.get(str(row.transaction_id), "")
        fraud, legit = counts.get(str(row.finding_id), (0, 0))
        counts[str(row.finding_id)] = (fraud + label.startswith("fraud"),
                                       legit + label.startswith("legit"))
    return counts


def with_analyst_outcome(rows: pd.DataFrame, outcomes: Mapping[str, str]) -> pd.DataFrame:
    """`rows` with an `analyst_outcome` column right after the chargeback `outcome` (or at the
    end): the analyst's decision, or "—" when no analyst decided the case."""
    if "transaction_id" not in rows.columns:
        return rows
    values = rows["transaction_id"].astype(str).map(lambda t: outcomes.get(t, "—")).to_numpy()
    out = rows.drop(columns=["analyst_outcome"], errors="ignore")
    at = list(out.columns).index("outcome") + 1 if "outcome" in out.columns else len(out.columns)
    out.insert(at, "analyst_outcome", values)
    return out
