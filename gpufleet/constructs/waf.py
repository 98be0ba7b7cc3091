"""RegionalWebAcl: a WAF web ACL of AWS managed rule groups in front of an internet-facing load balancer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from constructs import Construct

from gpufleet.constructs.blocks import blocks
from gpufleet.constructs.suppress import skip_checks
from gpufleet.providers import Wafv2WebAcl, Wafv2WebAclAssociation

# Baseline, IP reputation, anonymizers (VPNs, Tor, hosting providers) and known bad inputs (the Log4Shell
# rules); checkov's CKV2_AWS_76 asks for the last two.
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                       "AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesAnonymousIpList")


def _visibility(metric: str) -> dict[str, Any]:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


class RegionalWebAcl(Construct):
    """Allows by default; each managed group blocks what it matches. Associated with ``resource_arn``."""

    def __init__(self, scope: Construct, acl_id: str, *, name: str, resource_arn: str,
                 rule_groups: Sequence[str] = MANAGED_RULE_GROUPS) -> None:
        super().__init__(scope, acl_id)
        rules = blocks([{"name": group, "priority": i, "override_action": {"none": {}},
                         "visibility_config": _visibility(f"{name}-{group}")} for i, group in enumerate(rule_groups)])
        for rule, group in zip(rules, rule_groups, strict=True):
            # The bindings type `statement` as opaque JSON (too deeply nested), so it goes out verbatim:
            # Terraform's own snake_case keys, not camel-cased like the typed blocks.
            rule["statement"] = {"managed_rule_group_statement": {"name": group, "vendor_name": "AWS"}}
        self.acl = Wafv2WebAcl(self, "acl", name=name, scope="REGIONAL", default_action={"allow": {}},
                               rule=rules, visibility_config=_visibility(name))
        skip_checks(self.acl, {"CKV2_AWS_31": "CloudWatch metrics and sampled requests are on; full request "
                                              "logs need a Firehose or aws-waf-logs-* destination you choose"})
        Wafv2WebAclAssociation(self, "association", resource_arn=resource_arn, web_acl_arn=self.acl.arn)
        self.arn: str = self.acl.arn
