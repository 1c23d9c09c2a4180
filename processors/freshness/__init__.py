"""Freshness: how late each source is against its SLA (``sla``) and how long deliveries take,
measured by faust agents (``agents``) and watched for silent sources (``monitor``).
"""
