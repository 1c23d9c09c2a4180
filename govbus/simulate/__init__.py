"""`govbus simulate`: a province on the bus at a scale, and the capacity model it is checked against.

``model`` holds the capacity model (``docs/capacity.md``), ``province`` and ``workload``
generate the province and what its sources publish, ``run`` drives the bus through it on a
real secured broker, ``counting`` and ``checks`` count what the broker holds and check every
store, ``report`` writes the results to ``bench/results/``.
"""
