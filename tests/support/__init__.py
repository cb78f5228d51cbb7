"""What the test suites and the benchmarks share; nothing here is a test.

* ``kafka``: produce events and raw records, read a topic back, count it, start a broker.
* ``workers``: one real ``streamvec worker`` process (start, wait, query, kill), and polling.
* ``group``: :class:`~tests.support.group.Group`, the one way the suites start workers.
* ``ledger``: what a test produced and what must show; a feed that produces while things
  break; the checks that the workers hold exactly that.
* ``gaps``: offsets that never come as records (transactions, compaction, deleted records),
  and the progress records read back.
* ``records``: table and progress records for the unit tests of the vectors table's store.
* ``usecases``: sample glosses, partitions of keys, latency figures.
* ``users``: the shared group of workers behind the page, client and Prometheus tests.
* ``fixtures``, ``suites``, ``leaks``: pytest plugins (tests/conftest.py loads them).
"""
