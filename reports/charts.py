"""The dashboard's charts as SVG documents drawn on the server with pygal.

Each chart is served as its own ``image/svg+xml`` answer and shown in an
``<img>`` (``reports.staff_pages``): a browser never runs script inside an
image, and the page's strict Content-Security-Policy is untouched because the
chart's inline ``<style>`` lives in the image's own document, whose answer
allows styles and nothing else. pygal's config ``<script>`` (its tooltips)
is taken out all the same, so that the file opened on its own runs nothing.
The numbers of every chart are also in an HTML table beside it: the chart is
for the eye, the table for everyone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import pygal
from pygal.style import Style

from kernel import i18n
from reports.dashboard import Dashboard
from reports.sections import ALLOWED_REASONS, BLOCKING_REASONS

_ = i18n.translate

# pygal appends to sys.meta_path a finder for its map plugins (never used here)
# that has only the legacy ``find_module``: from then on every import that
# fails elsewhere warns (ImportWarning), which the suite turns into errors.
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]

# Okabe and Ito's palette: told apart with every common colour blindness.
_PALETTE = (
    "#0072B2",
    "#009E73",
    "#56B4E9",
    "#E69F00",
    "#D55E00",
    "#CC79A7",
    "#000000",
    "#999999",
    "#882255",
    "#F0E442",
)
_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1a1a1a",
    foreground_strong="#1a1a1a",
    foreground_subtle="#595959",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    title_font_size=18,
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=13,
    colors=_PALETTE,
)
_SIZE = {"width": 800, "height": 420}


def _chart(kind: Callable[..., pygal.graph.graph.Graph], title: str, **options: object) -> object:
    return kind(
        title=title,
        style=_STYLE,
        js=[],
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        print_zeroes=False,
        # Width and height on the <svg>: an <img> of it then has a size of its own.
        explicit_size=True,
        **_SIZE,
        **options,
    )


def _without_script(root: Any) -> Any:
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _render(chart: Any) -> bytes:
    chart.add_xml_filter(_without_script)
    return bytes(chart.render())


def reach_chart(board: Dashboard) -> bytes:
    chart = _chart(pygal.HorizontalStackedBar, _("Reachable audience per topic and channel"))
    chart.x_labels = [f"{r.topic} · {_(r.channel)}" for r in board.reach]  # type: ignore[attr-defined]
    for reason in (*ALLOWED_REASONS, *BLOCKING_REASONS):
        values = [r.count(reason.value) for r in board.reach]
        if any(values):
            chart.add(_(f"reason.{reason.value}"), values)  # type: ignore[attr-defined]
    return _render(chart)


def weekly_chart(board: Dashboard) -> bytes:
    chart = _chart(pygal.Bar, _("Consents and opt-outs per week"), x_label_rotation=30)
    weeks = board.weeks
    chart.x_labels = [w.start.isoformat() for w in weeks]  # type: ignore[attr-defined]
    for label, values in (
        (_("Consents requested"), [w.requested for w in weeks]),
        (_("Consents confirmed"), [w.confirmed for w in weeks]),
        (_("Unsubscribes"), [w.unsubscribed for w in weeks]),
        (_("Objections"), [w.objected for w in weeks]),
    ):
        chart.add(label, values)  # type: ignore[attr-defined]
    return _render(chart)


def campaign_chart(board: Dashboard) -> bytes:
    chart = _chart(pygal.Bar, _("Outcomes per campaign"), x_label_rotation=20)
    outcomes: Sequence = board.campaigns
    chart.x_labels = [o.name for o in outcomes]  # type: ignore[attr-defined]
    for label, attribute in (
        (_("Sent"), "sent"),
        (_("Bounced"), "bounced"),
        (_("Complaints"), "complaints"),
        (_("Unsubscribes"), "unsubscribes"),
        (_("Objections"), "objections"),
    ):
        chart.add(label, [getattr(o, attribute) for o in outcomes])  # type: ignore[attr-defined]
    return _render(chart)


def retention_chart(board: Dashboard) -> bytes:
    chart = _chart(pygal.Bar, _("Due for purge per month"), x_label_rotation=45)
    months = board.purges
    chart.x_labels = [_(m.month) for m in months]  # type: ignore[attr-defined]
    chart.add(_("Contacts"), [m.contacts for m in months])  # type: ignore[attr-defined]
    chart.add(_("Activities"), [m.activities for m in months])  # type: ignore[attr-defined]
    return _render(chart)


def requests_chart(board: Dashboard) -> bytes:
    chart = _chart(pygal.Bar, _("Privacy requests"))
    counts = board.requests
    chart.x_labels = [_("Open"), _("Overdue"), _("Closed")]  # type: ignore[attr-defined]
    chart.add(_("Requests"), [counts.open, counts.overdue, counts.closed])  # type: ignore[attr-defined]
    return _render(chart)


CHARTS: dict[str, Callable[[Dashboard], bytes]] = {
    "reach": reach_chart,
    "weekly": weekly_chart,
    "campaigns": campaign_chart,
    "retention": retention_chart,
    "requests": requests_chart,
}
