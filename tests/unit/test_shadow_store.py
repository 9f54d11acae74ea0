"""The shared shadow evidence's pure pieces: reading the tenant's hash back, a worker's view
after a turn, and a turn put back after a failure."""

from __future__ import annotations

from rung.router.shadow_store import Pooled, Turn, adopt, parse


def test_the_hash_reads_back_as_counts_and_holds_even_for_a_tier_with_a_colon() -> None:
    pooled = parse(
        [b"small:served", b"7", b"small:sampled", b"3", b"small:agreed", b"1",
         b"eu:large:served", b"2", b"small:hold", b"1700000000.5", b"small:junk", b"9"]
    )  # fmt: skip
    assert pooled.counts == {"small": {"served": 7, "sampled": 3, "agreed": 1},
                             "eu:large": {"served": 2}}  # fmt: skip
    assert pooled.holds == {"small": 1700000000.5}


def test_the_view_adds_what_was_counted_meanwhile_and_drops_holds_that_are_over() -> None:
    pooled = Pooled(
        counts={"small": {"served": 10, "sampled": 4, "agreed": 1}, "medium": {"served": 5}},
        holds={"small": 100.0, "medium": 300.0},
    )
    meanwhile = Turn()
    meanwhile.add("small", "served", 2)
    meanwhile.add("large", "served")
    counts, running, over = adopt(pooled, meanwhile, wall=200.0)
    # small's hold ended at 100: its sums are for the next turn to clear; only what this
    # worker counted since is in its view
    assert over == {"small": 100.0}
    assert running == {"medium": 300.0}
    assert counts == {
        "small": {"served": 2, "sampled": 0, "agreed": 0},
        "medium": {"served": 5, "sampled": 0, "agreed": 0},
        "large": {"served": 1, "sampled": 0, "agreed": 0},
    }
    _, running, over = adopt(pooled, Turn(), wall=50.0)
    assert over == {}
    assert running == {"small": 100.0, "medium": 300.0}


def test_a_turn_that_failed_is_put_back_whole() -> None:
    failed = Turn()
    failed.add("small", "sampled", 2)
    failed.started["small"] = 500.0
    failed.ended["medium"] = 90.0
    later = Turn()
    later.add("small", "sampled")
    later.started["small"] = 400.0
    later.merge(failed)
    assert later.counts == {("small", "sampled"): 3}
    assert later.started == {"small": 500.0}  # the later end wins
    assert later.ended == {"medium": 90.0}
