"""Stacks translate the platform config into construct props: ``platform`` and one ``team-<name>`` per team."""
