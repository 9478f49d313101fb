//! The commands nixmox runs on a host, built by pure functions with every
//! value single-quoted, so a path or a name can never become shell syntax.
//! Each is unit-tested as an exact string.

/// The system profile every NixOS host boots from.
pub const PROFILE: &str = "/nix/var/nix/profiles/system";
/// Where activation records its result, on the host's tmpfs.
pub const RUN_DIR: &str = "/run/nixmox";

/// `'text'` with embedded quotes escaped: safe as one shell word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The store path of the running system, or nothing on a fresh host.
pub fn current_system() -> String {
    // readlink -f prints a path even when nothing is there: test first.
    "if [ -e /run/current-system ]; then readlink -f /run/current-system; fi".into()
}

/// The store path the system profile points at, or nothing.
pub fn profile_target() -> String {
    format!("if [ -e {PROFILE} ]; then readlink -f {PROFILE}; fi")
}

/// How many generations the system profile has.
pub fn generation_count() -> String {
    format!(
        "ls -1 {} 2>/dev/null | grep -c '^system-[0-9]*-link$' || true",
        quote("/nix/var/nix/profiles")
    )
}

pub fn set_profile(path: &str) -> String {
    format!("nix-env -p {PROFILE} --set {}", quote(path))
}

pub fn rollback_profile() -> String {
    format!("nix-env -p {PROFILE} --rollback")
}

/// The profile's generation link (`system-41-link`) on one line, the store
/// path it points at on the next; nothing on a fresh host.
pub fn profile_state() -> String {
    format!("if [ -e {PROFILE} ]; then readlink {PROFILE}; readlink -f {PROFILE}; fi")
}

/// The generation number in a link name like `system-41-link`.
pub fn generation_of(link: &str) -> Option<u64> {
    link.trim()
        .rsplit('/')
        .next()?
        .strip_prefix("system-")?
        .strip_suffix("-link")?
        .parse()
        .ok()
}

/// Back to generation `n` exactly: `--rollback` would take the one just
/// below the current, which may be a system abandoned by an earlier rollback.
pub fn switch_generation(n: u64) -> String {
    format!("nix-env -p {PROFILE} --switch-generation {n}")
}

/// Starts `switch-to-configuration <goal>` detached (it survives the SSH
/// connection dropping) and records its output and exit status under `id`.
/// Activations on one host take turns (`flock`): one left running by a run
/// that was killed finishes before the next begins. `-o`: the lock is held
/// by flock itself, so daemons the activation starts do not inherit it.
pub fn activate_detached(path: &str, goal: &str, id: &str) -> String {
    let log = quote(&format!("{RUN_DIR}/activation-{id}.log"));
    let status = quote(&format!("{RUN_DIR}/activation-{id}.status"));
    let stc = quote(&format!("{path}/bin/switch-to-configuration"));
    let inner = format!(
        "flock -o {RUN_DIR}/activation.lock {stc} {} > {log} 2>&1; echo $? > {status}.tmp && mv {status}.tmp {status}",
        quote(goal)
    );
    format!(
        "mkdir -p {RUN_DIR} && rm -f {status} && setsid -f sh -c {} < /dev/null > /dev/null 2>&1",
        quote(&inner)
    )
}

/// Prints the exit status of activation `id` when it has finished, nothing before.
/// Waits on the host, up to `tenths` tenths of a second, for activation `id`
/// to record its exit status, then prints it (nothing if still running).
/// One SSH session per wait instead of one per look: sessions cost the host
/// and the network more than a sleeping shell does.
pub fn activation_status(id: &str, tenths: u32) -> String {
    let status = quote(&format!("{RUN_DIR}/activation-{id}.status"));
    format!(
        "i=0; while [ ! -e {status} ] && [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done; \
         cat {status} 2>/dev/null || true"
    )
}

/// The last lines of activation `id`'s output.
pub fn activation_log(id: &str) -> String {
    format!(
        "tail -n 20 {} 2>/dev/null || true",
        quote(&format!("{RUN_DIR}/activation-{id}.log"))
    )
}

/// Replaces `/run/nixmox/<name>` atomically with standard input, readable by root only.
pub fn write_secret_file(name: &str) -> String {
    let path = quote(&format!("{RUN_DIR}/{name}"));
    let tmp = quote(&format!("{RUN_DIR}/.{name}.tmp"));
    format!("umask 077 && mkdir -p {RUN_DIR} && cat > {tmp} && mv {tmp} {path}")
}

/// Replaces the file at `path` (absolute) atomically with standard input,
/// readable by root only; its directory is made when missing.
pub fn write_secret_file_at(path: &str) -> String {
    let dir = std::path::Path::new(path)
        .parent()
        .map(|d| d.display().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".into());
    let tmp = quote(&format!("{path}.nixmox-tmp"));
    format!(
        "umask 077 && mkdir -p {} && cat > {tmp} && mv {tmp} {}",
        quote(&dir),
        quote(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_remote_commands() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(
            set_profile("/nix/store/abc-nixos"),
            "nix-env -p /nix/var/nix/profiles/system --set '/nix/store/abc-nixos'"
        );
        assert_eq!(
            rollback_profile(),
            "nix-env -p /nix/var/nix/profiles/system --rollback"
        );
        assert_eq!(
            current_system(),
            "if [ -e /run/current-system ]; then readlink -f /run/current-system; fi"
        );
        assert_eq!(
            activate_detached("/nix/store/x y", "switch", "42"),
            "mkdir -p /run/nixmox && rm -f '/run/nixmox/activation-42.status' && setsid -f sh -c \
             'flock -o /run/nixmox/activation.lock '\\''/nix/store/x y/bin/switch-to-configuration'\\'' '\\''switch'\\'' > '\\''/run/nixmox/activation-42.log'\\'' 2>&1; \
             echo $? > '\\''/run/nixmox/activation-42.status'\\''.tmp && mv '\\''/run/nixmox/activation-42.status'\\''.tmp '\\''/run/nixmox/activation-42.status'\\''' \
             < /dev/null > /dev/null 2>&1"
        );
        assert_eq!(
            activation_status("42", 50),
            "i=0; while [ ! -e '/run/nixmox/activation-42.status' ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
             cat '/run/nixmox/activation-42.status' 2>/dev/null || true"
        );
        assert_eq!(
            write_secret_file_at("/var/lib/sops-nix/key.txt"),
            "umask 077 && mkdir -p '/var/lib/sops-nix' && cat > '/var/lib/sops-nix/key.txt.nixmox-tmp' \
             && mv '/var/lib/sops-nix/key.txt.nixmox-tmp' '/var/lib/sops-nix/key.txt'"
        );
        assert_eq!(write_secret_file("env"), "umask 077 && mkdir -p /run/nixmox && cat > '/run/nixmox/.env.tmp' && mv '/run/nixmox/.env.tmp' '/run/nixmox/env'");
    }

    #[test]
    fn generations_are_read_from_link_names() {
        assert_eq!(generation_of("system-41-link\n"), Some(41));
        assert_eq!(
            generation_of("/nix/var/nix/profiles/system-7-link"),
            Some(7)
        );
        assert_eq!(generation_of("/nix/store/abc-nixos-system"), None);
        assert_eq!(generation_of(""), None);
        assert_eq!(
            switch_generation(41),
            "nix-env -p /nix/var/nix/profiles/system --switch-generation 41"
        );
    }

    #[test]
    fn quoting_survives_the_shell() {
        for nasty in [
            "a b",
            "it's",
            "$(reboot)",
            "`x`",
            "a;b",
            "\"q\"",
            "new\nline",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(nasty)))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
        }
    }
}
