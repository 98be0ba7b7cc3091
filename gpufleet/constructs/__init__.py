"""Reusable constructs: typed props, secure defaults, ``grant_*`` helpers, exposed attributes.

They know nothing of gpufleet's config; stacks translate the config into their props.
"""
