"""The overhead bench's summary (medians over runs, ratios within a run), table and plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

# A window in which the hypervisor gave more than this share of the host's CPU to other
# guests measured them too (bench/README.md); the summary gives quiet windows on their own.
QUIET_STEAL_PCT = 2.0


def is_quiet(*windows: dict[str, Any]) -> bool:
    """Every window quiet (one recorded before the steal was: not known to be)."""
    return all(w.get("host_steal_pct", math.inf) <= QUIET_STEAL_PCT for w in windows)


def _median(values: list[float]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return round(statistics.median(clean), 3) if clean else math.nan


def _closed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = sorted({n for r in runs for n in r["closed"]})
    out: dict[str, Any] = {}
    for name in names:
        results = [r["closed"][name] for r in runs if name in r["closed"]]
        procs = sorted({p for res in results for p in res["cpu_us_per_request"]})
        out[name] = {
            "rps": _median([res["rps"] for res in results]),
            "rps_runs": [res["rps"] for res in results],
            "cpu_us_per_request": {
                p: _median([res["cpu_us_per_request"].get(p, math.nan) for res in results])
                for p in procs
            },
            "rss_mib": results[-1].get("rss_mib", {}),
            "errors": sum(res["errors"] for res in results),
        }
        quiet = [res for res in results if is_quiet(res)]
        if quiet:
            out[name]["quiet"] = {
                "runs": len(quiet),
                "rps": _median([res["rps"] for res in quiet]),
                "cpu_us_per_request": {
                    p: _median([res["cpu_us_per_request"].get(p, math.nan) for res in quiet])
                    for p in procs
                },
            }
    # Throughput per core of what is measured: 1 s / its own CPU per request.
    for name, own in (("gateway", "gateway-1"), ("litellm", "litellm"), ("nginx", "proxy")):
        if name in out:
            us = out[name]["cpu_us_per_request"].get(own, math.nan)
            out[name]["per_core_rps"] = round(1e6 / us, 1) if us and us > 0 else math.nan
    ratios = [
        r["closed"]["gateway"]["rps"] / r["closed"]["litellm"]["rps"]
        for r in runs
        if "litellm" in r["closed"] and r["closed"]["litellm"]["rps"] > 0
    ]
    out["gateway_over_litellm_rps"] = _median(ratios)
    quiet_ratios = [
        r["closed"]["gateway"]["rps"] / r["closed"]["litellm"]["rps"]
        for r in runs
        if "litellm" in r["closed"]
        and r["closed"]["litellm"]["rps"] > 0
        and is_quiet(r["closed"]["gateway"], r["closed"]["litellm"])
    ]
    if quiet_ratios:
        out["gateway_over_litellm_rps_quiet"] = _median(quiet_ratios)
    pair = [
        r["closed"]["gateway_x2"]["rps"] / r["closed"]["gateway"]["rps"]
        for r in runs
        if "gateway_x2" in r["closed"] and r["closed"]["gateway"]["rps"] > 0
    ]
    out["x2_over_x1_rps"] = _median(pair)
    return out


def _open(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in runs[0]["open"] if runs else []:
        per: dict[str, Any] = {}
        for name in sorted({n for r in runs for n in r["open"].get(rate, {})}):
            res = [r["open"][rate][name] for r in runs if name in r["open"].get(rate, {})]
            entry: dict[str, Any] = {
                q: _median([x["latency_ms"][q] for x in res]) for q in ("p50", "p90", "p99")
            }
            if name != "direct":
                for q in ("p50", "p90", "p99"):
                    entry[f"added_{q}"] = _median(
                        [
                            r["open"][rate][name]["latency_ms"][q]
                            - r["open"][rate]["direct"]["latency_ms"][q]
                            for r in runs
                            if name in r["open"].get(rate, {})
                        ]
                    )
                quiet = [
                    (r["open"][rate][name], r["open"][rate]["direct"])
                    for r in runs
                    if name in r["open"].get(rate, {})
                    and is_quiet(r["open"][rate][name], r["open"][rate]["direct"])
                ]
                if quiet:
                    entry["quiet"] = {"runs": len(quiet)} | {
                        f"added_{q}": _median(
                            [it["latency_ms"][q] - direct["latency_ms"][q] for it, direct in quiet]
                        )
                        for q in ("p50", "p90", "p99")
                    }
            entry["achieved_rate"] = _median([x["achieved_rate"] for x in res])
            entry["non_2xx"] = sum(
                n for x in res for s, n in x["statuses"].items() if not s.startswith("2")
            )
            per[name] = entry
        out[rate] = per
    return out


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if results.get("submit"):
        summary["closed"] = _closed(results["submit"])
        summary["open"] = _open(results["submit"])
    if results.get("floor"):
        runs = results["floor"]
        floor: dict[str, Any] = {}
        for mode in runs[0]:
            if mode == "run":
                continue
            us = _median([r[mode]["cpu_us_per_request"].get("floor", math.nan) for r in runs])
            floor[mode] = {
                "rps": _median([r[mode]["rps"] for r in runs]),
                "cpu_us_per_request": us,
                "per_core_rps": round(1e6 / us, 1) if us and us > 0 else math.nan,
            }
        gateway_us = _gateway_us(summary)
        if "wire" in floor and gateway_us:
            # What the gateway's own logic costs beyond its building blocks.
            floor["gateway_logic_us"] = round(gateway_us - floor["wire"]["cpu_us_per_request"], 1)
        summary["floor"] = floor
    if results.get("cluster"):
        runs = results["cluster"]
        summary["cluster"] = {
            name: {
                "rps": _median([r[name]["rps"] for r in runs]),
                "cpu_us_per_request": {
                    p: _median([r[name]["cpu_us_per_request"].get(p, math.nan) for r in runs])
                    for p in runs[0][name]["cpu_us_per_request"]
                },
            }
            for name in ("single", "cluster")
        }
    if results.get("inflight"):
        curve = results["inflight"]
        cost = [c["cpu_us_per_submit"].get("gateway-1", math.nan) for c in curve]
        summary["inflight"] = {
            "first_batch_us": cost[0],
            "last_batch_us": cost[-1],
            "last_over_first": round(cost[-1] / cost[0], 2) if cost[0] else math.nan,
        }
        # The curve drawn is the median-webhook-rate run's; point 3a is every run's ratio,
        # and their median (one run's curve can sit anywhere in a noisy machine's spread).
        ratios = [
            round(last / first, 2)
            for first, last in (
                r["submit_cpu_us_first_last"] for r in results.get("webhook_runs", [])
            )
            if first and last
        ]
        if ratios:
            summary["inflight"]["runs_last_over_first"] = ratios
            summary["inflight"]["median_last_over_first"] = _median(ratios)
    return summary


def _gateway_us(summary: dict[str, Any]) -> float:
    """The gateway's own CPU per submit in the submit part, if it ran."""
    gateway = summary.get("closed", {}).get("gateway", {})
    return float(gateway.get("cpu_us_per_request", {}).get("gateway-1", 0.0))


def _quiet_closed(closed: dict[str, Any]) -> str | None:
    """The closed loop's figures from quiet windows only, if any was."""
    parts = [
        f"{name} {c['quiet']['rps']:g} req/s, "
        f"{c['quiet']['cpu_us_per_request'].get(own, math.nan):g} us "
        f"({c['quiet']['runs']} of {len(c['rps_runs'])} runs)"
        for name, own in (("gateway", "gateway-1"), ("litellm", "litellm"))
        if "quiet" in (c := closed.get(name, {}))
    ]
    if not parts:
        return None
    ratio = closed.get("gateway_over_litellm_rps_quiet", "n/a")
    return (
        f"quiet windows only (host steal <= {QUIET_STEAL_PCT:g}%): {'; '.join(parts)}; "
        f"gateway / LiteLLM {ratio}"
    )


def table(results: dict[str, Any]) -> str:
    s = results.get("summary", {})
    lines = []
    closed = s.get("closed", {})
    if closed:
        lines.append(f"{'closed loop':<12} {'req/s':>9} {'per core':>9}  CPU us/request")
        for name in ("direct", "nginx", "gateway", "gateway_x2", "litellm"):
            if name in closed:
                c = closed[name]
                cpu = ", ".join(f"{p} {v:g}" for p, v in c["cpu_us_per_request"].items())
                per_core = c.get("per_core_rps", "")
                lines.append(f"{name:<12} {c['rps']:>9} {per_core!s:>9}  {cpu}")
        lines.append(f"gateway / LiteLLM req/s: {closed.get('gateway_over_litellm_rps')}")
        steal = results.get("machine", {}).get("host_steal_pct")
        lines.append(f"host steal over the run: {steal}% (above a few %, figures run slow)")
        quiet = _quiet_closed(closed)
        if quiet:
            lines.append(quiet)
    for rate, per in s.get("open", {}).items():
        row = ", ".join(
            f"{n} +{v.get('added_p50', 0):g}/+{v.get('added_p99', 0):g} ms"
            for n, v in per.items()
            if n != "direct"
        )
        quiet_row = ", ".join(
            f"{n} +{v['quiet']['added_p50']:g}/+{v['quiet']['added_p99']:g} ms "
            f"({v['quiet']['runs']})"
            for n, v in per.items()
            if "quiet" in v
        )
        direct = per.get("direct", {})
        lines.append(
            f"open {float(rate):g}/s: direct p50 {direct.get('p50')} p99 {direct.get('p99')} ms; "
            f"added p50/p99: {row}" + (f"; quiet windows: {quiet_row}" if quiet_row else "")
        )
    if "floor" in s:
        lines.append(f"floor (same parts, no logic): {s['floor']}")
    if "cluster" in s:
        lines.append(f"cluster: {s['cluster']}")
    if "inflight" in s:
        lines.append(f"in flight: {s['inflight']}")
    if "memory" in results:
        lines.append(f"memory: {results['memory']}")
    if "webhooks" in results:
        w = results["webhooks"]
        lines.append(
            f"webhooks: {w['relayed_per_second']}/s, lag {w['lag_ms']}, "
            f"CPU {w['cpu_us_per_webhook']} us, delivered {w['delivered']}/{w['webhooks_posted']}"
        )
        queued = w.get("queued_deliveries")
        if queued:
            lines.append(
                f"queued deliveries: {queued['delivered']}/{queued['count']} delivered "
                f"{queued['seconds_after_receiver_up']} s after the receiver came up"
            )
        for run in results.get("webhook_runs", []):
            lines.append(f"  webhook run: {run}")
        paced = w.get("below_saturation")
        if paced:
            lines.append(
                f"webhooks at {paced['rate_per_second']:g}/s: lag {paced['lag_ms']}, "
                f"delivered {paced['delivered']}/{paced['webhooks_posted']}"
            )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results.get("summary", {})
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    closed = s.get("closed", {})
    names = [n for n in ("direct", "nginx", "gateway", "gateway_x2", "litellm") if n in closed]
    axes[0].bar(names, [closed[n]["rps"] for n in names], color="tab:blue")
    axes[0].set_yscale("log")
    axes[0].set_title("closed loop (wrk -t1 -c32): requests/s")
    rates = sorted(s.get("open", {}), key=float)
    for name, colour in (("nginx", "tab:green"), ("gateway", "tab:red"), ("litellm", "tab:gray")):
        xs = [float(r) for r in rates if name in s["open"][r]]
        for q, style in (("added_p50", "-"), ("added_p99", "--")):
            ys = [s["open"][r][name][q] for r in rates if name in s["open"][r]]
            if xs:
                axes[1].plot(xs, ys, style, color=colour, marker="o", label=f"{name} {q[6:]}")
    axes[1].set_xscale("log")
    axes[1].set_yscale("symlog", linthresh=1)
    axes[1].set_ylim(bottom=0)
    axes[1].set_xlabel("offered requests/s (open loop)")
    axes[1].set_title("added latency over direct, ms")
    axes[1].legend(fontsize=7)
    curve = results.get("inflight", [])
    if curve:
        axes[2].plot(
            [c["in_flight_before"] for c in curve],
            [c["cpu_us_per_submit"].get("gateway-1", math.nan) for c in curve],
            marker="o",
            label="gateway",
        )
        axes[2].plot(
            [c["in_flight_before"] for c in curve],
            [c["cpu_us_per_submit"].get("redis", math.nan) for c in curve],
            marker="o",
            label="redis",
        )
        axes[2].set_ylim(bottom=0)
        axes[2].legend(fontsize=7)
    axes[2].set_xlabel("jobs in flight")
    axes[2].set_title("CPU per submit, us")
    fig.suptitle(f"gateway overhead ({results.get('generated_at', '')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The README's overhead table, straight from the results."""
    s = results.get("summary", {})
    closed, opened = s.get("closed", {}), s.get("open", {})
    at500 = opened.get("500.0", opened.get("500", {}))
    own = {"gateway": "gateway-1", "gateway_x2": "gateway-1", "nginx": "proxy",
           "litellm": "litellm", "direct": "mock"}  # fmt: skip
    rows = [
        "| | req/s (closed loop) | CPU us/request: itself + Redis | added p50 / p99 at 500/s |",
        "|---|---|---|---|",
    ]
    names = {"direct": "direct to the mock", "nginx": "nginx `least_conn`",
             "gateway": "**the gateway** (1 instance)", "gateway_x2": "two gateways behind nginx",
             "litellm": "LiteLLM proxy (1 worker)"}  # fmt: skip
    for name, label in names.items():
        if name not in closed:
            continue
        c = closed[name]
        cpu = c["cpu_us_per_request"]
        itself = cpu.get(own[name], math.nan)
        if name == "gateway_x2":
            itself = cpu.get("gateway-1", 0) + cpu.get("gateway-2", 0)
        redis = cpu.get("redis")
        cpu_text = _fmt(itself) + (f" + {_fmt(redis)}" if redis is not None else "")
        lat = at500.get(name, {})
        added = (
            f"+{_fmt(lat.get('added_p50'), 2)} / +{_fmt(lat.get('added_p99'), 2)} ms"
            if "added_p50" in lat
            else "—"
        )
        rows.append(f"| {label} | {_fmt(c['rps'])} | {cpu_text} | {added} |")
    steal = results.get("machine", {}).get("host_steal_pct")
    if steal is not None:
        rows += ["", f"Host steal over the run (`/proc/stat`): {steal}%."]
    quiet = _quiet_closed(closed)
    if quiet:
        rows += ["", quiet[0].upper() + quiet[1:] + "."]
    if "quiet" in at500.get("gateway", {}):
        q = at500["gateway"]["quiet"]
        rows.append(
            f"Added at 500/s in quiet windows: +{_fmt(q['added_p50'], 2)} / "
            f"+{_fmt(q['added_p99'], 2)} ms ({q['runs']} of the runs)."
        )
    return "\n".join(rows) + "\n"
