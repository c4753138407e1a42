"""HTML reports are self-contained: charts are inline SVG, nothing runs, same input same bytes."""

from __future__ import annotations

import re

import altair as alt
import pandas as pd

from app.views.html_report import Chart, Section, render_html


def _chart(label: str) -> Chart:
    frame = pd.DataFrame({"x": [1.0, 2.0], "feature": [label, "b"]})
    return Chart(alt.Chart(frame).mark_bar().encode(x="x:Q", y="feature:N").to_dict())


def test_charts_are_inline_svg_with_data_as_text_and_no_script():
    page = render_html("Report", [Section("One", [_chart("<script>alert(1)</script>")])])
    assert page.count("<svg") == 1
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_same_sections_give_the_same_bytes_and_distinct_ids():
    sections = [Section("A", [_chart("a"), _chart("b")])]
    first, second = render_html("R", sections), render_html("R", sections)
    assert first == second
    ids = re.findall(r'\bid="([^"]+)"', first)
    assert len(ids) == len(set(ids))
