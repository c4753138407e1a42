"""What monitoring reads from the lake, aggregated in DuckDB: weeks (Monday, UTC) of score bins
with the labels known as of a time, label delays, feature profiles and SHAP means per week.

Every query groups in SQL and returns at most a few thousand rows whatever the lake's size.
Values are parameters; identifiers come only from the schema or the view's own columns, through
`quote_ident`.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from data_access.masking import PII_COLUMNS
from data_access.warehouse import fetch_df, quote_ident, table_columns
from explainers.errors import ValidationError

__all__ = [
    "BIN_RESOLUTION",
    "Span",
    "feature_histograms",
    "fraud_label_delays",
    "numeric_profile",
    "score_bins",
    "scored_days",
    "segment_columns",
    "shap_means",
    "transaction_columns",
]

BIN_RESOLUTION = 20  # score bins per unit of log-odds (margin): ties closer than 0.05 share one
WEEK = "CAST(date_trunc('week', timezone('UTC', t.event_time)) AS DATE)"
_NOT_SEGMENTS = {"transaction_id", "event_time", *PII_COLUMNS}

Span = tuple[pd.Timestamp, pd.Timestamp]  # [start, end) in UTC


def transaction_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The transactions view's columns and their DuckDB types."""
    return table_columns(con, "transactions")


def segment_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Columns a weekly table may be split by: text, category or boolean columns of the
    transactions view, never an identifier or PII."""
    return sorted(c for c, kind in transaction_columns(con).items()
                  if c not in _NOT_SEGMENTS
                  and (kind.startswith(("VARCHAR", "ENUM")) or kind == "BOOLEAN"))


def _segment_sql(con: duckdb.DuckDBPyConnection, segment: str | None) -> str:
    if segment is None:
        return ""
    if segment not in segment_columns(con):
        raise ValidationError(f"Cannot split by {segment!r}; choose one of "
                              f"{', '.join(segment_columns(con))}")
    return f"coalesce(CAST(t.{quote_ident(segment)} AS VARCHAR), '(missing)') AS segment, "


def score_bins(con: duckdb.DuckDBPyConnection, model_id: str, span: Span, as_of: pd.Timestamp,
               *, by_week: bool = True, segment: str | None = None) -> pd.DataFrame:
    """Per (week, segment,) score bin, highest first: rows, known fraud, known legit. A bin is
    `round(margin * BIN_RESOLUTION)`; labels count when they arrived by `as_of`."""
    week = f"{WEEK} AS week, " if by_week else ""
    seg = _segment_sql(con, segment)
    keys = ", ".join(k for k, on in (("week", by_week), ("segment", bool(seg))) if on)
    sql = (f"SELECT {week}{seg}CAST(round(s.margin * ?) AS BIGINT) AS bin, count(*) AS rows, "
           "count(*) FILTER (WHERE l.is_fraud = 1) AS fraud, "
           "count(*) FILTER (WHERE l.is_fraud = 0) AS legit "
           "FROM scores s JOIN transactions t ON t.transaction_id = s.transaction_id "
           "LEFT JOIN labels l ON l.transaction_id = t.transaction_id AND l.label_time <= ? "
           "WHERE s.model_id = ? AND t.event_time >= ? AND t.event_time < ? "
           f"GROUP BY ALL ORDER BY {keys + ', ' if keys else ''}bin DESC")
    return fetch_df(con, sql, [BIN_RESOLUTION, as_of, model_id, span[0], span[1]])


def scored_days(con: duckdb.DuckDBPyConnection, model_id: str, spans: dict[str, Span],
                as_of: pd.Timestamp, threshold: float) -> pd.DataFrame:
    """One scan for every score number monitoring needs: per day (UTC), membership of each
    named span (a boolean column per name), and score bin (NULL: not scored): rows, known
    fraud, known legit as of `as_of`, and rows scored at or above `threshold`."""
    names = list(spans)
    flags = ", ".join(f"(t.event_time >= ? AND t.event_time < ?) AS {quote_ident(n)}"
                      for n in names)
    any_span = " OR ".join("(t.event_time >= ? AND t.event_time < ?)" for _ in names)
    bounds = [b for n in names for b in spans[n]]
    sql = ("SELECT CAST(timezone('UTC', t.event_time) AS DATE) AS day, "
           f"{flags}, CAST(round(s.margin * ?) AS BIGINT) AS bin, count(*) AS rows, "
           "count(*) FILTER (WHERE l.is_fraud = 1) AS fraud, "
           "count(*) FILTER (WHERE l.is_fraud = 0) AS legit, "
           "count(*) FILTER (WHERE s.score >= ?) AS flagged "
           "FROM transactions t LEFT JOIN scores s ON s.transaction_id = t.transaction_id "
           "AND s.model_id = ? "
           "LEFT JOIN labels l ON l.transaction_id = t.transaction_id AND l.label_time <= ? "
           f"WHERE {any_span} GROUP BY ALL ORDER BY 1")
    frame = fetch_df(con, sql, [*bounds, BIN_RESOLUTION, threshold, model_id, as_of, *bounds])
    day = pd.to_datetime(frame["day"])
    frame["week"] = (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).dt.date
    frame["day"] = day.dt.date
    return frame


def fraud_label_delays(con: duckdb.DuckDBPyConnection, before: pd.Timestamp,
                       as_of: pd.Timestamp) -> pd.Series:
    """Days from event to fraud label for transactions before `before` (mature ones)."""
    sql = ("SELECT (epoch_us(CAST(l.label_time AS TIMESTAMPTZ)) "
           "- epoch_us(CAST(t.event_time AS TIMESTAMPTZ))) / 8.64e10 AS days "
           "FROM labels l "
           "JOIN transactions t ON t.transaction_id = l.transaction_id "
           "WHERE l.is_fraud = 1 AND t.event_time < ? AND l.label_time <= ?")
    return fetch_df(con, sql, [before, as_of])["days"]


def _missing(column: str, kind: str) -> str:
    col = f"t.{quote_ident(column)}"
    if kind in ("DOUBLE", "FLOAT", "REAL"):
        return f"({col} IS NULL OR isnan({col}))"
    return f"{col} IS NULL"


def numeric_profile(con: duckdb.DuckDBPyConnection, features: Sequence[str],
                    kinds: dict[str, str], span: Span, bins: int = 10) -> pd.DataFrame:
    """Per feature over the reference span: rows, missing, min, max and the quantile edges
    that cut the present values into `bins` equal parts (one row per feature)."""
    qs = [i / bins for i in range(1, bins)]
    parts = []
    for f in features:
        col, miss = f"t.{quote_ident(f)}", _missing(f, kinds[f])
        x, ok = f"CAST({col} AS DOUBLE)", f"FILTER (WHERE NOT {miss})"
        parts.append(f"count(*) FILTER (WHERE {miss}), min({x}) {ok}, max({x}) {ok}, "
                     f"quantile_disc({x}, {qs!r}) {ok}")
    sql = (f"SELECT count(*), {', '.join(parts)} FROM transactions t "
           "WHERE t.event_time >= ? AND t.event_time < ?")
    cur_rows = fetch_df(con, sql, [span[0], span[1]]).iloc[0].tolist()
    total = int(cur_rows[0])
    out = []
    for i, f in enumerate(features):
        missing, lo, hi, edges = cur_rows[1 + 4 * i: 5 + 4 * i]
        edges = sorted({float(e) for e in (edges if edges is not None else []) if e == e})
        out.append({"feature": f, "rows": total, "missing": int(missing), "min": lo, "max": hi,
                    "edges": tuple(edges)})
    return pd.DataFrame(out, columns=["feature", "rows", "missing", "min", "max", "edges"])


def _periods(span: Span, reference: Span) -> tuple[str, str, list[object]]:
    """(SELECT flags, WHERE clause, their parameters) marking rows of the span and of the
    reference, so one scan serves both."""
    flags = ("(t.event_time >= ? AND t.event_time < ?) AS in_span, "
             "(t.event_time >= ? AND t.event_time < ?) AS in_ref")
    where = ("((t.event_time >= ? AND t.event_time < ?) OR "
             "(t.event_time >= ? AND t.event_time < ?))")
    return flags, where, [span[0], span[1], reference[0], reference[1]]


def feature_histograms(con: duckdb.DuckDBPyConnection, profile: pd.DataFrame,
                       categorical: Sequence[str], kinds: dict[str, str], span: Span,
                       reference: Span) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, per week of the span), in one scan: per feature rows, missing, out of the
    reference range, and `counts` — for a numeric feature present rows per reference bin (bin
    i holds values above i of the profile's edges), for a categorical one rows per level.
    Each row gets one small key per feature (numeric: 2 x bin + out of range, -1 missing;
    categorical: the level), counted per feature from a materialised scan."""
    keys, params, order = [], [], []
    for p in profile.itertuples(index=False):
        col, miss = f"CAST(t.{quote_ident(p.feature)} AS DOUBLE)", _missing(p.feature,
                                                                           kinds[p.feature])
        if p.min is None or pd.isna(p.min):
            keys.append(f"CASE WHEN {miss} THEN -1 ELSE 0 END")
        else:
            binned = " + ".join(f"CAST({col} > ? AS INTEGER)" for _ in p.edges) or "0"
            keys.append(f"CASE WHEN {miss} THEN -1 ELSE ({binned}) * 2 + "
                        f"CAST(({col} < ? OR {col} > ?) AS INTEGER) END")
            params += [*p.edges, float(p.min), float(p.max)]
        order.append(p.feature)
    keys += [f"CAST(t.{quote_ident(f)} AS VARCHAR)" for f in categorical]
    order += list(categorical)
    flags, where, bounds = _periods(span, reference)
    cols = ", ".join(f"CAST({k} AS VARCHAR) AS k{i}" for i, k in enumerate(keys))
    counts = " UNION ALL ".join(f"SELECT week, in_span, in_ref, {i} AS f, k{i} AS k, "
                                f"count(*) AS n FROM x GROUP BY ALL" for i in range(len(keys)))
    sql = (f"WITH x AS MATERIALIZED (SELECT {WEEK} AS week, {flags}, {cols} FROM transactions t "
           f"WHERE {where}) {counts}")
    raw = fetch_df(con, sql, [*bounds, *params, *bounds]) if keys else pd.DataFrame()
    numeric = set(profile["feature"])
    ref: dict[str, dict] = {}
    weekly: dict[tuple, dict] = {}
    for week, in_span, in_ref, i, key, n in raw.itertuples(index=False, name=None):
        f = order[int(i)]
        targets = [ref.setdefault(f, {"week": None, "feature": f})] if in_ref else []
        if in_span:
            targets.append(weekly.setdefault((week, f), {"week": week, "feature": f}))
        for t in targets:
            _add(t, f in numeric, key, int(n))
    columns = ["week", "feature", "rows", "missing", "out_of_range", "counts"]
    return (pd.DataFrame(list(ref.values()), columns=columns),
            pd.DataFrame(sorted(weekly.values(), key=lambda r: (r["week"], r["feature"])),
                         columns=columns))


def _add(target: dict, numeric: bool, key: str | None, n: int) -> None:
    target["rows"] = target.get("rows", 0) + n
    for name in ("missing", "out_of_range"):
        target.setdefault(name, 0)
    counts = target.setdefault("counts", {})
    if key is None or pd.isna(key) or (numeric and int(key) < 0):
        target["missing"] += n
        return
    if numeric:
        code = int(key)
        target["out_of_range"] += n * (code % 2)
        counts[code // 2] = counts.get(code // 2, 0) + n
    else:
        counts[key] = counts.get(key, 0) + n


def shap_means(con: duckdb.DuckDBPyConnection, table: str, features: Sequence[str], span: Span,
               reference: Span) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, per week of the span), in one scan of the stored rows: per feature rows,
    mean |SHAP| and mean SHAP (Kahan sums, so a parallel scan gives the same bytes)."""
    sums = ", ".join(f"fsum(abs(t.{quote_ident(f)})), fsum(t.{quote_ident(f)})"
                     for f in features)
    flags, where, bounds = _periods(span, reference)
    raw = fetch_df(con, f"SELECT {WEEK} AS week, {flags}, count(*) AS rows, {sums} FROM "
                        f"{quote_ident(table)} t WHERE {where} GROUP BY ALL ORDER BY 1",
                   [*bounds, *bounds])
    ref: dict[str, list[float]] = {}
    weekly: dict[tuple, list[float]] = {}
    for r in raw.itertuples(index=False):
        values = list(r)
        for i, f in enumerate(features):
            add = [float(values[3]), float(values[4 + 2 * i] or 0), float(values[5 + 2 * i] or 0)]
            if values[2]:
                ref[f] = [a + b for a, b in zip(ref.get(f, [0.0] * 3), add, strict=True)]
            if values[1]:
                key = (values[0], f)
                weekly[key] = [a + b for a, b in zip(weekly.get(key, [0.0] * 3), add,
                                                     strict=True)]

    def frame(items: list[tuple[object, str, list[float]]]) -> pd.DataFrame:
        return pd.DataFrame([{"week": w, "feature": f, "rows": int(n),
                              "mean_abs_shap": a / n, "mean_shap": m / n}
                             for w, f, (n, a, m) in items if n],
                            columns=["week", "feature", "rows", "mean_abs_shap", "mean_shap"])

    return (frame([(None, f, v) for f, v in ref.items()]),
            frame([(w, f, v) for (w, f), v in weekly.items()]))
