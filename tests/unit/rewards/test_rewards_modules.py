"""Catalogue modules through the registry: inputs from columns/text, outputs per the spec."""

from __future__ import annotations

from typing import Any

import pytest

from swarmrl.errors import RewardError
from swarmrl.rewards.base import RewardOutput, Sample
from swarmrl.rewards.catalogue import names as catalogue_names
from swarmrl.rewards.registry import default_registry

REG = default_registry(load_plugins=False)


def run(name: str, group: list[Sample], **params: Any) -> list[RewardOutput]:
    return REG.create(name, params).score_group(group)


def s(completion: str, answer: str = "", **extras: Any) -> Sample:
    return Sample("q", completion, answer, completion_ids=list(range(len(completion))), extras=extras)


def test_everything_is_registered() -> None:
    for name in catalogue_names():
        assert name in REG
    assert {"exact_match", "dataset_score", "format"} <= set(REG.names())


def test_unknown_and_bad_params() -> None:
    with pytest.raises(RewardError, match="unknown reward module"):
        REG.create("no_such_reward")
    with pytest.raises(RewardError, match="bad params"):
        REG.create("gra", {"treshold": 1.0})
    with pytest.raises(RewardError):
        REG.create("gra", {"comparator": "=="})
    with pytest.raises(RewardError, match="bad parameter value"):
        REG.create("gra", {"threshold": "high"})
    with pytest.raises(RewardError):
        REG.create("gra", {"outcome": {"name": "exact_match", "weight": 2}})


def test_verpo_module() -> None:
    rows = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]]
    group = [s("x", test_results=r) for r in rows] + [s("no tests")]
    out = run("verpo", group, combine="dense")
    assert [o.scalar for o in out[:4]] == pytest.approx([0.5, 1 / 6, 1.0, 0.0])
    assert out[4].scalar is None
    summed = run("verpo", group[:4])
    assert [o.scalar for o in summed] == pytest.approx([0.5, 1 / 6, 2.0, 0.0])
    gated = run("verpo", group[:4], combine="gate", lam=0.5)
    assert [o.scalar for o in gated] == pytest.approx([0.25, 1 / 12, 1.0, 0.0])


def test_co_reward_worked_example() -> None:
    orig = ["\\boxed{3}", "so \\boxed{3}", "\\boxed{5}", "no answer"]
    para = ["\\boxed{5}", "\\boxed{5}", "\\boxed{3}", "\\boxed{{5}}"]
    group = [s(t, view="original") for t in orig] + [s(t, view="paraphrase") for t in para]
    # last paraphrase answer is "{5}" (balanced braces), so paraphrase votes: 5, 5, 3, {5} -> '5'
    out = run("co_reward", group)
    assert [o.scalar for o in out[:4]] == [0.0, 0.0, 1.0, 0.0]
    assert [o.scalar for o in out[4:]] == [0.0, 0.0, 1.0, 0.0]
    empty = [s("\\boxed{1}", view="original"), s("nothing", view="paraphrase")]
    assert [o.scalar for o in run("co_reward", empty)] == [0.0, 0.0]  # all-empty other view
    with pytest.raises(RewardError):
        run("co_reward", [s("x", view="third")])


def test_lsc_par_modules() -> None:
    g = [s("x", score=2.0, ref_rewards=[1.0, 2.5, 0.0])]
    assert run("lsc", g)[0].scalar == pytest.approx(-0.956018, abs=1e-6)
    assert run("par", g)[0].scalar == pytest.approx(0.663132, abs=1e-6)
    assert run("par", g, k=2)[0].scalar == pytest.approx(0.710584, abs=1e-6)
    two = [s("x", h=1.0, b=-1.0)]
    props = [{"name": "column", "params": {"key": "h"}}, {"name": "column_b", "params": {}}]
    with pytest.raises(RewardError):
        run("lsc", two, properties=props)
    reg_props = [{"name": "column", "params": {"key": "h"}}]
    assert run("lsc", two, properties=reg_props, refs={"column": 0.5})[0].scalar == pytest.approx(
        -0.474077, abs=1e-6
    )
    with pytest.raises(RewardError, match="reference"):
        run("lsc", [s("x", score=1.0)])


def test_ensemble_and_ctrl_u_modules() -> None:
    g = [s("x", a=1.0, b=2.0, c=4.0, uncertainty=0.5)]
    members = [{"name": "column", "params": {"key": k}} for k in "abc"]
    got = {
        agg: run("ensemble", g, members=members, aggregate=agg, lam=lam)[0].scalar
        for agg, lam in [
            ("mean", 1.0),
            ("median", 1.0),
            ("mean_minus_std", 1.0),
            ("worst_case", 1.0),
            ("uwo", 0.5),
        ]
    }
    assert got == pytest.approx(
        {"mean": 2.333333, "median": 2.0, "mean_minus_std": 1.086114, "worst_case": 1.0, "uwo": 1.555556},
        abs=1e-6,
    )
    cu = run("ctrl_u", g, of={"name": "column", "params": {"key": "b"}})[0]
    assert cu.scalar == pytest.approx(2.0 * 0.606531, abs=1e-6)
    g2 = [s("x", a=1.0, b=3.0)]
    dis = run("ctrl_u", g2, of={"name": "column", "params": {"key": "a"}}, members=members[:2])[0]
    assert dis.info["uncertainty"] == 1.0


def test_rpr_module_spans() -> None:
    text = "First, we need to compute x. Wait, let me check. Therefore x = 2."
    assert run("rpr", [s(text)])[0].scalar == pytest.approx(0.25)
    assert run("rpr", [s(text)], span="after_marker", find_quirk=True)[0].scalar == pytest.approx(0.15)
    assert run("rpr", [s(text)], span="after_marker")[0].scalar == pytest.approx(0.25)
    think = f"<think>{text}</think><answer>2</answer>"
    assert run("rpr", [s(think)], span="think")[0].scalar == pytest.approx(0.25)
    assert run("rpr", [s(think)], require_boxed=True)[0].scalar == 0.0
    partial = run("rpr", [s(think, "2"), s(think, "3")], mode="partial_credit")
    assert [o.scalar for o in partial] == pytest.approx([1.0, 0.25])
    cal = run("rpr_calibration", [s(text, score=0.3), s(text, score=0.7)])
    assert [o.scalar for o in cal] == pytest.approx([0.325, 0.7])


def test_accuracy_module() -> None:
    g = [s("\\boxed{1/2}", "0.5"), s("<answer>$4$</answer>", "4"), s("5", "4"), s("x", "")]
    assert [o.scalar for o in run("accuracy", g)] == [1.0, 1.0, 0.0, None]
    assert run("accuracy", g[3:], unparseable_gold="one")[0].scalar == 1.0


def test_length_modules() -> None:
    g = [s("a" * n, "z") for n in (70, 90, 101)]
    assert [o.scalar for o in run("dapo_overlong", g, max_len=100, cache=20)] == pytest.approx(
        [0.0, -0.5, -1.0]
    )
    assert [o.scalar for o in run("linear_overlong", g, limit=80, coef=0.01)] == pytest.approx(
        [0.0, -0.1, -0.21]
    )
    cos = run("cosine_length", [s("a" * 250, "z"), s("z" + " " * 249, "z")])
    assert [o.scalar for o in cos] == pytest.approx([-0.926777, 0.926777], abs=1e-6)
    with pytest.raises(RewardError, match="completion_ids"):
        run("dapo_overlong", [Sample("q", "abc", "z")])
    assert run("dapo_overlong", [Sample("q", "abc", "z")], unit="chars", max_len=2, cache=1)[0].scalar == -1.0


def test_format_modules() -> None:
    good = "<think>\nabc\n</think>\n<answer>\n4\n</answer>"
    for name in ("think_format", "r1_format", "tag_count", "rlpr_format"):
        assert run(name, [s(good)])[0].scalar == 1.0
    assert run("r1_format", [s(good + "\nmore")], strict_end=True)[0].scalar == 0.0
    assert run("reasoning_steps", [s("First, a. Next, b.")])[0].scalar == pytest.approx(2 / 3)


def test_renorm_module() -> None:
    g = [
        Sample("q", "1;2", "1;2", gold_steps=("1", "2")),
        Sample("q", "1;3", "1;2", gold_steps=("1", "2")),
    ]
    out = run("renorm", g)
    assert out[0].step_rewards == [1.0, 1.0] and out[1].step_rewards == [0.0, -1.0]
    assert out[0].scalar is None


def test_gated_levels_and_group_normalized() -> None:
    g = [s("x", a=1.0, b=0.5, c=2.0), s("x", a=0.0, b=0.5, c=2.0)]
    levels = [
        {"name": "column", "params": {"key": "a"}, "threshold": 1.0},
        {"name": "column", "params": {"key": "b"}, "threshold": 0.5},
        {"name": "column", "params": {"key": "c"}},
    ]
    assert [o.scalar for o in run("gated_levels", g, levels=levels)] == [3.5, 0.0]
    with pytest.raises(RewardError):
        run("gated_levels", g, levels=[{"name": "column"}, {"name": "column"}])
    gn = run("group_normalized", [s("1", "1"), s("0", "1")], eps=1e-6)
    assert [o.scalar for o in gn] == pytest.approx([0.707106, -0.707106], abs=1e-5)


def test_carl_modules() -> None:
    drive = [{"progress": 0.5, "overspeed": 1.115, "ttc_violated": True}, {"progress": 0.5, "terminal": "collision"},
             {"progress": 9.0}]  # fmt: skip
    out = run("carl_drive", [s("x", carl_steps=drive)])[0]
    assert out.info["step_rewards"] == pytest.approx([0.125, -0.5])  # episode ends at the collision
    g = [s("x", prog=0.5, slow=0.5, unsafe=0.0), s("x", prog=0.5, slow=0.5, unsafe=1.0)]
    col = lambda k: {"name": "column", "params": {"key": k}}  # noqa: E731
    carl = run("carl", g, progress=col("prog"), penalties=[col("slow")], terminal=[col("unsafe")])
    assert [o.scalar for o in carl] == pytest.approx([0.25, -0.75])


def test_step_match_edge_cases() -> None:
    g = [
        Sample("q", "1;2;3", "1;2", gold_steps=("1", "2")),
        Sample("q", "1", "1;2", gold_steps=("1", "2")),
        Sample("q", "7", "7"),
    ]
    out = run("step_match", g, scalar="all")
    assert out[0].step_rewards == [1.0, 1.0, 0.0] and out[0].scalar == 0.0  # extra step
    assert out[1].step_rewards == [1.0] and out[1].scalar == 0.0
    assert out[2].scalar is None and out[2].step_rewards is None


def test_catalogue_doc_lists_every_module() -> None:
    from pathlib import Path

    import swarmrl.rewards as pkg

    doc = (Path(pkg.__file__).parent / "CATALOGUE.md").read_text()
    missing = [n for n in REG.names() if f"`{n}`" not in doc]
    assert missing == []
