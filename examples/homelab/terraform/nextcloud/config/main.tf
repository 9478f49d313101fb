# tf:service-config of nextcloud (workspace nextcloud-config): what needs the
# running service, here the Authentik group its admins come from.
terraform {
  required_providers {
    authentik = { source = "goauthentik/authentik" }
  }
}

variable "admin_group" { type = string }

resource "authentik_group" "admins" {
  name = var.admin_group
}
