"""Alert rules and monitoring settings from `monitoring.toml` (the workspace's, or a path).

A missing file means the defaults. A file that cannot be parsed, or that holds an unknown
section or key or a bad value, is refused with its line and key: defaults are never used in
place of a file someone wrote.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from explainers.errors import ValidationError

__all__ = ["RULES_FILE", "MonitoringRules", "load_rules", "parse_rules"]

RULES_FILE = "monitoring.toml"


@dataclass(frozen=True)
class MonitoringRules:
    """Thresholds per metric, and the settings every monitoring number depends on."""

    # [settings]
    capacity_per_day: int = 20  # reviews a day: the top k of a week is 7 x this
    reference_weeks: int = 3  # reference = the first N weeks when no training window is known
    n_resamples: int = 200
    seed: int = 7
    mature_after_days: int = 42  # fraud labels of older transactions are taken as final
    min_label_share: float = 0.9  # below it, metrics that need legit labels are not measured
    # [performance]: alert when the week's upper bound < reference - drop
    roc_auc_drop: float = 0.05
    pr_auc_drop: float = 0.10
    recall_at_k_drop: float = 0.10
    precision_at_k_drop: float = 0.10
    # [drift]
    score_psi: float = 0.25
    flag_rate_ratio: float = 2.0  # flag rate over the reference flag rate
    feature_psi: float = 0.25
    unseen_share: float = 0.01  # share of a categorical's rows at levels the reference lacks
    missing_rate_increase: float = 0.10  # absolute, over the reference missing rate ...
    missing_rate_ratio: float = 2.0  # ... and at least this many times the reference rate
    out_of_range_rate: float = 0.0025  # share outside the reference min/max
    out_of_range_min_rows: int = 5
    # [attribution]
    mean_abs_shap_ratio: float = 2.0
    min_mean_abs_shap: float = 0.02  # ignore changes of features below this in both periods
    rank_change: int = 5  # among the reference's top 10

    @property
    def k_per_week(self) -> int:
        return 7 * self.capacity_per_day


_SECTIONS = {
    "settings": ("capacity_per_day", "reference_weeks", "n_resamples", "seed",
                 "mature_after_days", "min_label_share"),
    "performance": ("roc_auc_drop", "pr_auc_drop", "recall_at_k_drop", "precision_at_k_drop"),
    "drift": ("score_psi", "flag_rate_ratio", "feature_psi", "unseen_share",
              "missing_rate_increase", "missing_rate_ratio", "out_of_range_rate",
              "out_of_range_min_rows"),
    "attribution": ("mean_abs_shap_ratio", "min_mean_abs_shap", "rank_change"),
}
_TYPES = {f.name: f.type for f in fields(MonitoringRules)}
_SHARES = {"min_label_share", "unseen_share", "missing_rate_increase", "out_of_range_rate",
           "roc_auc_drop", "pr_auc_drop", "recall_at_k_drop", "precision_at_k_drop"}


def _line_of(text: str, section: str | None, key: str) -> int | None:
    """The line of `key = …` (inside `[section]` when given), 1-based; None if not found."""
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        head = re.match(r"^\[\s*([^\]]+?)\s*\]", stripped)
        if head:
            current = head.group(1).strip('"')
            if section is None and current == key:
                return number
            continue
        if current == section and re.match(rf'^"?{re.escape(key)}"?\s*=', stripped):
            return number
    return None


def _refuse(source: str, text: str, section: str | None, key: str, problem: str) -> None:
    line = _line_of(text, section, key)
    where = f"line {line}" if line else "?"
    name = f"[{section}] {key}" if section else f"[{key}]"
    raise ValidationError(f"{source} {where}: {name}: {problem}; fix the file (nothing was "
                          "checked with default rules)")


def _value(source: str, text: str, section: str, key: str, raw: Any) -> int | float:
    kind = "int" if _TYPES[key] in ("int", int) else "float"
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (
            kind == "int" and not isinstance(raw, int)):
        _refuse(source, text, section, key,
                f"expected a {'whole number' if kind == 'int' else 'number'}, got {raw!r}")
    value = int(raw) if kind == "int" else float(raw)
    positive = key in ("capacity_per_day", "reference_weeks", "n_resamples",
                       "mature_after_days", "flag_rate_ratio", "mean_abs_shap_ratio",
                       "missing_rate_ratio")
    if (positive and not value > 0) or (not positive and not value >= 0) or value != value:
        _refuse(source, text, section, key, f"must be {'above' if positive else 'at least'} 0, "
                f"got {raw!r}")
    if key in _SHARES and value > 1:
        _refuse(source, text, section, key, f"is a share between 0 and 1, got {raw!r}")
    return value


def parse_rules(text: str, source: str = RULES_FILE) -> MonitoringRules:
    """Rules from TOML text: every key optional, unknown sections and keys refused."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{source}: not valid TOML: {exc}; fix the file (nothing was "
                              "checked with default rules)") from None
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section not in _SECTIONS:
            _refuse(source, text, None, section, "unknown section; use "
                    + ", ".join(f"[{s}]" for s in _SECTIONS))
        if not isinstance(body, dict):
            _refuse(source, text, None, section, "must be a [section] of keys")
        for key, raw in body.items():
            if key not in _SECTIONS[section]:
                _refuse(source, text, section, key,
                        f"unknown key; [{section}] takes {', '.join(_SECTIONS[section])}")
            values[key] = _value(source, text, section, key, raw)
    return MonitoringRules(**values)


def load_rules(workspace: str | Path, path: str | Path | None = None) -> MonitoringRules:
    """`path`, else `<workspace>/monitoring.toml`; the defaults only when no file is there
    (a named path that does not exist is an error)."""
    chosen = Path(path) if path is not None else Path(workspace) / RULES_FILE
    if not chosen.is_file():
        if path is not None:
            raise ValidationError(f"{chosen}: no such rules file")
        return MonitoringRules()
    try:
        text = chosen.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{chosen}: cannot be read ({exc})") from None
    return parse_rules(text, str(chosen))
