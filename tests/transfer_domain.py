"""What a store holds besides its events, for the transfer tests.

Orders (sched_domain) give pending scheduled events and completed states; a
person's name is personal data; a mail whose handler fails stays a pending
handler; a projection gives a follower position.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from playthrough import Engine, Event, FollowerTransaction, Personal, Projection, State, state_id


@attrs.define
class Person(State, type_name="transfer.Person"):
    name: str = ""
    visits: int = 0


@attrs.define
class PersonJoined(Event, type_name="transfer.PersonJoined"):
    data_subject = "person_id"
    person_id: int = state_id(Person)
    name: Personal[str] = ""

    def apply(self, person: Person) -> None:
        person.name = self.name
        person.visits += 1


@attrs.define
class Mailbox(State, type_name="transfer.Mailbox"):
    mails: int = 0


@attrs.define
class Mailed(Event, type_name="transfer.Mailed"):
    box_id: int = state_id(Mailbox)
    broken: ClassVar[bool] = False
    sent: ClassVar[list[int]] = []

    def apply(self, box: Mailbox) -> None:
        box.mails += 1

    def handle(self, engine: Engine) -> None:
        if Mailed.broken:
            raise OSError("mail server down")
        Mailed.sent.append(self.box_id)


class Visits(Projection):
    name = "transfer.visits"

    def on_PersonJoined(self, event: PersonJoined, tx: FollowerTransaction) -> None:
        pass
