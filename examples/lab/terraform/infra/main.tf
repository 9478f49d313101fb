# tf:infra of the lab: one host per enabled service, made with the lab's own
# Terraform provider (tools/terraform-provider-nixmoxlab), a STAND-IN for the
# Proxmox provider: a nixmoxlab_lxc is a network namespace with its own
# address, sshd and private mounts, and Terraform reads it back from the
# host itself (a host removed behind Terraform's back is drift).

terraform {
  required_providers {
    nixmoxlab = {
      source  = "nixmox/nixmoxlab"
      version = "0.2.1"
    }
  }
}

variable "hosts" {
  type = any
}

# The lab directory and the nixmox binary come from NIXMOX_LAB_DIR and
# NIXMOX_BIN, which nixmox sets for Terraform.
provider "nixmoxlab" {}

resource "nixmoxlab_lxc" "host" {
  for_each = var.hosts
  name     = each.key
  vmid     = each.value.vmid
  hostname = each.value.hostname
  ip       = each.value.ip
  cores    = each.value.resources.cores
  memory   = each.value.resources.memory
  disk_gb  = each.value.resources.disk_gb
  onboot   = each.value.onboot
  start    = each.value.start
}

output "host_ips" {
  value = { for name, h in nixmoxlab_lxc.host : name => h.ip }
}
