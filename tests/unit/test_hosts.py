"""Receiver hosts: a slow one is held to its share of the delivery slots, a fast one is not."""

from __future__ import annotations

from gateway.relay import hosts
from gateway.relay.hosts import Hosts


def test_a_fast_host_may_use_every_slot() -> None:
    now = [0.0]
    limits = Hosts(2, clock=lambda: now[0])
    tickets = [limits.start("fast:443") for _ in range(10)]
    assert None not in tickets
    for ticket in tickets:
        limits.done("fast:443", ticket, 0.01)  # type: ignore[arg-type]
    assert [limits.start("fast:443") for _ in range(10)].count(None) == 0


def test_a_host_is_slow_by_its_average_or_by_a_delivery_out_too_long() -> None:
    now = [0.0]
    limits = Hosts(2, clock=lambda: now[0])
    # By its average: deliveries that took 3 s.
    for _ in range(3):
        ticket = limits.start("late:443")
        limits.done("late:443", ticket, 3.0)  # type: ignore[arg-type]
    assert limits.slow("late:443")
    assert [limits.start("late:443") for _ in range(3)] == [4, 5, None]
    # By one delivery out for a second: a host that just stopped answering.
    first = limits.start("hung:80")
    assert first is not None
    assert not limits.slow("hung:80")
    assert limits.start("hung:80") is not None  # two out: at the limit, but not slow yet
    assert limits.start("hung:80") is not None
    now[0] += hosts.SLOW
    assert limits.slow("hung:80")
    assert limits.start("hung:80") is None


def test_deliveries_put_off_come_back_in_turn_at_the_hosts_pace() -> None:
    limits = Hosts(4)
    for _ in range(2):
        ticket = limits.start("h:80")
        limits.done("h:80", ticket, 8.0)  # type: ignore[arg-type]
    dues = [limits.defer_until("h:80", 1000.0) for _ in range(4)]
    # Four slots answering every 8 s: one comes back every 2 s, after the first half second.
    assert dues == [1002.5, 1004.5, 1006.5, 1008.5]
    later = [limits.defer_until("h:80", 1000.0) for _ in range(5000)]
    assert max(later) == 1000.0 + hosts.MAX_DEFER  # a very long backlog is capped


def test_hosts_are_keyed_by_name_and_port_and_forgotten_past_a_bound() -> None:
    assert Hosts.of("https://Hooks.Example.com/a?b=1") == "hooks.example.com:https"
    assert Hosts.of("http://user:pw@127.0.0.2:8080/hook") == "127.0.0.2:8080"
    limits = Hosts(1)
    for n in range(hosts.REMEMBERED + 5):
        ticket = limits.start(f"h{n}:80")
        limits.done(f"h{n}:80", ticket, 2.0)  # type: ignore[arg-type]
    assert not limits.slow("h0:80")  # the oldest went first
    assert limits.slow(f"h{hosts.REMEMBERED + 4}:80")
