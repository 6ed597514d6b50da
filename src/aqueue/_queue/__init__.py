"""The producer side of a queue: :class:`~aqueue._queue.client.QueueClient`, which
``aqueue.Queue`` (``_app``) extends with running. This package never imports
``_runner``, nor ``_runner`` it.

The client is one object built from mixins, one module per concept, each using only
the ones below it (a straight line, so each part's type check sees what it calls):

- ``base``: ``QueueBase``, the settings, the registries and the backend slot;
- ``connection``: ``Connection``, the backend's lifecycle and the insert batcher's flush;
- ``control``: ``JobControl``, job handles, commit, repush, cancel, purges, admin reads;
- ``enqueue``: ``Enqueuing``, enqueue and enqueue_many (they return job handles);
- ``registration``: ``Registration``, the task/cron/periodic/hook/middleware decorators
  (a registered task holds the client it enqueues through);
- ``exec``: ``Exec``, executable tasks (allowing programs registers their task);
- ``client``: ``QueueClient`` and ``BoundQueue``.

Mixins rather than parts held by the client: every part reads and writes the same
attributes (``tasks``, the backend slot, ``_parts_factory``), which the runner, the
task and job handles and ``aqueue.testing`` read on the queue itself; one object keeps
that true and the public API unchanged.
"""
