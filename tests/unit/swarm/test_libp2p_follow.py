"""Bounded ingress beyond max_peers: SELECT frames with an age, the sender's catch-up, idle-connection pruning."""

from __future__ import annotations

import os

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from swarmrl.swarm.transports.libp2p import follow
from swarmrl.swarm.transports.libp2p.follow import CatchUp, Follower, protected_peers
from swarmrl.swarm.transports.libp2p.frames import MalformedFrame
from swarmrl.swarm.transports.libp2p.selection import MAX_AGE_S, SelectState, parse_select, select_body


def peer() -> ID:
    return ID.from_pubkey(create_new_key_pair(os.urandom(32)).public_key)


def test_select_frames_carry_the_age_of_a_choice_and_bad_ages_are_malformed() -> None:
    assert parse_select(select_body(True, 2.5)) == (True, 2.5)
    assert parse_select(select_body(False, 2.5)) == (False, None)  # a decline has no age
    assert parse_select(b'{"want": true}') == (True, None)  # old senders
    assert parse_select(b'{"want": true, "age": 1e9}') == (True, MAX_AGE_S)  # clamped
    for bad in (b'{"want": true, "age": -1}', b'{"want": true, "age": "3"}', b'{"want": true, "age": true}'):
        with pytest.raises(MalformedFrame):
            parse_select(bad)
    with pytest.raises(MalformedFrame):
        parse_select(b'{"want": true, "age": NaN}')


def test_a_chosen_sender_is_told_on_a_new_stream_and_others_only_when_declined() -> None:
    chosen, other = peer(), peer()
    state = SelectState()
    state.supporting.update({chosen, other})
    assert state.pending({chosen, other}) == []  # everyone: a new stream needs no frame
    state.choose(frozenset({chosen.to_base58()}))
    frames = sorted(state.pending({chosen, other}), key=lambda x: x[1])
    assert [(p, want) for p, want, _ in frames] == [(other, False), (chosen, True)]
    assert all(age is not None and age >= 0.0 for _, _, age in frames)  # new streams: the age of the choice
    for p, want, _ in frames:
        state.told[p] = want
    assert state.pending({chosen, other}) == []
    state.choose(frozenset({other.to_base58()}))  # a flip on told streams carries no age
    assert sorted(state.pending({chosen, other}), key=lambda x: x[1]) == [
        (chosen, False, None),
        (other, True, None),
    ]


def test_sender_side_catch_up_is_asked_by_an_age_and_cancelled_by_a_decline() -> None:
    receiver = peer()
    state = SelectState()
    state.on_frame(receiver, select_body(True, 5.0))
    assert receiver in state.catch_up_since
    state.on_frame(receiver, select_body(False))
    assert receiver not in state.catch_up_since and receiver in state.declined_by
    state.on_frame(receiver, b'{"want": true}')  # no age: no catch-up (old receiver)
    assert receiver not in state.catch_up_since and receiver not in state.declined_by


def test_catch_up_sends_only_what_was_published_since_the_choice_and_only_once() -> None:
    a, b = peer(), peer()
    cu = CatchUp()
    cu.record(b"old", {b}, now=100.0)
    cu.record(b"new", set(), now=110.0)
    assert cu.missing(a, since=105.0, now=111.0) == [b"new"]  # nothing from before the choice
    cu.sent(b"new", a)
    assert cu.missing(a, since=105.0, now=111.0) == []
    assert cu.missing(b, since=0.0, now=111.0) == [b"new"]  # b already had "old"
    assert cu.missing(b, since=0.0, now=110.0 + follow.CATCH_UP_S + 1) == []  # expired
    for i in range(follow.CATCH_UP_MAX + 3):
        cu.record(b"f%d" % i, set(), now=200.0)
    assert len(cu.missing(a, since=0.0, now=200.0)) == follow.CATCH_UP_MAX


def test_only_idle_old_unprotected_connections_are_pruned_and_then_held() -> None:
    boot, idle, chosen, wanting, young = (peer() for _ in range(5))
    state = SelectState()
    state.choose(frozenset({chosen.to_base58()}))
    state.declined_by.update({boot, idle, chosen, young})  # wanting still wants our envelopes
    f = Follower(64)
    old = {boot, idle, chosen, wanting}
    f.observe(old, now=0.0)
    f.observe(old | {young}, now=follow.PRUNE_HOLD_S)
    now = follow.PRUNE_HOLD_S + 1
    assert f.idle(old | {young}, state, frozenset({boot}), over=5, now=now) == [idle]
    assert f.held(idle.to_base58(), now) and not f.held(young.to_base58(), now)
    assert not f.held(idle.to_base58(), now + follow.PRUNE_HOLD_S)
    assert f.idle(old, state, frozenset(), over=0, now=now) == []  # within max_peers: nothing
    assert f.idle(old, SelectState(), frozenset(), over=3, now=now) == []  # "everyone": nothing is idle


def test_protected_peers_are_the_bootstrap_ids() -> None:
    p = peer()
    assert protected_peers(
        [f"/ip4/10.0.0.1/tcp/4001/p2p/{p.to_base58()}", "/ip4/10.0.0.2/tcp/1", "junk"]
    ) == {p}
