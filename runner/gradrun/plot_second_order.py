"""The curve of a second-order experiment: f, f' and f'' over one swept scalar input."""

from __future__ import annotations

from .plot_common import STATUS_COLOURS, methods_used, picture_path, require_matplotlib, save, swept_input


def plot_second_order_curve(rows, out_dir) -> list:
    """f (output_value), f' (the gradient the Hessian differentiates) and f'' (analytic line,
    numeric markers) in three panels over the swept input; failures are red crosses."""
    Figure, Canvas = require_matplotlib()
    name = swept_input(rows)
    x_column = f"sweep_{name}"
    experiment = rows["experiment"].iloc[0]
    rows = rows.sort_values(x_column)
    fig = Figure(figsize=(7, 8), layout="constrained")
    panels = fig.subplots(3, 1, sharex=True)
    panels[0].set_title(f"{experiment}: f, f\u2032 and f\u2033 over {name}")
    for ax, column, label in zip(panels, ("output_value", "gradient", "analytic"),
                                 ("f", "f\u2032", "f\u2033 analytic")):
        ax.plot(rows[x_column], rows[column], ".-", color="tab:blue", label=label)
        ax.axhline(0, color="0.85", lw=0.8, zorder=0)
        ax.set_ylabel(label.split()[0])
    panels[2].plot(rows[x_column], rows["numeric"], "o", mfc="none", color="tab:blue",
                   label=f"f\u2033 numeric ({methods_used(rows)})")
    failed = rows[rows["status"].isin(["fail", "nan"])]
    if len(failed):
        panels[2].plot(failed[x_column], failed["numeric"], "x", ms=10, mew=2, color=STATUS_COLOURS["fail"],
                       label="failed")
    kinks = rows[rows["status"] == "kink"]
    for x in kinks[x_column]:
        for ax in panels:
            ax.axvline(x, color=STATUS_COLOURS["kink"], ls=":", lw=1.2)
    panels[2].legend(loc="best", fontsize="small")
    panels[2].set_xlabel(name)
    return [save(fig, Canvas, picture_path(out_dir, rows, "curve"))]
