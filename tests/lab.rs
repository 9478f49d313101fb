//! The lab from nothing, as root: `lab up` creates every host through real
//! Terraform and activates real systems built by Nix; every host answers
//! over SSH, each daemon answers (DNS, PostgreSQL, HTTPS through Caddy
//! trusted by the lab CA, OIDC discovery, the applications' health), lab
//! hosts have no route off the lab subnet, and `lab down` leaves nothing.

use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

#[path = "support/lab_stack.rs"]
#[allow(dead_code)] // spawn() serves the kill test
mod lab_stack;
use lab_stack::{text, Lab};

/// The checks of a `verify --json` report.
fn checks(v: &Value) -> &[Value] {
    v["checks"].as_array().map(Vec::as_slice).expect("checks")
}

/// Every regular file below `dir` (links are not followed: a link to the
/// user's key file is not a copy of it).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// A DNS A query over UDP, answered addresses in order.
fn resolve(server: &str, name: &str) -> Vec<String> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    let sock = UdpSocket::bind("0.0.0.0:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    sock.send_to(&q, (server, 53)).expect("send");
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("DNS answer");
    let answers = u16::from_be_bytes([buf[6], buf[7]]) as usize;
    let mut pos = q.len();
    let mut out = Vec::new();
    for _ in 0..answers {
        // name (a pointer here), type, class, ttl, length
        pos += if buf[pos] & 0xc0 == 0xc0 {
            2
        } else {
            buf[pos..].iter().position(|b| *b == 0).unwrap_or(0) + 1
        };
        let kind = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
        let len = u16::from_be_bytes([buf[pos + 8], buf[pos + 9]]) as usize;
        pos += 10;
        if kind == 1 && len == 4 && pos + 4 <= n {
            out.push(format!(
                "{}.{}.{}.{}",
                buf[pos],
                buf[pos + 1],
                buf[pos + 2],
                buf[pos + 3]
            ));
        }
        pos += len;
    }
    out
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl (run scripts/setup.sh)")
}

#[test]
fn the_lab_from_nothing_to_nothing() {
    lab_stack::require_root("the lab test");
    let lab = Lab::new();

    let up = lab.nixmox(&["lab", "up"]);
    assert_eq!(up.status.code(), Some(0), "lab up failed:\n{}", text(&up));

    // The lab made its age key and its SOPS file (encrypted to that key),
    // which every host got (the key) and the manifest reads from (the file).
    let age_key =
        std::fs::read_to_string(lab.lab_dir.path().join("secrets/age.key")).expect("age key");
    let age_secret = age_key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("an age secret key")
        .to_string();
    let lab_secrets: Value = lab.secrets();
    let from_sops: Vec<String> = ["bootstrap_token", "labuser_password"]
        .iter()
        .map(|k| {
            lab_secrets["authentik"][k]
                .as_str()
                .unwrap_or_else(|| panic!("authentik.{k} in the lab's SOPS file"))
                .to_string()
        })
        .collect();
    // tf:auth-core's outputs went back into the same file, beside them.
    assert!(
        lab_secrets["auth-core"]["client_secrets"].is_object()
            && lab_secrets["auth-core"]["outpost_tokens"]["ldap"].is_string(),
        "outputs not written into the lab's SOPS file"
    );

    let st = lab.nixmox(&["lab", "status", "--json"]);
    let st: Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    assert_eq!(st["up"], true, "{st}");
    let hosts = st["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 7);

    for h in hosts {
        let ip = h["ip"].as_str().expect("ip");
        let name = h["name"].as_str().expect("name");
        let o = lab.ssh(
            ip,
            "hostname; readlink /run/current-system; ip route get 192.0.2.1 2>&1 || true",
        );
        let out = text(&o);
        assert!(o.status.success(), "ssh to {name}: {out}");
        assert!(
            out.starts_with(&format!("{name}\n/nix/store/")),
            "{name}: {out}"
        );
        assert!(
            out.contains("unreachable"),
            "{name} has a route off the lab subnet: {out}"
        );
    }

    assert_eq!(resolve("10.213.0.2", "wiki.nixmox.test"), ["10.213.0.10"]);
    assert_eq!(
        resolve("10.213.0.2", "docs.nixmox.test"),
        ["10.213.0.4"],
        "a proxy domain points at caddy"
    );

    let psql = Command::new("psql")
        .args([
            "-h",
            "10.213.0.3",
            "-U",
            "wiki",
            "-d",
            "wiki",
            "-tAc",
            "select 1",
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "1",
        "{}",
        text(&psql)
    );

    // The wiki's migration ran once, as its owner.
    let q = |sql: &str| {
        let o = Command::new("psql")
            .args(["-h", "10.213.0.3", "-U", "wiki", "-d", "wiki", "-tAc", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("psql");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(q("select count(*) from pages"), "1");
    assert_eq!(
        q("select name from nixmox_migrations"),
        "migrations/wiki/001-pages.sql"
    );
    assert_eq!(
        q("select tableowner from pg_tables where tablename = 'pages'"),
        "wiki"
    );
    // One `lab up` converged, the core's second round included (pgAdmin's
    // OIDC client, the LDAP outpost's token): the next apply changes nothing.
    let again = lab.nixmox(&["apply", "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("0 migration(s) applied"),
        "{}",
        text(&again)
    );
    let changed: Vec<String> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["status"] == "changed")
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect();
    assert!(changed.is_empty(), "the second apply changed {changed:?}");
    assert_eq!(
        q("select count(*) from pages"),
        "1",
        "the migration ran twice"
    );

    // Secrets: the OIDC client secrets appear in nothing the runs printed or
    // left in the state directory (Terraform's own state files aside: they
    // always hold outputs), and the run logs exist.
    let o = lab.nixmox(&["outputs", "--json", "--show-sensitive"]);
    let outs: Value = serde_json::from_slice(&o.stdout).expect("outputs JSON");
    let secrets: Vec<String> = outs["workspaces"]["auth-core"]["client_secrets"]["value"]
        .as_object()
        .expect("client_secrets")
        .values()
        .filter_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
        .collect();
    assert!(!secrets.is_empty(), "no client secret to look for");
    let tokens: Vec<String> = outs["workspaces"]["auth-core"]["outpost_tokens"]["value"]
        .as_object()
        .expect("outpost_tokens")
        .values()
        .filter_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
        .collect();
    assert_eq!(tokens.len(), 1, "the LDAP outpost's token");
    let mut secrets = secrets;
    secrets.extend(tokens);
    secrets.push(age_secret.clone());
    secrets.extend(from_sops.iter().cloned());
    let on_host = lab.ssh(
        "10.213.0.10",
        "stat -c %a /var/lib/lab/sops-nix/key.txt; cat /var/lib/lab/sops-nix/key.txt",
    );
    assert_eq!(
        String::from_utf8_lossy(&on_host.stdout),
        format!("600\n{age_key}"),
        "the age key on the wiki host"
    );
    let printed = format!("{}{}", text(&up), text(&again));
    let mut files = Vec::new();
    walk(lab.state_dir.path(), &mut files);
    let runs_logs = files
        .iter()
        .filter(|f| f.to_string_lossy().contains("/runs/"))
        .count();
    assert!(runs_logs >= 3, "no run logs: {files:?}");
    assert!(
        files.iter().any(|f| f.ends_with("terraform.log"))
            && files.iter().any(|f| f.ends_with("ssh.log")),
        "{files:?}"
    );
    for secret in &secrets {
        assert!(
            !printed.contains(secret.as_str()),
            "a secret (client secret or age key) was printed"
        );
        for f in files.iter().filter(|f| {
            !f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("terraform.tfstate"))
        }) {
            let bytes = std::fs::read(f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret.as_str()),
                "{} holds a secret (client secret or age key)",
                f.display()
            );
        }
    }

    let ca = lab.lab_dir.path().join("ca/ca.crt").display().to_string();
    let o = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        "docs.nixmox.test:443:10.213.0.4",
        "https://docs.nixmox.test/",
    ]);
    assert!(text(&o).contains("hello from wiki"), "{}", text(&o));

    let o = curl(&["http://10.213.0.5:9000/application/o/wiki/.well-known/openid-configuration"]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(
        doc["issuer"],
        "https://auth.nixmox.test/application/o/wiki/",
        "{}",
        text(&o)
    );

    // The core's own consumers of auth-core: the outpost connected with its
    // token, pgAdmin holds its client secret.
    let o = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://10.213.0.5:9300/outpost.goauthentik.io/ping",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "204", "{}", text(&o));
    let o = curl(&["-f", "http://10.213.0.3:5050/healthz"]);
    assert!(o.status.success(), "pgAdmin unhealthy: {}", text(&o));

    for ip in ["10.213.0.10", "10.213.0.11", "10.213.0.12"] {
        let o = curl(&["-f", &format!("http://{ip}:8080/healthz")]);
        assert!(o.status.success(), "{ip} unhealthy: {}", text(&o));
    }

    // End to end: every check passes on the good stack.
    let o = lab.nixmox(&["verify", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    assert_eq!(v["ok"], true, "{v:#}");
    let kinds: std::collections::BTreeSet<&str> = checks(&v)
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    for k in [
        "dns",
        "tls",
        "proxy",
        "forward-auth",
        "oidc-discovery",
        "oidc-redirect",
        "oidc-foreign-redirect",
        "database",
    ] {
        assert!(kinds.contains(k), "no {k} check in {kinds:?}");
    }

    // The verification user's password comes from the lab's SOPS file, as
    // the manifest names it, with no variable set; the authentik host got the
    // same value through its env file, and tf:auth-core reached the admin API
    // with the token from the same file: every OIDC client's whole login
    // flow ran and passed; nothing was left out.
    assert_eq!(v["skipped"], 0, "{v:#}");
    assert_eq!(v["failed"], 0, "{v:#}");
    let logins: Vec<&Value> = checks(&v)
        .iter()
        .filter(|c| c["check"] == "oidc-login")
        .collect();
    assert!(
        logins.len() == 3
            && logins
                .iter()
                .any(|c| c["target"] == "pgadmin-oidc as labuser")
            && logins
                .iter()
                .all(|c| c["ok"] == true && c.get("skipped").is_none()),
        "{logins:#?}"
    );
    let pw = lab.ssh("10.213.0.5", "cat /var/lib/lab/authentik/labuser.password");
    assert!(pw.status.success(), "{}", text(&pw));
    let password = String::from_utf8_lossy(&pw.stdout).trim().to_string();
    assert_eq!(
        password, from_sops[1],
        "the host's password is the SOPS one"
    );
    assert!(
        !text(&o).contains(&password),
        "verify printed the password it read from the SOPS file"
    );
    // Without any password (no variable, no SOPS reference), the logins are not
    // run: reported as skipped with the reason, never as ok, counted apart,
    // and they do not fail verify.
    let good = std::fs::read_to_string(lab.manifest()).expect("read manifest");
    let no_password = good.replacen(
        "password = { sops = \"authentik.labuser_password\"; };",
        "",
        1,
    );
    assert_ne!(
        no_password, good,
        "the lab manifest changed shape: update this test"
    );
    std::fs::write(lab.manifest(), &no_password).expect("write manifest");
    let o = lab.nixmox(&["verify", "--json"]);
    let human = lab.nixmox(&["verify"]);
    std::fs::write(lab.manifest(), &good).expect("restore manifest");
    let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    assert_eq!(
        (v["ok"].clone(), v["skipped"].clone(), v["failed"].clone()),
        (Value::Bool(true), 3.into(), 0.into()),
        "{v:#}"
    );
    for c in checks(&v).iter().filter(|c| c["check"] == "oidc-login") {
        assert_eq!(
            (c["ok"].clone(), c["skipped"].clone()),
            (Value::Bool(false), Value::Bool(true)),
            "{c}"
        );
        let reason = c["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("not run: ") && reason.contains("NIXMOX_VERIFY_PASSWORD is not set"),
            "{c}"
        );
    }
    let human = text(&human);
    assert!(
        human
            .lines()
            .filter(|l| l.starts_with("SKIP") && l.contains("oidc-login"))
            .count()
            == 3
            && !human
                .lines()
                .any(|l| l.starts_with("ok") && l.contains("oidc-login"))
            && human.contains("failed, 3 not run"),
        "{human}"
    );
    let verify_as = |password: &str| -> (Output, Value) {
        let o = Command::new(env!("CARGO_BIN_EXE_nixmox"))
            .args(["verify", "--json", "-m"])
            .arg(lab.manifest())
            .env("NIXMOX_LAB_DIR", lab.lab_dir.path())
            .env("NIXMOX_STATE_DIR", lab.state_dir.path())
            .env("NIXMOX_CA_FILE", lab.lab_dir.path().join("ca/ca.crt"))
            .env(
                "NIXMOX_TERRAFORM",
                std::env::var("NIXMOX_TERRAFORM")
                    .unwrap_or_else(|_| "/opt/nixmox/bin/terraform".into()),
            )
            .env("NIXMOX_VERIFY_PASSWORD", password)
            .env("NIXMOX_SOPS", lab_stack::sops())
            .env("NO_COLOR", "1")
            .output()
            .expect("verify");
        let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
        (o, v)
    };
    let login = |v: &Value, service: &str| -> Value {
        checks(v)
            .iter()
            .find(|c| c["check"] == "oidc-login" && c["service"] == service)
            .cloned()
            .unwrap_or_else(|| panic!("no oidc-login check for {service}: {v:#}"))
    };
    let (o, v) = verify_as(&password);
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    assert_eq!(v["ok"], true, "{v:#}");
    for (service, target) in [
        ("wiki", "wiki-oidc as labuser"),
        ("notes", "notes-oidc as labuser"),
    ] {
        let c = login(&v, service);
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["target"], target, "{c}");
        assert!(c.get("skipped").is_none(), "{c}");
    }
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&password),
        "verify printed the password"
    );
    // A wrong password: the login step fails and says so.
    let (o, v) = verify_as("not-the-password");
    assert_eq!(o.status.code(), Some(1), "{v:#}");
    for service in ["wiki", "notes"] {
        let c = login(&v, service);
        assert_eq!(c["ok"], false, "{c}");
        let reason = c["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("login:") && reason.contains("refused"),
            "{c}"
        );
    }

    // A manifest that promises what the stack does not serve: a name without
    // a DNS record, a header the proxy does not set. Each check fails, saying so.
    let good = std::fs::read_to_string(lab.manifest()).expect("read manifest");
    let broken = good
        .replacen("hostname = \"wiki.nixmox.test\";", "hostname = \"wiki-gone.nixmox.test\";", 1)
        .replacen("proxy = { domain = \"docs.nixmox.test\"; upstream = \"10.213.0.10:8080\"; };", "proxy = { domain = \"docs.nixmox.test\"; upstream = \"10.213.0.10:8080\"; headers = { \"X-Not-Set\" = \"1\"; }; };", 1);
    assert_ne!(
        broken, good,
        "the lab manifest changed shape: update this test"
    );
    std::fs::write(lab.manifest(), &broken).expect("write manifest");
    let o = lab.nixmox(&["verify", "--json", "--only", "wiki"]);
    std::fs::write(lab.manifest(), &good).expect("restore manifest");
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    let dns = checks(&v)
        .iter()
        .find(|c| {
            c["check"] == "dns"
                && c["target"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("wiki-gone")
        })
        .expect("dns check");
    assert_eq!(dns["ok"], false, "{dns}");
    assert!(
        dns["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("wiki-gone.nixmox.test"),
        "{dns}"
    );
    let proxy = checks(&v)
        .iter()
        .find(|c| c["check"] == "proxy" && c["target"] == "https://docs.nixmox.test/")
        .expect("proxy check");
    assert_eq!(proxy["ok"], false, "{proxy}");
    assert!(
        proxy["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("header X-Not-Set is missing"),
        "{proxy}"
    );

    // Certificates from another CA: TLS fails with a reason.
    let other = lab.state_dir.path().join("other-ca.crt");
    let key = lab.state_dir.path().join("other-ca.key");
    let gen = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=someone else",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(gen.status.success());
    let o = Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .args(["verify", "--json", "--only", "wiki", "-m"])
        .arg(lab.manifest())
        .env("NIXMOX_STATE_DIR", lab.state_dir.path())
        .env("NIXMOX_CA_FILE", &other)
        .env("NIXMOX_SOPS", lab_stack::sops())
        .output()
        .expect("verify");
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    let tls = checks(&v)
        .iter()
        .find(|c| c["check"] == "tls" && c["target"] == "docs.nixmox.test")
        .expect("tls check");
    assert_eq!(tls["ok"], false);
    assert!(
        tls["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("verify"),
        "{tls}"
    );

    // A certificate from the right CA for another name: the TLS check fails
    // naming the mismatch (and passes for the name the certificate has).
    let ca_dir = lab.lab_dir.path().join("ca");
    let wrong = lab.state_dir.path().join("wrong");
    let sh = |cmd: &str| {
        let o = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
        assert!(o.status.success(), "{cmd}: {}", text(&o));
    };
    sh(&format!(
        "set -e; cd {w}; openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
         -subj /CN=other.nixmox.test -keyout k.pem -out c.csr 2>/dev/null; \
         printf 'subjectAltName=DNS:other.nixmox.test\\n' > ext; \
         openssl x509 -req -in c.csr -CA {ca}/ca.crt -CAkey {ca}/ca.key -set_serial 7 -days 2 \
         -extfile ext -out c.pem 2>/dev/null",
        w = {
            std::fs::create_dir_all(&wrong).expect("mkdir");
            wrong.display()
        },
        ca = ca_dir.display()
    ));
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            "nixmox-dash",
            "openssl",
            "s_server",
            "-quiet",
            "-www",
        ])
        .args(["-accept", "10.213.0.12:443", "-cert"])
        .arg(wrong.join("c.pem"))
        .arg("-key")
        .arg(wrong.join("k.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let ip: std::net::IpAddr = "10.213.0.12".parse().expect("ip");
    let ca = ca_dir.join("ca.crt").display().to_string();
    let t = Duration::from_secs(10);
    let mut right = Err(String::new());
    for _ in 0..50 {
        right = nixmox::verify::tls::check(ip, "other.nixmox.test", &ca, 1, t);
        if right.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mismatch = nixmox::verify::tls::check(ip, "board.nixmox.test", &ca, 1, t);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(right, Ok(()), "the certificate's own name");
    let reason = mismatch.expect_err("a certificate for another name passed");
    assert!(
        reason.contains("board.nixmox.test") && reason.contains("mismatch"),
        "{reason}"
    );

    // A stopped service: verify names it; apply restarts it (its system is current, but it is not healthy).
    let stop = lab.ssh("10.213.0.4", "pkill -x caddy; sleep 0.5; true");
    assert!(stop.status.success(), "{}", text(&stop));
    let o = lab.nixmox(&["verify", "--json", "--only", "wiki"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    let proxy = checks(&v)
        .iter()
        .find(|c| c["check"] == "proxy" && c["target"] == "https://docs.nixmox.test/")
        .expect("proxy check");
    assert_eq!(proxy["ok"], false, "{proxy}");
    assert!(
        proxy["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("docs.nixmox.test"),
        "{proxy}"
    );
    let o = lab.nixmox(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = lab.nixmox(&["verify", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    assert_eq!(v["ok"], true, "not healed: {v:#}");

    // Status: every service live on its last good system, no Terraform drift;
    // it rides on the connections the runs before it kept (one per host,
    // nixos.ssh.persist), and keeps them in turn.
    let before = masters(&lab);
    assert!(!before.is_empty(), "the apply kept no SSH connection");
    let o = lab.nixmox(&["status", "--json"]);
    let after = masters(&lab);
    assert_eq!(after.len(), 7, "one kept connection per host: {after:#?}");
    assert!(
        before.iter().all(|m| after.contains(m)),
        "status opened connections anew:\nbefore {before:#?}\nafter {after:#?}"
    );
    let st: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    assert_eq!(o.status.code(), Some(0), "{st:#}");
    assert_eq!(st["ok"], true, "{st:#}");
    assert_eq!(st["services"].as_array().expect("services").len(), 7);
    assert!(
        st["services"]
            .as_array()
            .expect("services")
            .iter()
            .all(|s| s["live"] == true && s["drifted"] == false && s["last_good"].is_string()),
        "{st:#}"
    );

    // One application's new version redeploys exactly that service.
    let manifest = std::fs::read_to_string(lab.manifest()).expect("read manifest");
    std::fs::write(
        lab.manifest(),
        manifest.replacen("version = \"2.0\";", "version = \"2.1\";", 1),
    )
    .expect("write manifest");
    // With persist 0 (here from the environment) a run ends every
    // connection it opened: it uses none of the kept ones and leaves none.
    let kept = masters(&lab);
    let o = lab
        .command(&["apply", "--json"])
        .env("NIXMOX_SSH_PERSIST", "0")
        .output()
        .expect("apply");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        masters(&lab),
        kept,
        "apply with persist 0 touched the kept connections"
    );
    let own = private_masters();
    assert!(
        own.is_empty(),
        "apply with persist 0 left SSH connections: {own:#?}"
    );
    let changed_hosts = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| {
                e["status"] == "changed"
                    && e["phase"].as_str().is_some_and(|p| p.starts_with("nix:"))
            })
            .filter_map(|e| e["step"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(changed_hosts(&o), ["nix:service-config:notes"]);

    // Evaluation: each host's system is evaluated once per flake source, in
    // a part per core, and the changed host is built from the derivation
    // that evaluation wrote (no second evaluation); a run on an unchanged
    // flake evaluates nothing.
    let count = |execs: &[Vec<String>], cmd: &[&str]| {
        execs
            .iter()
            .filter(|e| e.iter().take(cmd.len()).eq(cmd.iter()))
            .count()
    };
    let manifest = std::fs::read_to_string(lab.manifest()).expect("read manifest");
    std::fs::write(
        lab.manifest(),
        manifest.replacen("version = \"2.1\";", "version = \"2.2\";", 1),
    )
    .expect("write manifest");
    let (o, execs) = lab.execs(&["apply", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(changed_hosts(&o), ["nix:service-config:notes"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let evals = count(&execs, &["nix", "eval"]);
    assert!(
        (1..=cores.min(7)).contains(&evals),
        "{evals} evaluations of 7 hosts on {cores} cores: {execs:?}"
    );
    assert_eq!(count(&execs, &["nix", "build"]), 0, "{execs:?}");
    assert_eq!(count(&execs, &["nix-store", "--realise"]), 1, "{execs:?}");
    let (o, execs) = lab.execs(&["apply", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(changed_hosts(&o).is_empty(), "{}", text(&o));
    assert_eq!(count(&execs, &["nix", "eval"]), 0, "{execs:?}");
    assert_eq!(count(&execs, &["nix", "flake", "metadata"]), 1, "{execs:?}");

    // destroy --yes takes the stack down through Terraform: no host is left.
    let o = lab.nixmox(&["destroy", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !lab_hosts_in(&String::from_utf8_lossy(&netns.stdout)),
        "hosts left after destroy"
    );

    let down = lab.nixmox(&["lab", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !lab_hosts_in(&String::from_utf8_lossy(&netns.stdout)),
        "namespaces left"
    );
    assert!(
        !Command::new("ip")
            .args(["link", "show", "nmxlab0"])
            .output()
            .expect("ip")
            .status
            .success(),
        "bridge left"
    );
    let routes = Command::new("ip")
        .args(["route", "show", "table", "all"])
        .output()
        .expect("ip");
    assert!(
        !String::from_utf8_lossy(&routes.stdout).contains("10.213.0."),
        "routes left"
    );
    assert!(
        !lab.lab_dir.path().exists()
            || std::fs::read_dir(lab.lab_dir.path())
                .map(|d| d.count())
                .unwrap_or(0)
                == 0,
        "lab files left"
    );
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| {
            l.contains(&*lab.lab_dir.path().display().to_string()) || l.contains("10.213.0.")
        })
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
    let kept = masters(&lab);
    assert!(
        kept.is_empty(),
        "SSH connections kept after lab down: {kept:?}"
    );
    assert!(
        !Path::new("/var/lib/lab").exists()
            || std::fs::read_dir("/var/lib/lab")
                .map(|d| d.count())
                .unwrap_or(0)
                == 0
    );
}

/// The SSH connections kept for the lab's hosts: the masters of the
/// sockets nixmox names for them (a kept master's title is
/// `ssh: <socket> [mux]`), pid and title.
fn masters(lab: &Lab) -> std::collections::BTreeSet<(String, String)> {
    use nixmox::nixos::ssh::{KnownHosts, SshTarget};
    let control = nixmox::nixos::ssh_control::Control::with_persist(60);
    // The lab's seven hosts (examples/lab/manifest.nix), as root on port 22.
    let sockets: Vec<String> = [2, 3, 4, 5, 10, 11, 12]
        .map(|last| {
            SshTarget {
                name: String::new(),
                address: format!("10.213.0.{last}").parse().expect("address"),
                user: "root".into(),
                port: 22,
                key: Some(lab.lab_dir.path().join("ssh/id_ed25519")),
                known_hosts: KnownHosts::AcceptNew,
                known_hosts_file: Some(lab.lab_dir.path().join("ssh/known_hosts")),
                connect_timeout: Duration::from_secs(10),
                control_dir: control.dir.clone(),
                persist: control.persist,
            }
            .control_path()
            .display()
            .to_string()
        })
        .to_vec();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            (c.contains("[mux]") && sockets.iter().any(|s| c.contains(s.as_str())))
                .then(|| (e.file_name().to_string_lossy().into_owned(), c))
        })
        .collect()
}

/// Masters of connections a run keeps to itself (in a directory of its
/// own, not the shared one): none should outlive their run.
fn private_masters() -> Vec<String> {
    let shared = nixmox::nixos::ssh_control::Control::with_persist(60).dir;
    let shared = format!("{}/", shared.display());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("[mux]") && c.contains("/nixmox-ssh-") && !c.contains(&shared))
        .collect()
}

/// Whether `ip netns list` shows any of the lab's hosts (other namespaces,
/// such as a clean-root build's, are not the lab's).
fn lab_hosts_in(listing: &str) -> bool {
    const HOSTS: [&str; 7] = [
        "dns",
        "postgresql",
        "caddy",
        "authentik",
        "wiki",
        "notes",
        "dash",
    ];
    listing.lines().any(|l| {
        let name = l.split_whitespace().next().unwrap_or_default();
        HOSTS.iter().any(|h| name == format!("nixmox-{h}"))
    })
}
