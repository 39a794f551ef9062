"""The HTTP and audience benchmarks take turns, so that a slow spell of a shared
machine falls on baseline and service alike."""

from __future__ import annotations

from bench.__main__ import Context


def test_actions_take_turns_and_each_keeps_its_own_runs() -> None:
    order: list[str] = []
    ctx = Context(smoke=False, repeat=3, database_url="sqlite:///")

    def action(label: str) -> dict[str, object]:
        order.append(label)
        return {"turn": order.count(label)}

    taken = ctx.measure_in_turns({"a": lambda: action("a"), "b": lambda: action("b")})

    assert order == ["a", "b", "a", "b", "a", "b"]
    assert [d["turn"] for d in taken["a"].details] == [1, 2, 3]
    assert [d["turn"] for d in taken["b"].details] == [1, 2, 3]
    assert len(taken["a"].seconds) == len(taken["b"].seconds) == 3
