"""routing.json's human side: the summary table and the plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.placers import ORACLE


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    model = results.get("model")
    if model:
        lines.append("MODEL (medians over seeds; p99/mean in model seconds)")
        lines.append(
            f"{'load':>5} {'policy':<16} {'mean':>7} {'p99':>7} {'p99/oracle':>10} {'rr/p99':>7}"
        )
        for load, row in model["results"].items():
            for policy, e in row.items():
                lines.append(
                    f"{load:>5} {policy:<16} {_f(e['mean'], 1):>7} {_f(e['p99'], 1):>7} "
                    f"{_f(e.get('p99_ratio_to_oracle')):>10} {_f(e.get('rr_p99_over')):>7}"
                )
    admission = results.get("admission")
    if admission:
        lines.append("\nADMISSION DEPTH (max_concurrency = k x parallelism), p99/oracle; rr/LL")
        for depth, rows in admission["results"].items():
            for load, row in rows.items():
                ll = row["least_loaded"]
                lines.append(
                    f"  {depth:>3} load {load:>4}: least_loaded {_f(ll['p99_ratio_to_oracle'])}"
                    f"  round_robin {_f(row['round_robin']['p99_ratio_to_oracle'])}"
                    f"  rr/LL {_f(ll['rr_p99_over'])}"
                )
    for name in ("failure", "failure_severe"):
        part = results.get(name)
        if not part:
            continue
        sc, inputs = part["inputs"]["scenario"], part["inputs"]
        lines.append(
            f"\n{name.upper()} (80% load; {sc['dies'][0]} dies, {sc['slows_4x'][0]} 4x slower at"
            f" {inputs['event_at']:g} s; load after {sc['load_after_event']}; "
            f"{len(inputs['seeds'])} seeds)"
        )
        for policy, e in part["policies"].items():
            if policy == ORACLE:
                continue
            rec = e.get("recovery_seconds")
            lines.append(
                f"  {policy:<32} recovery {'never' if rec is None else f'{rec:g} s':>7}"
                f"  before-event ratio {_f(e.get('ratio_before_event_median'))}"
                f"  failed {e['failed']}  lost {e['lost']}"
            )
    experiments = results.get("experiments")
    if experiments:
        lines.append("\nTHE GATEWAY BEFORE (bench/variants.py, for comparison): p99/oracle")
        for load, row in experiments["steady"].items():
            cells = "  ".join(
                f"{p} {_f(e.get('p99_ratio_to_oracle'))}" for p, e in row.items() if p != ORACLE
            )
            lines.append(f"  load {load}: {cells}")
        lines.append("MODEL FIDELITY (p99/oracle with a simplification of the model undone)")
        for name, rows in experiments["fidelity"].items():
            for policy in (p for p in next(iter(rows.values())) if p != ORACLE):
                cells = "  ".join(
                    f"load {load} {_f(row[policy]['p99_ratio_to_oracle'])}"
                    for load, row in rows.items()
                )
                lines.append(f"  {name:<20} {policy:<24} {cells}")
    live = results.get("live")
    if live:
        lines.append(f"\nLIVE (real processes, time x{live['scale']:g}; model-equivalent seconds)")
        for key, e in live.items():
            if not isinstance(e, dict) or "model_seconds" not in e:
                continue
            m = e["model_seconds"]
            lines.append(
                f"  {key:<22} n {m['n']:>5} mean {_f(m['mean'], 1):>6} p99 {_f(m['p99'], 1):>6}"
                f"  accepted {e['accepted']} failed {e['failed']} lost {e['lost']}"
                f"  gateway cpu {_f(e['gateway_cpu_share'])}"
            )
        if "least_loaded" in live and "round_robin" in live:
            ratio = live["round_robin"]["model_seconds"]["p99"] / max(
                1e-9, live["least_loaded"]["model_seconds"]["p99"]
            )
            lines.append(f"  round_robin p99 / least_loaded p99 = {ratio:.2f}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(18, 9.5))
    model = results.get("model")
    if model:
        _model_panels(axes[0][0], axes[0][1], model["results"])
    admission = results.get("admission")
    if admission:
        _admission_panel(axes[0][2], admission["results"])
    failure = results.get("failure")
    if failure:
        _failure_panels(axes[1][0], axes[1][1], failure)
    live = results.get("live")
    if live:
        _live_panel(axes[1][2], live, model["results"] if model else None)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _model_panels(ax: Any, ax2: Any, rows: dict[str, Any]) -> None:
    loads = list(rows)
    xs = [float(x) * 100 for x in loads]
    for p in next(iter(rows.values())):
        ax2.plot(xs, [rows[x][p]["p99"] for x in loads], marker="o", label=p)
        if p != ORACLE:
            ax.plot(xs, [rows[x][p]["p99_ratio_to_oracle"] for x in loads], marker="o", label=p)
    for y in (1.15, 1.3):
        ax.axhline(y, color="grey", linestyle=":", linewidth=1)
        ax.text(xs[0], y, f"{y}x", fontsize=8, va="bottom")
    ax.set(title="Model: p99 completion / oracle's p99", xlabel="load (% of capacity)")
    ax2.set(title="Model: p99 completion (model s)", xlabel="load (% of capacity)")
    ax.legend(fontsize=8)
    ax2.legend(fontsize=8)


def _admission_panel(ax: Any, results: dict[str, Any]) -> None:
    depths = list(results)
    policies = [p for p in next(iter(next(iter(results.values())).values())) if p != ORACLE]
    for i, p in enumerate(policies):
        values = [results[d]["0.8"][p]["p99_ratio_to_oracle"] for d in depths]
        ax.bar([j + i * 0.35 for j in range(len(depths))], values, width=0.35, label=p)
    ax.set_xticks([j + 0.175 for j in range(len(depths))], list(depths))
    ax.axhline(1.0, color="grey", linewidth=1)
    ax.set(title="Model, 80%: p99 / oracle by admission depth (x parallelism)")
    ax.legend(fontsize=8)


def _failure_panels(ax: Any, ax2: Any, failure: dict[str, Any]) -> None:
    starts = [s + failure["inputs"]["window_seconds"] / 2 for s in failure["window_starts"]]
    event = failure["inputs"]["event_at"]
    for p, e in failure["policies"].items():
        style = "--" if "+" in p else "-"
        if "+" not in p:
            ax.plot(starts, e["p99"], style, label=p, linewidth=1.3)
        if "ratio_to_oracle" in e:
            ax2.plot(starts, e["ratio_to_oracle"], style, label=p, linewidth=1.1)
    for a in (ax, ax2):
        a.axvline(event, color="red", linestyle="--", linewidth=1)
        a.set_xlabel("arrival time (model s); red: one backend dies, one becomes 4x slower")
    ax2.axhline(1.2, color="grey", linestyle=":", linewidth=1)
    ax.set(title="Model, 80%: windowed p99 (10 s windows, pooled over seeds)", ylabel="model s")
    ax2.set(title="... ratio to the oracle (dashed: experiments, not the gateway's code)")
    ax.legend(fontsize=8)
    ax2.legend(fontsize=7)


def _live_panel(ax: Any, live: dict[str, Any], rows: dict[str, Any] | None) -> None:
    keys = [k for k, e in live.items() if isinstance(e, dict) and "model_seconds" in e]
    ax.bar(range(len(keys)), [live[k]["model_seconds"]["p99"] for k in keys], label="live p99")
    if rows and "0.8" in rows:
        row = rows["0.8"]
        shown = [(i, row[k]["p99"]) for i, k in enumerate(keys) if k in row]
        ax.scatter(*zip(*shown, strict=True), color="black", zorder=3, label="model p99 (80%)")
    ax.set_xticks(range(len(keys)), keys, rotation=15, fontsize=8)
    ax.set(title=f"Live, 80%: p99 in model-equivalent s (time x{live['scale']:g})")
    ax.legend(fontsize=8)
