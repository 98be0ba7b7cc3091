"""Disaster recovery: rebuild a team's platform in the DR region from code and replicated data.

``restore`` reads only the replica (the registry export and the model artifacts that S3 replication
delivered); ``rebuild`` synthesizes and applies the stacks for the DR region, then restores and
redeploys; ``drill`` runs the whole loss-and-rebuild in the local cloud and measures the RTO.
"""
