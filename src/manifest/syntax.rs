//! Checks of single values: names, addresses, domains, URLs. Each returns a
//! message fit to follow the value's path in a diagnostic.

use std::net::IpAddr;

/// Longest service name: it becomes a Terraform workspace (`<name>-config`),
/// a file name and a hostname label, so it stays well inside all three limits.
pub const MAX_SERVICE_NAME: usize = 48;

/// Service names become workspace names, file names and Nix attribute names,
/// so only a conservative alphabet is allowed.
pub fn service_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.is_empty() {
        Err("service name is empty".into())
    } else if name.len() > MAX_SERVICE_NAME {
        Err(format!(
            "service name is {} characters long; at most {MAX_SERVICE_NAME} are allowed",
            name.len()
        ))
    } else if !first_ok || !rest_ok || name.ends_with('-') {
        Err(format!(
            "service name {} is not a safe identifier: use lowercase letters, digits, '-' and '_', starting with a letter (it becomes workspace and file names)",
            quote(name)
        ))
    } else {
        Ok(())
    }
}

pub fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>()
        .map_err(|_| format!("{} is not a valid IP address", quote(text)))
}

/// A DNS name (RFC 1123). `fqdn` additionally demands at least two labels.
pub fn domain(text: &str, fqdn: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{} is not a valid domain name: {why}", quote(text)));
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    if name.parse::<IpAddr>().is_ok() {
        return bad("it is an IP address");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("it has an empty label");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    if fqdn && !name.contains('.') {
        return bad("expected a fully qualified name such as host.example.lan");
    }
    Ok(())
}

/// A DNS name the way it is compared everywhere: lower case, without the
/// trailing dot (`Wiki.Home.LAN.` and `wiki.home.lan` are one name).
pub fn dns_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// An absolute `http(s)://` URL with a host.
pub fn http_url(text: &str) -> Result<url::Url, String> {
    let parsed =
        url::Url::parse(text).map_err(|e| format!("{} is not a valid URL: {e}", quote(text)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{} is not an http:// or https:// URL", quote(text)));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{} has no host", quote(text)));
    }
    Ok(parsed)
}

/// `host:port`, `[v6]:port`, optionally behind `http://` or `https://` (as Caddy accepts upstreams).
pub fn host_port(text: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| Err(format!("{} is not a valid host:port: {why}", quote(text)));
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .unwrap_or(text);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let Some((host, port)) = rest.rsplit_once(':') else {
        return bad("the port is missing");
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return bad("the port must be a number from 1 to 65535"),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return bad("the host is missing");
    }
    if host.parse::<IpAddr>().is_err() && domain(host, false).is_err() {
        return bad("the host is neither an IP address nor a domain name");
    }
    Ok((host.to_string(), port))
}

/// A size written with a unit, as older manifests give memory and disks
/// (`"2GB"`, `"512M"`, `"1.5GiB"`), in MiB. Binary multiples either way: a
/// hypervisor's "2GB" of memory is 2048 MiB. A bare number is in `unit_mib`s.
pub fn size_mib(text: &str, unit_mib: u64) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let bad = || {
        format!(
            "{} is not a size: write a number of MiB, or a number with a unit (\"512M\", \"2GB\", \"1TiB\")",
            quote(text)
        )
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => unit_mib,
        "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => return Err(bad()),
    };
    let mib = value * factor as f64;
    if !mib.is_finite() || mib < 0.0 || mib > u32::MAX as f64 || mib.fract() != 0.0 {
        return Err(format!(
            "{} is not a whole number of MiB within range",
            quote(text)
        ));
    }
    Ok(mib as u64)
}

/// PostgreSQL role and database names: kept to what needs no quoting surprises.
pub fn sql_name(text: &str) -> Result<(), String> {
    let first_ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if text.is_empty() || text.len() > 63 || !first_ok || !rest_ok {
        Err(format!(
            "{} is not a valid PostgreSQL name: 1 to 63 letters, digits, '_' or '-', starting with a letter or '_'",
            quote(text)
        ))
    } else {
        Ok(())
    }
}

/// A user name that ssh and Nix (`ssh://user@host`) receive: what `useradd`
/// accepts. A leading `-` would be read by ssh as an option.
pub fn user_name(text: &str) -> Result<(), String> {
    let first_ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let body = text.strip_suffix('$').unwrap_or(text);
    let rest_ok = body
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if text.is_empty() || text.len() > 32 || !first_ok || !rest_ok {
        Err(format!(
            "{} is not a user name: 1 to 32 letters, digits, '_', '-' or '.', starting with a letter or '_'{}",
            quote(text),
            if text.starts_with('-') {
                " (ssh would read a leading '-' as an option)"
            } else {
                ""
            }
        ))
    } else {
        Ok(())
    }
}

/// A value handed to a tool as one argument (a path, a flake reference, an
/// attribute): it must not start with `-`, which the tool would read as an
/// option.
pub fn argument(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        Err("it is empty".into())
    } else if text.starts_with('-') {
        Err(format!(
            "{} starts with '-': a tool would read it as an option (write ./{} for a relative path)",
            quote(text),
            truncate(text, 40)
        ))
    } else {
        Ok(())
    }
}

/// A file ssh receives among its options (a key, a known-hosts file): also
/// reaches `nix copy` through NIX_SSHOPTS, which Nix splits on spaces.
pub fn ssh_file(text: &str) -> Result<(), String> {
    argument(text)?;
    if text.chars().any(char::is_whitespace) {
        return Err(format!(
            "{} has a space in it: nix copy passes ssh options through NIX_SSHOPTS, which Nix splits on spaces; move or link the file to a path without spaces",
            quote(text)
        ));
    }
    Ok(())
}

/// An OpenSSH public key line: `<type> <base64> [comment]`.
pub fn ssh_public_key(text: &str) -> Result<(), String> {
    const TYPES: [&str; 8] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let mut parts = text.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let body_ok = body.len() >= 16
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    if !TYPES.contains(&kind) {
        Err(format!(
            "not an SSH public key: it should start with a key type such as ssh-ed25519, found {}",
            quote(&truncate(kind, 40))
        ))
    } else if !body_ok {
        Err(
            "not an SSH public key: the base64 key body after the type is missing or malformed"
                .into(),
        )
    } else {
        Ok(())
    }
}

/// A value shown in a message: quoted, escaped and cut to a readable length.
pub fn quote(text: &str) -> String {
    format!("\"{}\"", escape(&truncate(text, 80)))
}

/// Characters that must never reach a terminal, a log or JSON raw: control
/// characters (C0, DEL, C1: terminal escape sequences start with them) and
/// the invisible ones that reorder or hide text (bidirectional overrides,
/// line and paragraph separators).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// How [`escape_as`] treats what it keeps.
#[derive(Clone, Copy)]
struct Escaping {
    /// `"` and `\\` escaped too (the text goes between quotes).
    quotes: bool,
    /// Line breaks and tabs kept as they are (a multi-line message).
    lines: bool,
}

fn escape_as(text: &str, how: Escaping) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' if how.quotes => out.push_str("\\\""),
            '\\' if how.quotes => out.push_str("\\\\"),
            '\n' | '\t' if how.lines => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `text` with `"` and `\\` escaped and every unsafe character written as an
/// escape (`\\n`, `\\u{1b}`), so it is one inert line wherever it is shown.
pub fn escape(text: &str) -> String {
    escape_as(
        text,
        Escaping {
            quotes: true,
            lines: false,
        },
    )
}

/// One line of a message made safe to show: every unsafe character, line
/// breaks and tabs included, written as an escape; quotes are left alone.
pub fn one_line(text: &str) -> String {
    escape_as(
        text,
        Escaping {
            quotes: false,
            lines: false,
        },
    )
}

/// A message from a tool or a host made safe to show: its lines kept, every
/// other unsafe character escaped (colour codes and terminal escapes included).
pub fn sanitize(text: &str) -> String {
    escape_as(
        text,
        Escaping {
            quotes: false,
            lines: true,
        },
    )
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_the_way_hypervisors_mean_them() {
        assert_eq!(size_mib("2GB", 1), Ok(2048));
        assert_eq!(size_mib("512M", 1), Ok(512));
        assert_eq!(size_mib("1.5 GiB", 1), Ok(1536));
        assert_eq!(size_mib("64", 1024), Ok(65536));
        assert_eq!(size_mib("1t", 1), Ok(1024 * 1024));
        for bad in ["", "GB", "2XB", "-1G", "1.0001M", "1e9G", "99999999T"] {
            assert!(size_mib(bad, 1).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn service_names() {
        assert!(service_name("wiki").is_ok());
        assert!(service_name("my-app_2").is_ok());
        for bad in [
            "",
            "Wiki",
            "2fa",
            "a b",
            "../etc",
            "a-",
            "a.b",
            &"x".repeat(49),
        ] {
            assert!(service_name(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn domains() {
        assert!(domain("wiki.home.lan", true).is_ok());
        assert!(domain("lan", false).is_ok());
        assert!(domain("lan", true).is_err());
        assert!(domain("-a.lan", true).is_err());
        assert!(domain("a..lan", true).is_err());
        assert!(domain("a_b.lan", true).is_err());
        assert!(domain("10.0.0.1", true).is_err());
    }

    #[test]
    fn upstreams() {
        assert_eq!(host_port("10.0.0.5:8080"), Ok(("10.0.0.5".into(), 8080)));
        assert_eq!(host_port("http://app.lan:80"), Ok(("app.lan".into(), 80)));
        assert_eq!(host_port("[::1]:443"), Ok(("::1".into(), 443)));
        assert!(host_port("10.0.0.5").is_err());
        assert!(host_port("10.0.0.5:0").is_err());
        assert!(host_port("10.0.0.5:99999").is_err());
        assert!(host_port(":80").is_err());
    }

    #[test]
    fn values_that_become_arguments() {
        assert!(user_name("root").is_ok() && user_name("deploy-bot").is_ok());
        for bad in [
            "",
            "-oProxyCommand=sh",
            "a b",
            "a@b",
            "a;b",
            &"u".repeat(33),
        ] {
            assert!(user_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(user_name("-x").expect_err("dash").contains("option"));
        assert!(argument("./-x").is_ok() && argument("/srv/stack").is_ok());
        assert!(argument("-oProxyCommand=x")
            .expect_err("dash")
            .contains("option"));
        assert!(argument(" ").is_err());
        assert!(ssh_file("/keys/id").is_ok());
        assert!(ssh_file("/my keys/id")
            .expect_err("space")
            .contains("NIX_SSHOPTS"));
        assert!(ssh_file("-i").is_err());
    }

    #[test]
    fn nothing_unsafe_survives_quoting() {
        assert_eq!(quote("a\"b"), r#""a\"b""#);
        assert_eq!(quote("x\u{1b}[31mred\r\n"), r#""x\u{1b}[31mred\r\n""#);
        assert_eq!(
            quote("\u{9b}2J\u{7f}\u{202e}"),
            r#""\u{9b}2J\u{7f}\u{202e}""#
        );
        assert_eq!(quote("sp\\ace"), r#""sp\\ace""#);
        assert_eq!(
            sanitize("line 1\n\u{1b}[1merror\u{1b}[0m\tx"),
            "line 1\n\\u{1b}[1merror\\u{1b}[0m\tx"
        );
        for c in [
            '\0', '\u{7}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}', '\u{2067}',
        ] {
            assert!(!quote(&format!("a{c}b")).contains(c), "{c:?} survived");
        }
    }

    #[test]
    fn urls_and_keys() {
        assert!(http_url("https://wiki.lan/cb").is_ok());
        assert!(http_url("ftp://wiki.lan/").is_err());
        assert!(http_url("not a url").is_err());
        assert!(ssh_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkkp4yJ user@host").is_ok());
        assert!(ssh_public_key("hello world").is_err());
        assert!(sql_name("nextcloud").is_ok());
        assert!(sql_name("1db").is_err());
        assert!(sql_name("a;drop").is_err());
    }
}
