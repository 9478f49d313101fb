# tf:auth-core of the lab, a stand-in for Authentik's Terraform provider:
# registers every OIDC client with the lab's OIDC provider by writing its
# clients file on the authentik host (the provider reloads it), and returns
# client ids and secrets as outputs, the secrets sensitive.

variable "oidc_apps" {
  type = any
}

# One object per client: its random id is the seed of the client secret.
resource "terraform_data" "client" {
  for_each = var.oidc_apps
  input    = each.key
}

locals {
  secrets = {
    for id, app in var.oidc_apps :
    id => app.client_type == "public" ? "" : sha256("${terraform_data.client[id].id}/${id}")
  }
  clients = [
    for id, app in var.oidc_apps : {
      slug          = app.service
      client_id     = id
      client_secret = local.secrets[id]
      client_type   = app.client_type
      redirect_uris = app.redirect_uris
      scopes        = app.scopes
    }
  ]
}

resource "terraform_data" "clients_file" {
  triggers_replace = sha256(jsonencode(local.clients))

  provisioner "local-exec" {
    command = "umask 077 && d=\"$NIXMOX_LAB_DIR/hosts/authentik/state\" && mkdir -p \"$d\" && printf '%s' \"$CLIENTS\" > \"$d/clients.json.tmp\" && mv \"$d/clients.json.tmp\" \"$d/clients.json\""
    environment = {
      CLIENTS = sensitive(jsonencode({ clients = local.clients }))
    }
  }
}

output "client_ids" {
  value = { for id, app in var.oidc_apps : id => app.service }
}

output "client_secrets" {
  value     = local.secrets
  sensitive = true
}
