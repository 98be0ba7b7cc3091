"""Configure GPU hosts with the playbooks in ``playbooks/``, driven through ansible-runner.

``configure_nodes`` is what ``gpufleet nodes configure`` calls: it builds the agent wheel, narrows
the inventory to a team (and role), runs ``gpu-node.yml`` while streaming task events, and returns
a per-host recap, or raises ``PlaybookFailed`` naming the failed host, task and message.
"""

from gpufleet.nodes.events import HostRecap, NodeEvent, TaskFailure
from gpufleet.nodes.runner import PlaybookFailed, PlaybookResult, run_playbook

__all__ = ["HostRecap", "NodeEvent", "PlaybookFailed", "PlaybookResult", "TaskFailure", "run_playbook"]
