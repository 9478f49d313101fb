//! The lab's SOPS file and age key, made once as a user keeps theirs: one
//! YAML file with a section per service, encrypted with the real `sops` to
//! an age key of the lab's own. The lab manifest reads the identity
//! provider's bootstrap token and the verification user's password from
//! it, and nixmox writes the Terraform outputs back into it.

use super::LabError;
use base64::Engine;
use std::path::{Path, PathBuf};

/// `<lab dir>/secrets/age.key`: the key the lab's SOPS file is encrypted
/// to, which nixmox decrypts with and every lab host receives.
pub fn age_key(dir: &Path) -> PathBuf {
    dir.join("secrets/age.key")
}

/// `<lab dir>/secrets/lab.sops.yaml`.
pub fn sops_file(dir: &Path) -> PathBuf {
    dir.join("secrets/lab.sops.yaml")
}

/// Whether the manifest names the lab's SOPS file or age key (as the lab's
/// own manifest does), so that `lab up` makes them.
pub fn wanted(m: &crate::manifest::Manifest, dir: &Path) -> bool {
    let base = m.dir();
    let lab = [sops_file(dir), age_key(dir)];
    [
        &m.secrets.sops_file,
        &m.secrets.age_key_file,
        &m.nixos.age_key_file,
    ]
    .into_iter()
    .flatten()
    .any(|f| lab.contains(&base.join(f)))
}

/// Makes the key and the file when they are missing; an existing pair is
/// kept (a re-run changes nothing).
pub fn ensure(dir: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)
        .and_then(|_| std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| LabError::new(format!("cannot create {}: {e}", secrets.display())))?;
    let key = age_key(dir);
    if !key.exists() {
        let out = std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .map_err(|e| {
                LabError::new(format!(
                    "cannot run age-keygen ({e}): scripts/setup.sh installs age"
                ))
            })?;
        if !out.status.success() {
            return Err(LabError::new(format!(
                "age-keygen -o {} failed: {}",
                key.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let file = sops_file(dir);
    if file.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&key)
        .map_err(|e| LabError::new(format!("cannot read {}: {e}", key.display())))?;
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .ok_or_else(|| {
            LabError::new(format!(
                "{} has no \"# public key:\" line: remove it and run lab up again",
                key.display()
            ))
        })?;
    let plaintext = format!(
        "# The lab's secrets, a section per service, as a user keeps theirs.\n\
         authentik:\n  bootstrap_token: {}\n  labuser_password: {}\n",
        random()?,
        random()?
    );
    let mut cmd = std::process::Command::new(crate::secrets::sops::binary());
    cmd.args(["--encrypt", "--age", recipient]).args([
        "--input-type",
        "yaml",
        "--output-type",
        "yaml",
        "/dev/stdin",
    ]);
    let out = crate::process::run_tool(
        cmd,
        Some(plaintext.as_bytes()),
        std::time::Duration::from_secs(60),
        "sops",
        "scripts/setup.sh puts one in /opt/nixmox/bin; NIXMOX_SOPS names another",
    )
    .map_err(LabError::new)?;
    if out.code != Some(0) {
        return Err(LabError::new(format!(
            "sops could not encrypt the lab's secrets: {}",
            out.stderr.trim()
        )));
    }
    crate::files::write_atomic(&file, out.stdout.as_bytes(), 0o600).map_err(LabError::new)
}

/// 24 random bytes, base64url: a token or a password.
fn random() -> Result<String, LabError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| LabError::new("no randomness from the operating system"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}
