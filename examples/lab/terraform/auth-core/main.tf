# tf:auth-core of the lab: every OIDC client registered with the lab's
# identity provider through its admin API, with the lab's own Terraform
# provider (a STAND-IN for Authentik's): one OAuth2 provider per client and
# one application per service, whose slug names the issuer
# (/application/o/<service>/). The client secrets are made by the identity
# provider and come back as a sensitive output.

terraform {
  required_providers {
    nixmoxlab = {
      source  = "nixmox/nixmoxlab"
      version = "0.2.1"
    }
  }
}

variable "oidc_apps" {
  type = any
}

variable "hosts" {
  type = any
}

variable "network" {
  type = any
}

# The identity provider's bootstrap token, from the lab's SOPS file (the
# manifest names it): sensitive, so Terraform never shows it.
variable "authentik_token" {
  type      = string
  sensitive = true
}

# The admin API of the identity provider on the authentik host.
provider "nixmoxlab" {
  url   = "http://${var.hosts["authentik"].ip}:9000"
  token = var.authentik_token
}

resource "nixmoxlab_provider_oauth2" "client" {
  for_each      = var.oidc_apps
  name          = each.key
  client_id     = each.key
  client_type   = each.value.client_type
  redirect_uris = each.value.redirect_uris
  scopes        = each.value.scopes
}

locals {
  # One application per service, served by its (first) client, as Authentik
  # has one provider per application.
  first_client = { for id, app in var.oidc_apps : app.service => id... }
}

resource "nixmoxlab_application" "app" {
  for_each          = local.first_client
  name              = each.key
  slug              = each.key
  protocol_provider = nixmoxlab_provider_oauth2.client[sort(each.value)[0]].id
}

output "client_ids" {
  value = { for id, app in var.oidc_apps : id => app.service }
}

output "client_secrets" {
  value     = { for id, p in nixmoxlab_provider_oauth2.client : id => p.client_secret }
  sensitive = true
}

# The LDAP outpost the manifest asks for (network.outposts.ldap): the
# identity provider makes its token, which the outpost on the authentik
# host needs to connect, so the authentik host is deployed again after
# this phase, with the token in its env file.
resource "nixmoxlab_outpost" "ldap" {
  count = var.network.ldap_base_dn == null ? 0 : 1
  name  = "ldap"
  type  = "ldap"
}

output "outpost_tokens" {
  value     = { for o in nixmoxlab_outpost.ldap : o.name => o.token }
  sensitive = true
}
