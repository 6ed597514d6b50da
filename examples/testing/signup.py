"""A small app to test: what happens when a user signs up.

- ``send_welcome`` mails the new user; the mail server may be down, so it is retried
  (after 30 s, then 2 min).
- ``remind`` is sent a day later, if the user has not confirmed by then.
- ``digest`` runs every hour and reports how many users signed up.

The "mail server" and the "database" are plain module state here, so that the tests
(test_signup.py) can look at them and make the server fail."""

from __future__ import annotations

from aqueue import Backoff, Queue, current_job

queue = Queue("signup")

outbox: list[str] = []  # mails sent, as "<kind>:<user id>"
confirmed: set[int] = set()
signups: list[int] = []
digests: list[int] = []
mail_server = {"failures_left": 0}


class MailServerDown(Exception):
    pass


def _send(kind: str, user_id: int) -> None:
    if mail_server["failures_left"] > 0:
        mail_server["failures_left"] -= 1
        raise MailServerDown("mail server unreachable")
    outbox.append(f"{kind}:{user_id}")


@queue.task(retries=2, backoff=Backoff.sequence(30, 120))
async def send_welcome(user_id: int) -> int:
    _send("welcome", user_id)
    return current_job().attempt


@queue.task(retries=0)
async def remind(user_id: int) -> bool:
    if user_id in confirmed:
        return False
    _send("reminder", user_id)
    return True


@queue.periodic(every=3600)
async def digest() -> int:
    digests.append(len(signups))
    return len(signups)


async def sign_up(user_id: int) -> None:
    """What the web handler calls: record the user, queue the mails."""
    signups.append(user_id)
    await send_welcome.enqueue(user_id)
    await remind.options(delay=86400).enqueue(user_id)
