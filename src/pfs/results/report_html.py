"""The results table and the comparison with published figures as stand-alone HTML pages (results/table.html,
comparison.html): what the Snakemake report shows inline (it embeds an .html output and opens it in the page),
rendered with pandas from the same data as table.csv / comparison.csv, each with a caption saying what the numbers
are, and columns sortable by a click (a few lines of inline JavaScript, nothing fetched)."""

from __future__ import annotations

import html

import pandas as pd

from pfs.core import io
from pfs.core.catalog import TEST_IMAGES
from pfs.results.cost import cost_cell
from pfs.results.references import comparable_rows, ours
from pfs.results.tables import gates_cell, multiplier_text, needs_multiplier, top1_cell

MACS_CONVENTION = ("MACs: multiply-accumulates of the conv and linear layers for one image at the dataset's "
                   "resolution; MACs reduction against the standard-width network of the same architecture.")

_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 13px; margin: 12px; color: #222; }
table { border-collapse: collapse; margin-bottom: 18px; }
caption { caption-side: top; text-align: left; max-width: 70em; padding-bottom: 6px; line-height: 1.35; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #eef; cursor: pointer; user-select: none; white-space: normal; vertical-align: bottom; }
th:after { content: "\\00a0\\2195"; color: #99a; font-size: 10px; }
tbody tr:nth-child(even) { background: #f7f7f7; }
"""
# headers wrap (their cells do not): the table's width is its numbers', so top-1 stays in view beside the report's
# sidebar; the sort arrow is glued to the header's last word by a no-break space

# click a header: sort its table by that column (numbers by value, the rest as text; again: the other way)
_SORT_JS = """
document.querySelectorAll("table").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.title = "click to sort";
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), dir = th.dataset.dir === "1" ? -1 : 1;
      var key = function (row) {
        var text = row.cells[col] ? row.cells[col].textContent.trim() : "";
        var num = parseFloat(text.replace(/[^0-9eE+\\-.]/g, " ").trim().split(" ")[0]);
        return isNaN(num) ? text : num;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x === "number" && typeof y === "number") return dir * (x - y);
        return dir * String(x).localeCompare(String(y));
      });
      th.dataset.dir = dir === 1 ? "1" : "-1";
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _pct(value, digits: int = 2) -> str:
    return "" if pd.isna(value) else f"{100 * float(value):.{digits}f}"


def _num(value, fmt: str = "{:.2f}") -> str:
    return "" if value is None or pd.isna(value) else fmt.format(float(value))


def granularity(datasets) -> str:
    """'one test image = 0.28% (360 test images)' per dataset of known test-set size, joined; '' if none."""
    parts = []
    for dataset in dict.fromkeys(str(d) for d in datasets):
        if dataset in TEST_IMAGES:
            parts.append(f"{dataset}: one test image = {100 / TEST_IMAGES[dataset]:.2g}% "
                         f"({TEST_IMAGES[dataset]} test images)")
    return "; ".join(parts)


def results_frame(table: pd.DataFrame) -> pd.DataFrame:
    """table.csv's rows as the columns a reader reads: accuracies in %, top-1 as mean ± std (n seeds)."""
    rows, multiplier = [], needs_multiplier(table)
    for r in table.itertuples(index=False):
        sparsity = "" if pd.isna(r.sparsity) else f"{r.sparsity:g}"
        classes = "" if pd.isna(r.num_classes) else str(int(r.num_classes))
        rows.append({
            "dataset": r.dataset, "classes": classes, "arch": r.arch, "method": r.method, "schedule": r.schedule,
            "expansion": r.expansion, **({"multiplier": multiplier_text(r.multiplier)} if multiplier else {}),
            "sparsity r": sparsity, "MACs (M)": _num(r.macs / 1e6),
            "MACs reduction (%)": _pct(r.macs_reduction, 1), "params (k)": _num(r.params / 1e3, "{:.1f}"),
            "top-1 (%) mean ± std": top1_cell(r.top1_mean, r.top1_std, r.n).split(" (n=")[0], "n seeds": int(r.n),
            "drop vs full (pp)": _pct(r.top1_drop), "top-5 (%)": _pct(r.top5_mean),
            "best-epoch top-1 (%)": _pct(r.best_top1_mean), "epochs": r.epochs,
            "gates at target": gates_cell(r, emphasis=""),  # with ', near chance (...)' where the kept gates are
            "cost (wall)": cost_cell(r.cost_s_mean, r.cost_s_std, r.shared_s_mean, int(r.n)),
        })
    return pd.DataFrame(rows)


def comparison_frame(comparison: pd.DataFrame) -> pd.DataFrame:
    """comparison.csv's rows as a reader reads them (all in %): the reference, ours beside it, the differences;
    a reference over another number of classes or split: no difference, the reason instead."""
    if comparison.empty:
        return pd.DataFrame()
    comparable = comparable_rows(comparison)
    rows = []
    for ok, r in zip(comparable, comparison.itertuples(index=False), strict=True):
        schedule = r.ref_schedule if isinstance(r.ref_schedule, str) and r.ref_schedule else ""
        top1 = "" if pd.isna(r.n) else top1_cell(r.top1_mean / 100, r.top1_std / 100, r.n)
        rows.append({
            "dataset": r.dataset, "arch": r.arch, "reference": r.ref_method + (f" ({schedule})" if schedule else ""),
            "ref MACs reduction (%)": _num(100 * r.ref_ratio, "{:.1f}"), "ref top-1 (%)": _num(r.ref_top1),
            "ref drop (pp)": _num(r.ref_drop), "ours": ours(r),
            "our MACs reduction (%)": _num(100 * r.macs_reduction, "{:.1f}") if pd.notna(r.n) else "",
            "our top-1 (%) mean ± std": top1, "our drop (pp)": _num(r.top1_drop) if ok else "",
            "top-1 diff (pp)": _num(r.top1_diff, "{:+.2f}") if ok else "",
            "drop diff (pp)": _num(r.drop_diff, "{:+.2f}") if ok else "",
            "comparable": "yes" if ok else f"no: {r.not_comparable}", "source": r.source,
        })
    return pd.DataFrame(rows)


def text_columns(frame: pd.DataFrame) -> list[int]:
    """1-based positions of the columns with a cell that does not start with a number (method, schedule, yes/no,
    a reference's name): aligned left, numbers (also "98.06 ± 0.21", "11.4 s (...)") right."""
    def numeric(cell) -> bool:
        words = str(cell).split()
        if not words:
            return True  # an empty cell says nothing
        try:
            float(words[0])
        except ValueError:
            return False
        return True

    return [i for i, column in enumerate(frame.columns, 1) if not all(numeric(c) for c in frame[column])]


def _page(title: str, caption: str, frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        body = f"<p>{html.escape(empty)}</p>"
    else:
        body = frame.to_html(index=False, border=0, na_rep="", escape=True, classes="pfs-table",
                             table_id="pfs-table")
        body = body.replace('<thead>', f"<caption>{html.escape(caption)}</caption>\n  <thead>", 1)
    left = ", ".join(f"th:nth-child({i}), td:nth-child({i})" for i in text_columns(frame))
    style = _STYLE + (f"{left} {{ text-align: left; }}\n" if left else "")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n<h2>{html.escape(title)}</h2>\n{body}\n"
            f"<script>{_SORT_JS}</script>\n</body></html>\n")


def table_caption(table: pd.DataFrame, cost_note: str = "") -> str:
    grain = granularity(table["dataset"]) if len(table) else ""
    return ("Every trained network grouped over seeds. top-1: the last epoch's top-1 accuracy on the test set "
            "(ImageNet: val), mean ± standard deviation over the n seeds of the row (one seed: the value alone, no "
            "spread); best-epoch top-1 is kept for reference only. drop vs full: the unpruned network's mean top-1 "
            "(same dataset, classes and arch) minus this row's, in percentage points. "
            + (f"Granularity: {grain}; differences of a few images are noise. " if grain else "")
            + MACS_CONVENTION + (" " + cost_note if cost_note else "") + " Click a column header to sort.")


COMPARISON_CAPTION = ("Our seed means beside published figures (the references file, each row with its source; "
                      "all in %): a reference at MACs reduction p is matched with our runs whose achieved reduction "
                      "is within the file's match_tolerance of p. top-1 diff = our top-1 - the reference's; drop "
                      "diff = our drop against our unpruned network - the reference's drop against its own "
                      "(percentage points). A reference over another number of classes or split is listed as not "
                      "comparable, with the reason and no difference. " + MACS_CONVENTION
                      + " Click a column header to sort.")


def write_html_tables(table: pd.DataFrame, comparison: pd.DataFrame, out_table: str, out_comparison: str,
                      references: str | None = None, cost_note: str = "") -> None:
    """results/table.html and comparison.html from the seed table (pfs.results.tables.seed_table) and its comparison."""
    io.atomic_write_text(out_table, _page("Results (mean ± std over seeds)", table_caption(table, cost_note),
                                          results_frame(table), "No finished training runs yet."))
    empty = ("No references file configured (config key references)." if not references else
             f"No reference in {references} is for a dataset and arch of this grid; add rows there, each with "
             "its source.")
    io.atomic_write_text(out_comparison, _page("Against published figures", COMPARISON_CAPTION,
                                               comparison_frame(comparison), empty))
