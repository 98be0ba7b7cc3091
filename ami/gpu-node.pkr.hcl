# The gpufleet GPU AMI: a Debian base image configured by the same playbook as running hosts
# (playbooks/gpu-node.yml), so day-0 images and day-2 hosts cannot drift apart.
#
# Packer 1.6.6 (Debian's):  packer build ami/gpu-node.pkr.hcl
# Newer Packer:             packer init ami/ && packer build ami/
#   (plugins.pkr.hcl holds `required_plugins`, which Packer 1.6.6 rejects; building this one
#   file leaves it out.)
#
# The stacks find the image by name (`gpufleet-gpu-*`, owner self, most recent); the tags say
# what is inside. The agent starts once user-data writes /etc/gpufleet/agent.yaml at boot.

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "Region the image is built in."
}

variable "copy_to_regions" {
  type        = list(string)
  default     = []
  description = "Further regions to copy the image to (e.g. the platform's DR region)."
}

variable "instance_type" {
  type        = string
  default     = "g5.xlarge"
  description = "Builder instance type. A GPU type lets the playbook verify the driver on real hardware."
}

variable "base_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "Name filter of the base image (the newest match is used)."
}

variable "base_ami_owners" {
  type        = list(string)
  default     = ["136693071363"]
  description = "Owners of the base image (136693071363 is Debian's official account)."
}

variable "driver_source" {
  type        = string
  default     = "debian"
  description = "Where the NVIDIA driver comes from: debian (non-free) or nvidia (NVIDIA's repository)."
}

variable "driver_version" {
  type        = string
  default     = "535.309.01"
  description = "Pinned NVIDIA driver version."
}

variable "agent_wheel" {
  type        = string
  description = "Path of the gpufleet wheel to install (pip wheel --no-deps -w dist .)."
}

variable "ansible_extra_arguments" {
  type        = list(string)
  default     = []
  description = "Extra ansible-playbook arguments, e.g. [\"-e\", \"@vars.yml\"]."
}

# Builder connection overrides: an emulated EC2 (moto) and a stand-in SSH host for tests.
variable "ec2_endpoint" {
  type        = string
  default     = ""
  description = "Custom EC2 endpoint (empty for AWS)."
}

variable "ssh_host" {
  type        = string
  default     = ""
  description = "Reach the builder at this address instead of the instance's IP (tests)."
}

variable "ssh_port" {
  type    = number
  default = 22
}

variable "ssh_username" {
  type    = string
  default = "admin"
}

variable "ssh_private_key_file" {
  type        = string
  default     = ""
  description = "Key for ssh_host; empty lets Packer create a temporary key pair."
}

locals {
  # ami_name allows only [A-Za-z0-9()[] ./-_'@]: a compact UTC timestamp keeps names sortable.
  stamp    = formatdate("YYYYMMDD-hhmmss", timestamp())
  ami_name = "gpufleet-gpu-${var.driver_source}-${var.driver_version}-${local.stamp}"
  emulated = var.ec2_endpoint != ""
}

source "amazon-ebs" "gpu" {
  region        = var.region
  ami_regions   = var.copy_to_regions
  instance_type = var.instance_type
  ami_name      = local.ami_name

  source_ami_filter {
    filters = {
      name                = var.base_ami_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = var.base_ami_owners
    most_recent = true
  }

  # Encrypted gp3 root volume, big enough for the driver, CUDA and torch.
  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 60
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    encrypted             = true
    delete_on_termination = true
  }

  # IMDSv2: the fleet's launch templates require it (hop limit 1). Packer 1.6.6 cannot set
  # metadata_options on the builder; with newer Packer add `metadata_options { http_tokens = "required" }`.

  ssh_username         = var.ssh_username
  ssh_host             = var.ssh_host
  ssh_port             = var.ssh_port
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "15m"

  custom_endpoint_ec2        = var.ec2_endpoint
  skip_region_validation     = local.emulated
  skip_credential_validation = local.emulated
  skip_metadata_api_check    = local.emulated

  tags = {
    "Name"                   = local.ami_name
    "gpufleet:image"         = "gpu-node"
    "gpufleet:driver-source" = var.driver_source
    "gpufleet:driver"        = var.driver_version
    "gpufleet:base-ami"      = "{{ .SourceAMI }}"
  }
  run_tags = {
    "Name"           = "gpufleet-ami-builder"
    "gpufleet:image" = "gpu-node"
  }
}

build {
  sources = ["source.amazon-ebs.gpu"]

  provisioner "ansible" {
    playbook_file = "${path.root}/../playbooks/gpu-node.yml"
    user          = var.ssh_username
    # Talk to the builder directly: the proxy adds nothing and breaks with become on new OpenSSH.
    use_proxy = false
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${path.root}/../playbooks/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
    ]
    extra_arguments = concat([
      "-e", "instance_type=${var.instance_type}",
      "-e", "nvidia_driver_source=${var.driver_source}",
      "-e", "nvidia_driver_version=${var.driver_version}",
      "-e", "gpufleet_agent_wheel=${var.agent_wheel}",
    ], var.ansible_extra_arguments)
  }
}
