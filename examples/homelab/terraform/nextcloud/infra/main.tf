# tf:service-infra of nextcloud (workspace nextcloud-infra): its bucket and
# database. Run in a copy of this whole tree, so ../../modules resolves.
terraform {
  required_providers {
    postgresql = { source = "cyrilgdn/postgresql" }
  }
}

variable "bucket_name" { type = string }
variable "quota_gb" { type = number }

module "data" {
  source   = "../../modules/minio-bucket"
  name     = var.bucket_name
  quota_gb = var.quota_gb
}

resource "postgresql_database" "nextcloud" {
  name  = "nextcloud"
  owner = "nextcloud"
}

output "bucket" { value = module.data.bucket }
