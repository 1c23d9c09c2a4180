"""The router: each accepted change projected for every active subscription, masked, delivered,
and recorded in the sharing record. ``logic`` routes, ``projection`` chooses fields, masks and
filters, ``backfill`` is an approval's initial load, ``loop`` runs it on the batched runtime.
"""
