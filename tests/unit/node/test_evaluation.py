"""The pass@k estimator (Chen et al. 2021) on hand-built counts, and the saved node config."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError
from swarmrl.node.evaluation import default_ks, pass_at_k
from swarmrl.node.saved_config import FILE_NAME, read_node_config, write_node_config


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 3, 1, 0.3),  # pass@1 is the fraction correct
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (8, 1, 4, 0.5),  # 1 - C(7,4)/C(8,4) = 1 - 35/70
        (6, 0, 3, 0.0),  # nothing correct
        (6, 4, 3, 1.0),  # n - c < k: every draw of 3 holds a correct one
        (6, 6, 6, 1.0),
        (20, 5, 10, 1 - math.comb(15, 10) / math.comb(20, 10)),
    ],
)
def test_pass_at_k_hand_built(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_sample() -> None:
    for n, c, k in [(5, 1, 2), (6, 2, 3), (7, 3, 4), (7, 0, 2), (8, 5, 4)]:
        samples = [True] * c + [False] * (n - c)
        subsets = list(itertools.combinations(samples, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)


def test_default_ks() -> None:
    assert default_ks(0) == ()
    assert default_ks(1) == (1,)
    assert default_ks(8) == (1, 2, 4, 8)
    assert default_ks(10) == (1, 2, 4, 8, 10)


def test_node_config_round_trips_and_follows_a_moved_data_dir(tmp_path: Path) -> None:
    cfg = NodeConfig.model_validate(
        {"node": {"data_dir": str(tmp_path / "old"), "seed": 7}, "model": {"lora_rank": 4}}
    )
    write_node_config(cfg, tmp_path / "moved")
    assert (tmp_path / "moved" / FILE_NAME).is_file()
    back = read_node_config(tmp_path / "moved")
    assert back.node.data_dir == tmp_path / "moved"
    assert back.model_copy(update={"node": cfg.node}) == cfg
    with pytest.raises(ConfigError, match=r"node-config\.yaml' does not exist"):
        read_node_config(tmp_path / "elsewhere")
