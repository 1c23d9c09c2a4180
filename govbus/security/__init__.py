"""Authenticated principals (SASL/SCRAM), their credentials, and TLS material.

The broker refuses what the sharing rules forbid: every department, the processors, the
governance staff and the admin tooling are principals of their own, and ACLs derived from
the catalog and the subscriptions (``govbus.topics.acls``) say what each may do.
"""
