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
    if not gain:
        return "-"
    text = f"{100 * gain['mean']:+.1f}"
    if gain["ci95"] is not None:
        lo, hi = gain["ci95"]
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}] p={gain['p_value']:.3f}"
    return text


def markdown(ev: Evaluation) -> str:
    c = ev.config
    lines = [f"# datagen evaluation: {c['source']}", "",
             f"Run `{c['run']}`; {c['repeats']} repeats; test split of {c['test_images']} images; "
             f"classifier {c['classifier']['net']}, {c['classifier']['steps']} steps; "
             f"{c['gan_per_class']} generated images per class; {c['seconds']} s.", "",
             "| labels/class | arm | accuracy % (mean ± std) | gain over real, points [95% CI] p | gain over real+classic |",
             "|---|---|---|---|---|"]
    for r in ev.results:
        lines.append(f"| {r['labels_per_class']} | {r['arm']} | {_pct(r['mean'])} ± {_pct(r['std'])} | "
                     f"{gain_text(r.get('gain_over_real'))} | {gain_text(r.get('gain_over_real+classic'))} |")
    if ev.quality:
        lines += ["", "## Encoder and generator", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in ev.quality.items()]
    lines += ["", f"Versions: {c['versions']}; machine: {c['machine']}.", ""]
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
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{ev.config['source']}: mean ± std over {ev.config['repeats']} repeats")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return plots.save(fig, path)


def write_all(ev: Evaluation, json_path: Path) -> dict[str, Path]:
    folder = json_path.parent
    write_json(json_path, ev.to_json())
    md = folder / "evaluation.md"
    write_text(md, markdown(ev))
    return {"json": json_path, "markdown": md, "plot": plot(ev, folder / "accuracy.png")}
