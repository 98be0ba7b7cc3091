# Plugin pins for Packer 1.7 and later (`packer init ami/`). Packer 1.6.6 has amazon-ebs and
# ansible built in and rejects this block: it builds ami/gpu-node.pkr.hcl on its own.
packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
    ansible = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/ansible"
    }
  }
}
