"""What `datagen evaluate` leaves behind: evaluation.json, evaluation.md and the accuracy plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from datagen.common import plots
from datagen.common.files import write_json, write_text

if TYPE_CHECKING:
    from datagen.eval.protocol import Evaluation


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def gain_text(gain: dict | None) -> str:
    """'+1.2 [-0.3, +2.7] p=0.120 (Holm 0.480)': points, 95% interval, unadjusted and Holm-adjusted p."""
    if not gain:
        return "-"
    text = f"{100 * gain['mean']:+.1f}"
    if gain["ci95"] is not None:
        lo, hi = gain["ci95"]
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}] p={gain['p_value']:.3f}"
        if gain.get("p_holm") is not None:
            text += f" (Holm {gain['p_holm']:.3f})"
    return text


def gains_of(ev: Evaluation, row: dict) -> dict[str, dict]:
    """The comparisons whose arm is this row's, keyed by the arm they compare with."""
    return {c["over"]: c for c in ev.comparisons
            if c["arm"] == row["arm"] and c["labels_per_class"] == row["labels_per_class"]}


def _quality_rows(prefix: str, numbers: dict) -> list[str]:
    rows = []
    for key, value in numbers.items():
        if isinstance(value, dict):
            rows += _quality_rows(f"{prefix}{key}.", value)
        else:
            rows.append(f"| {prefix}{key} | {value:.4g} |" if isinstance(value, float) else f"| {prefix}{key} | {value} |")
    return rows


def markdown(ev: Evaluation) -> str:
    c = ev.config
    runs = ", ".join(f"`{r['checkpoint']}`" for r in c["runs"])
    lines = [f"# datagen evaluation: {c['source']}, {c['split']} split", "",
             f"Runs {runs} ({c['runs'][0]['checkpoint_chosen_by']}); {c['repeats']} repeats per run; "
             f"{c['split']} split of {c['split_images']} images; classifier {c['classifier']['net']}, "
             f"{c['classifier']['steps']} steps; {c['gan_per_class']} generated images per class; {c['seconds']} s.", "",
             "| labels/class | arm | accuracy % (mean ± std) | worst | gain over real, points [95% CI] | other gains |",
             "|---|---|---|---|---|---|"]
    for r in ev.results:
        gains = gains_of(ev, r)
        others = "; ".join(f"over {base}: {gain_text(g)}" for base, g in gains.items() if base != "real") or "-"
        spread = f" (between runs ± {_pct(r['between_runs']['std'])})" if "between_runs" in r else ""
        lines.append(f"| {r['labels_per_class']} | {r['arm']} | {_pct(r['mean'])} ± {_pct(r['std'])}{spread} | "
                     f"{_pct(r['worst'])} | {gain_text(gains.get('real'))} | {others} |")
    if ev.quality:
        lines += ["", "## Encoder and generator (reference classifier's feature space)", "", "| measure | value |",
                  "|---|---|", *_quality_rows("", ev.quality)]
    lines += ["", f"Versions: {c['versions']}; device {c['device']}: {c['machine']}.", ""]
    return "\n".join(lines)


def plot(ev: Evaluation, path: Path) -> Path:
    budgets = list(dict.fromkeys(r["labels_per_class"] for r in ev.results))
    xs = {b: i for i, b in enumerate(budgets)}
    fig, ax = plots.subplots(figsize=(6, 4), dpi=120)
    arms = list(dict.fromkeys(r["arm"] for r in ev.results))
    for i, arm in enumerate(arms):
        rows = [r for r in ev.results if r["arm"] == arm]
        dodge = (i - (len(arms) - 1) / 2) * 0.06  # side by side, so error bars of one budget do not hide each other
        ax.errorbar([xs[r["labels_per_class"]] + dodge for r in rows], [100 * r["mean"] for r in rows],
                    yerr=[100 * r["std"] for r in rows], marker="o", capsize=3, label=arm)
    ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
    ax.set_xlabel("labels per class")
    ax.set_ylabel(f"{ev.config['split']} accuracy (%)")
    ax.set_title(f"{ev.config['source']}: mean ± std over {ev.config['repeats']} repeats")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return plots.save(fig, path)


def write_all(ev: Evaluation, json_path: Path) -> dict[str, Path]:
    folder = json_path.parent
    write_json(json_path, ev.to_json())
    md = json_path.with_suffix(".md")
    write_text(md, markdown(ev))
    return {"json": json_path, "markdown": md, "plot": plot(ev, folder / f"{json_path.stem}-accuracy.png")}
