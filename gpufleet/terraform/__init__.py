"""Running the real Terraform CLI over synthesized stacks."""
