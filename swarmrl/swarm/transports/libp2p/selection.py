"""Bounded ingress over push streams: which peers want this node's envelopes (``swarmrl.swarm.ingress``).

A node that supports selection says so in its push HELLO (``"select": 1``). Only to such peers does it send
SELECT frames (push frame kind 4, JSON ``{"want": true|false}``) on its outbound push stream: ``false`` asks
that peer to stop pushing its own envelopes here, ``true`` to resume. A sender pushes to every peer that
has not declined; old nodes never send SELECT (nor receive one), so they take and get everything as before.
State is per push stream: a new stream starts at "wanted", and the selecting side re-sends its wish on
every new stream (``pending``).
"""

from __future__ import annotations

import json

from libp2p.peer.id import ID

from swarmrl.swarm.transports.libp2p.frames import MalformedFrame

KIND_SELECT = 4
HELLO_FLAG = "select"


def select_body(want: bool) -> bytes:
    return json.dumps({"want": want}).encode()


def parse_select(body: bytes) -> bool:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise MalformedFrame("SELECT frame is not JSON") from exc
    want = obj.get("want") if isinstance(obj, dict) else None
    if not isinstance(want, bool):
        raise MalformedFrame("SELECT frame needs a boolean 'want'")
    return want


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

    def wants(self, peer: ID) -> bool:
        """Sender side: may our own envelopes be pushed to ``peer``?"""
        return peer not in self.declined_by

    def wished(self, peer: ID) -> bool:
        """Receiver side: do we want ``peer``'s envelopes?"""
        return self.selection is None or peer.to_base58() in self.selection

    def pending(self, outbound: set[ID]) -> list[tuple[ID, bool]]:
        """SELECT frames to send: peers with an outbound stream that support selection and have not been told
        our current wish (a stream starts at 'wanted', so 'wanted' needs no frame on a new stream)."""
        out = []
        for peer in outbound:
            if peer not in self.supporting:
                continue
            wish = self.wished(peer)
            if self.told.get(peer, True) != wish:
                out.append((peer, wish))
        return out

    def on_frame(self, peer: ID, body: bytes) -> None:
        """Sender side: ``peer`` sent a SELECT frame (raises MalformedFrame on a bad one)."""
        if parse_select(body):
            self.declined_by.discard(peer)
        else:
            self.declined_by.add(peer)

    def forget(self, peer: ID, *, outbound: bool) -> None:
        if outbound:
            self.told.pop(peer, None)
        else:
            self.declined_by.discard(peer)
            self.supporting.discard(peer)
