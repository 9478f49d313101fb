//! `build_host`, stack-wide (`nixos.build_host`) and per service: where
//! a system is built.

use crate::manifest::decode::Obj;
use crate::manifest::diag::Diagnostics;
use crate::manifest::model::BuildHost;

/// `build_host = "local" | "target" | "<service>" | "[user@]<ip>"`.
pub fn build_host(diags: &mut Diagnostics, obj: &Obj) -> Option<BuildHost> {
    let text: String = obj.opt(diags, "build_host")?;
    let bad = |diags: &mut Diagnostics, why: &str| {
        diags.error_hint(
            &obj.at("build_host"),
            format!("{text:?}: {why}"),
            Some("\"local\", \"target\", a service of this stack, or [user@]<ip address>".into()),
        );
        None
    };
    match text.as_str() {
        "local" => return Some(BuildHost::Local),
        "target" => return Some(BuildHost::Target),
        _ => {}
    }
    let (user, host) = match text.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, text.as_str()),
    };
    if let Some(u) = user {
        let ok = u
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return bad(diags, "not a user name before the @");
        }
    }
    if let Ok(address) = host.parse::<std::net::IpAddr>() {
        return Some(BuildHost::Builder {
            user: user.map(str::to_string),
            address,
        });
    }
    if user.is_none()
        && host
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        // A service's name: checked against the stack by the rules.
        return Some(BuildHost::Service(host.to_string()));
    }
    bad(diags, "not a builder nixmox can reach")
}
