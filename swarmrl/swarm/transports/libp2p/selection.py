"""Bounded ingress over push streams: which peers want this node's envelopes (``swarmrl.swarm.ingress``).

A node that supports selection says so in its push HELLO (``"select": 1``). Only to such peers does it send
SELECT frames (push frame kind 4, JSON ``{"want": true|false}``) on its outbound push stream: ``false`` asks
that peer to stop pushing its own envelopes here, ``true`` to resume. A sender pushes to every peer that
has not declined; old nodes never send SELECT (nor receive one), so they take and get everything as before.
State is per push stream: a new stream starts at "wanted", and the selecting side re-sends its wish on
every new stream (``pending``).

A receiver also sends ``want: true`` on every new stream to a chosen sender (a far member just dialled), with
``"age"``: seconds since it chose. The sender catches the receiver up with its own envelopes published within
that age (``follow.CatchUp``): what the receiver would have had if the stream had existed when it chose,
nothing older. A flip on an existing stream carries no age (its frame arrives within a round trip; a
catch-up there would mostly bring a slow sender's previous round, which then takes the sender's quota).
"""

from __future__ import annotations

import json
import math
import time

from libp2p.peer.id import ID

from swarmrl.swarm.transports.libp2p.frames import MalformedFrame

KIND_SELECT = 4
HELLO_FLAG = "select"


#: The largest "age" a sender honours (older choices get no catch-up beyond this).
MAX_AGE_S = 30.0


def select_body(want: bool, age: float | None = None) -> bytes:
    obj: dict[str, object] = {"want": want}
    if want and age is not None:
        obj["age"] = round(max(0.0, age), 3)
    return json.dumps(obj).encode()


def parse_select(body: bytes) -> tuple[bool, float | None]:
    """(want, age in seconds or None); raises MalformedFrame on a bad frame."""
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise MalformedFrame("SELECT frame is not JSON") from exc
    want = obj.get("want") if isinstance(obj, dict) else None
    if not isinstance(want, bool):
        raise MalformedFrame("SELECT frame needs a boolean 'want'")
    age = obj.get("age") if isinstance(obj, dict) else None
    if age is None:
        return want, None
    if isinstance(age, bool) or not isinstance(age, int | float) or not math.isfinite(age) or age < 0:
        raise MalformedFrame("SELECT 'age' must be a non-negative number of seconds")
    return want, min(float(age), MAX_AGE_S)


class SelectState:
    """Both sides of selection for one push mesh (trio thread only)."""

    def __init__(self) -> None:
        #: peers whose HELLO said they understand SELECT frames
        self.supporting: set[ID] = set()
        #: sender side: peers that asked us not to push to them
        self.declined_by: set[ID] = set()
        #: receiver side: the senders this node takes from (base58), None = everyone
        self.selection: frozenset[str] | None = None
        #: receiver side: what we last told each peer on its current outbound stream
        self.told: dict[ID, bool] = {}
        #: receiver side: when (monotonic) the current selection was drawn
        self.chosen_at = time.monotonic()
        #: sender side: peers that asked to be caught up, with the monotonic time from which on
        self.catch_up_since: dict[ID, float] = {}

    def wants(self, peer: ID) -> bool:
        """Sender side: may our own envelopes be pushed to ``peer``?"""
        return peer not in self.declined_by

    def wished(self, peer: ID) -> bool:
        """Receiver side: do we want ``peer``'s envelopes?"""
        return self.selection is None or peer.to_base58() in self.selection

    def choose(self, senders: frozenset[str] | None) -> None:
        """Receiver side: a new selection (None: everyone)."""
        if senders != self.selection:
            self.chosen_at = time.monotonic()
        self.selection = senders

    def pending(self, outbound: set[ID]) -> list[tuple[ID, bool, float | None]]:
        """SELECT frames to send, as (peer, want, age): peers with an outbound stream that support selection
        and have not been told our current wish. A stream starts at 'wanted'; a chosen sender is still told
        so on a new stream, with the age of the choice (its catch-up); under "everyone" a new stream needs no
        frame. A flip on a told stream carries no age: its frame arrives within a round trip, and a catch-up
        there would bring a slow sender's previous round."""
        out: list[tuple[ID, bool, float | None]] = []
        for peer in outbound:
            if peer not in self.supporting:
                continue
            wish = self.wished(peer)
            default = self.selection is None or not wish
            if self.told.get(peer, default) != wish:
                out.append((peer, wish, self.age() if peer not in self.told else None))
        return out

    def age(self) -> float:
        return time.monotonic() - self.chosen_at

    def on_frame(self, peer: ID, body: bytes) -> None:
        """Sender side: ``peer`` sent a SELECT frame (raises MalformedFrame on a bad one)."""
        want, age = parse_select(body)
        if want:
            self.declined_by.discard(peer)
            if age is not None:
                # the frame's transit makes this a little later than the choice: never earlier (an envelope
                # published before the choice is not the receiver's to take)
                self.catch_up_since[peer] = time.monotonic() - age
        else:
            self.declined_by.add(peer)
            self.catch_up_since.pop(peer, None)

    def forget(self, peer: ID, *, outbound: bool) -> None:
        if outbound:
            self.told.pop(peer, None)
        else:
            self.declined_by.discard(peer)
            self.supporting.discard(peer)
            self.catch_up_since.pop(peer, None)
