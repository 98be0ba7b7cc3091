"""The team tables as the agents and the control plane both use them (lower floor).

``dynamo`` is the one DynamoDB codec; ``jobs``, ``models`` and ``endpoints`` hold each table's records and
the conditional writes on them. Nothing here exports, replicates or decides policy: that is the control
plane's job.
"""
