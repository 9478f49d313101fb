# tf:infra of the lab: one host per enabled service. Each stands in for a
# Proxmox container: `nixmox lab host-up` creates a network namespace with its
# own sshd and private mounts, `nixmox lab host-down` removes it.
# nixmox passes its own path in NIXMOX_BIN.

variable "hosts" {
  type = any
}

resource "terraform_data" "host" {
  for_each = var.hosts
  input = {
    name = each.key
    ip   = each.value.ip
  }

  provisioner "local-exec" {
    command     = "\"$NIXMOX_BIN\" lab host-up \"$NAME\" \"$IP\""
    environment = { NAME = self.input.name, IP = self.input.ip }
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "\"$NIXMOX_BIN\" lab host-down \"$NAME\" \"$IP\""
    environment = { NAME = self.input.name, IP = self.input.ip }
  }
}

output "host_ips" {
  value = { for name, h in terraform_data.host : name => h.output.ip }
}
