# A shared module, called by relative path from the roots beside it.
terraform {
  required_providers {
    minio = { source = "aminueza/minio" }
  }
}

variable "name" { type = string }
variable "quota_gb" { type = number }

resource "minio_s3_bucket" "this" {
  bucket = var.name
  quota  = var.quota_gb * 1024 * 1024 * 1024
}

output "bucket" { value = minio_s3_bucket.this.bucket }
