"""Issue 9's grid in words and pictures: the table printed and the figure routing.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cell_key(cell: dict[str, Any]) -> str:
    return f"{cell['fleet']} {cell['config']} {cell['policy']} {cell['load']:g}"


def model_ratio(grid: dict[str, Any] | None, cell: dict[str, Any]) -> float | None:
    """The model's p99 / free oracle for the same fleet, config, policy and load."""
    try:
        entry = grid["results"][cell["fleet"]][f"{cell['load']:g}"][cell["config"]]  # type: ignore[index]
        return float(entry[cell["policy"]]["ratio_to_oracle_free"])
    except (KeyError, TypeError):
        return None


def table(results: dict[str, Any]) -> str:
    lines = []
    grid = results.get("grid")
    if grid:
        lines.append(
            "Model (issue 9 grid), p99 / free oracle at 80% load: least_loaded | round_robin"
        )
        for fleet, loads in grid["results"].items():
            row = loads.get("0.8", {})
            parts = [
                f"{c} {row[c]['least_loaded']['ratio_to_oracle_free']:.2f}|"
                f"{row[c]['round_robin']['ratio_to_oracle_free']:.2f}"
                for c in row
                if isinstance(row[c], dict) and "least_loaded" in row[c]
            ]
            lines.append(f"  {fleet}: " + ", ".join(parts))
    live = results.get("live_grid")
    if live:
        lines.append("Live (two instances, alternating): p99 / free oracle (model's beside)")
        for cell in live["cells"]:
            model = model_ratio(grid, cell)
            lines.append(
                f"  {cell_key(cell):40s} live {cell['ratio_to_oracle_free']} "
                f"(p99 {cell['p99_live_seconds']} s, oracle {cell['oracle_free_p99_live_seconds']}"
                f" s, n {cell['measured']})  model {model if model is None else round(model, 2)}"
            )
    others = results.get("live_fleets")
    if others:
        lines.append("Live, other fleets, minimal config at 80%: p99 / free oracle")
        for cell in others["cells"]:
            lines.append(f"  {cell_key(cell):40s} live {cell['ratio_to_oracle_free']}")
    configs = results.get("live_configs")
    if configs:
        lines.append("Live, admission configs at 80%: p99 / free oracle, least_loaded | rr")
        pairs: dict[tuple[str, str], dict[str, Any]] = {}
        for cell in configs["cells"]:
            pairs.setdefault((cell["fleet"], cell["config"]), {})[cell["policy"]] = cell
        for (fleet, config), pair in pairs.items():
            ll, rr = pair.get("least_loaded", {}), pair.get("round_robin", {})
            lines.append(
                f"  {fleet} {config}: {ll.get('ratio_to_oracle_free')} | "
                f"{rr.get('ratio_to_oracle_free')}"
            )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(18, 6.5))
    grid = results.get("grid")
    if grid:
        labels, ll, rr = [], [], []
        for fleet, loads in grid["results"].items():
            for config, entry in loads.get("0.8", {}).items():
                if isinstance(entry, dict) and "least_loaded" in entry:
                    labels.append(f"{fleet}\n{config}")
                    ll.append(entry["least_loaded"]["ratio_to_oracle_free"])
                    rr.append(entry["round_robin"]["ratio_to_oracle_free"])
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], ll, width=0.4, label="least_loaded")
        ax.bar([x + 0.2 for x in xs], rr, width=0.4, label="round_robin")
        ax.set_xticks(list(xs), labels, rotation=90, fontsize=6)
        ax.set_yscale("log")
        ax.axhline(1.15, color="grey", linestyle=":", linewidth=1)
        ax.set(title="Model, 80% load: p99 / free oracle's p99 (log)")
        ax.legend(fontsize=8)
    live = results.get("live_grid")
    if live:
        cells = live["cells"]
        xs = range(len(cells))
        ax2.bar(list(xs), [c["ratio_to_oracle_free"] or 0 for c in cells], label="live")
        shown = [(i, model_ratio(grid, c)) for i, c in enumerate(cells)]
        pts = [(i, m) for i, m in shown if m is not None]
        if pts:
            ax2.scatter(*zip(*pts, strict=True), color="black", zorder=3, label="model")
        for y in (1.15, 1.3):
            ax2.axhline(y, color="grey", linestyle=":", linewidth=1)
        ax2.set_xticks(list(xs), [cell_key(c).replace(" ", "\n", 1) for c in cells], rotation=90,
                       fontsize=6)  # fmt: skip
        ax2.set(title=f"Live, two instances: p99 / free oracle (time x{live['scale']:g})")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
