"""The job store: the ``JobStore`` interface and its values (``base``), the SQL store
(``store``) over its executor (``executor``: connections, retries, errors) and one module
of SQL per dialect (``sql``), the tables (``schema``, ``tables``), and the write batching
and dispatch marks (``batcher``, ``marker``) the producer and the runner use."""
