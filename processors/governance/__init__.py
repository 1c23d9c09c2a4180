"""Governance: the application channel (``acts``, ``authority``, ``subscriptions``, ``control``),
conflicts to verify, the sharing record's hash chain (``audit``), the assessment, and dead-letter
replay — what the data bureau and the departments decide, and how it is checked.
"""
