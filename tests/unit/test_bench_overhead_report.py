"""The overhead bench's summary: medians over every run, and over the quiet windows alone."""

from __future__ import annotations

from typing import Any

from bench.overhead_report import markdown, summarize, table


def _window(rps: float, us: float, steal: float | None, proc: str) -> dict[str, Any]:
    window: dict[str, Any] = {"rps": rps, "cpu_us_per_request": {proc: us}, "errors": 0}
    if steal is not None:
        window["host_steal_pct"] = steal
    return window


def _latency(p50: float, p99: float, steal: float | None) -> dict[str, Any]:
    window: dict[str, Any] = {
        "latency_ms": {"p50": p50, "p90": p99, "p99": p99},
        "achieved_rate": 500.0,
        "statuses": {"202": 2000},
    }
    if steal is not None:
        window["host_steal_pct"] = steal
    return window


def _run(gateway: tuple[float, float, float | None], litellm_steal: float | None) -> dict[str, Any]:
    rps, us, steal = gateway
    return {
        "closed": {
            "gateway": _window(rps, us, steal, "gateway-1"),
            "litellm": _window(100.0, 10_000.0, litellm_steal, "litellm"),
        },
        "open": {
            "500.0": {
                "direct": _latency(0.2, 1.0, 0.0),
                "gateway": _latency(0.2 + us / 500, 1.0 + us / 250, steal),
            }
        },
    }


def test_quiet_windows_are_summarized_on_their_own() -> None:
    # The middle run's gateway window was stolen from: the quiet view leaves it out.
    runs = [
        _run((1200.0, 750.0, 0.5), 0.1),
        _run((600.0, 1500.0, 20.0), 0.3),
        _run((1000.0, 900.0, 1.9), 9.0),
    ]
    summary = summarize({"submit": runs})
    gateway = summary["closed"]["gateway"]
    assert gateway["rps"] == 1000.0  # every run's median
    assert gateway["quiet"] == {
        "runs": 2,
        "rps": 1100.0,
        "cpu_us_per_request": {"gateway-1": 825.0},
    }
    # A ratio counts only where both of its windows were quiet: the first run alone.
    assert summary["closed"]["gateway_over_litellm_rps_quiet"] == 12.0
    at500 = summary["open"]["500.0"]["gateway"]["quiet"]
    assert at500["runs"] == 2
    assert at500["added_p50"] == 1.65  # the medians of 1.5 and 1.8 ms
    results = {"submit": runs, "summary": summary, "machine": {"host_steal_pct": 4.0}}
    assert "quiet windows only (host steal <= 2%): gateway 1100 req/s, 825 us (2 of 3 runs)" in (
        table(results)
    )
    assert "Added at 500/s in quiet windows: +1.65 / +3.30 ms (2 of the runs)." in (
        markdown(results)
    )


def test_runs_recorded_before_the_steal_was_have_no_quiet_view() -> None:
    runs = [_run((1200.0, 750.0, None), None)]
    summary = summarize({"submit": runs})
    assert "quiet" not in summary["closed"]["gateway"]
    assert "gateway_over_litellm_rps_quiet" not in summary["closed"]
    assert "quiet" not in summary["open"]["500.0"]["gateway"]
    assert "quiet windows" not in table({"submit": runs, "summary": summary})
