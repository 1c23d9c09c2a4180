"""The runtime every processor shares: the batched loop and its one transaction per batch
(``batches``), keyed state restored from compacted topics (``partition_store``), the worker
processes (``worker``, ``host``, ``app``) and their metrics.
"""
