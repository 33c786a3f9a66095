"""Terminal rendering of a leaderboard with rich (used by ``polycolor-eval`` and ``polycolor reproduce``).

    from polycolor.eval.render import render_terminal
    render_terminal(lb, rich.console.Console(), by_family=True, written=paths)

The cells come from :mod:`polycolor.eval.report`, so the terminal and the markdown tables always agree.
``lb`` is a :class:`polycolor.eval.leaderboard.Leaderboard` (not imported: annotations are never evaluated).
"""

from __future__ import annotations

from . import report
from .schema import METRICS

__all__ = ["render_terminal"]


def render_terminal(lb: Leaderboard, console, by_family: bool = False, written: dict | None = None) -> None:
    """Print the leaderboard with rich: dataset, ranked table, per-family table, what was not scored, notes."""
    from rich.table import Table
    from rich.text import Text

    console.print(Text("Data: ", style="bold") + Text(lb.data.description))
    console.print(Text("Sorted by: ", style="bold") + Text(report.sort_text(lb)))
    t = Table(title="polycolor leaderboard", title_style="bold", header_style="bold")
    lp = report.TABLE_COLUMNS.index(METRICS["lpips"].label)
    last_num = report.TABLE_COLUMNS.index("img/s")  # Rank, Model, then metrics, Params, img/s are numbers
    for i, h in enumerate(report.TABLE_COLUMNS):
        head = h + (" *" if i == lp and not lb.lpips.available else "")
        t.add_column(head, justify="right" if i == 0 or 2 <= i <= last_num else "left",
                     no_wrap=i in (0, 1) or 2 <= i <= last_num, overflow="fold",
                     min_width=len(h) if i == 1 else None)
    for r, cells in zip(lb.rows, report.table_rows(lb)):
        style = "italic dim" if r.kind == "reference" else ("yellow" if r.status == "unfinished" else None)
        t.add_row(*cells, style=style)
    console.print(t)
    if by_family:
        ft = Table(title="per family", title_style="bold", header_style="bold")
        for i, h in enumerate(report.FAMILY_COLUMNS):
            ft.add_column(h, justify="left" if i in (0, 2) else "right", no_wrap=True)
        last = None
        for cells in report.family_rows(lb):
            if last is not None and cells[0] != last:
                ft.add_section()
            ft.add_row(*cells if cells[0] != last else ["", "", *cells[2:]])
            last = cells[0]
        console.print(ft)
    if not lb.lpips.available:
        console.print(Text(f"* LPIPS {lb.lpips.cell}: ", style="bold yellow") + Text(lb.lpips.reason or lb.lpips.status))
    for note in lb.notes:
        if note.startswith("LPIPS column"):
            continue
        console.print(Text("note: ", style="yellow") + Text(note))
    for r in lb.missing:
        console.print(Text(f"not scored: {r.name} ({r.status}): ", style="bold red") + Text(r.message or ""))
    for kind, path in (written or {}).items():
        console.print(Text(f"wrote {kind}: ", style="green") + Text(str(path)))
    if lb.missing:
        cmds = [r.train_command for r in lb.missing if r.train_command]
        if cmds:
            console.print(Text("train the missing models with:", style="bold"))
            for c in cmds:
                console.print(Text("  " + c))
