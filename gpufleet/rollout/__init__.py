"""Guarded rollouts: move an endpoint to a new approved model version through the ALB's blue/green weights.

The state lives in the team's endpoints table, so a crashed CLI can resume or roll back.
"""
