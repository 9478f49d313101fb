//! ID token signatures against keys made and tokens signed by OpenSSL (not
//! by the code under test): RS256 and ES256 verify; a changed payload, a
//! token signed by another key, or a key set without the token's key do not.

use nixmox::verify::jwt::verify_signature;
use nixmox::verify::oidc_flow::b64url;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (run scripts/setup.sh)");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default()).expect("write");
    drop(pipe);
    let out = child.wait_with_output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    let s = if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_string()
    };
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A DER ECDSA signature (SEQUENCE of two INTEGERs) as JWS wants it: r || s, 32 bytes each.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2; // SEQUENCE tag and (short) length
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend(int);
        i += 2 + len;
    }
    out
}

fn token(alg: &str, kid: &str, key: &Path, payload: &Value, ec: bool) -> String {
    let h = b64url(
        json!({"alg": alg, "kid": kid, "typ": "JWT"})
            .to_string()
            .as_bytes(),
    );
    let p = b64url(payload.to_string().as_bytes());
    let input = format!("{h}.{p}");
    let key = key.display().to_string();
    let sig = openssl(&["dgst", "-sha256", "-sign", &key], Some(input.as_bytes()));
    let sig = if ec { der_to_fixed(&sig) } else { sig };
    format!("{input}.{}", b64url(&sig))
}

#[test]
fn rs256_and_es256_tokens_verify_and_forgeries_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rsa = dir.path().join("rsa.pem");
    let other = dir.path().join("other.pem");
    let ec = dir.path().join("ec.pem");
    for k in [&rsa, &other] {
        let k = k.display().to_string();
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &k,
            ],
            None,
        );
    }
    let ec_s = ec.display().to_string();
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &ec_s,
        ],
        None,
    );

    // The public keys as a JWKS: RSA modulus (exponent 65537), EC point x and y.
    let modulus = String::from_utf8(openssl(
        &[
            "rsa",
            "-in",
            &rsa.display().to_string(),
            "-noout",
            "-modulus",
        ],
        None,
    ))
    .expect("utf8");
    let n = hex(modulus.trim().trim_start_matches("Modulus="));
    let point = openssl(&["pkey", "-in", &ec_s, "-pubout", "-outform", "DER"], None);
    let xy = &point[point.len() - 64..];
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": b64url(&n), "e": b64url(&[1, 0, 1])},
        {"kty": "EC", "kid": "e1", "use": "sig", "crv": "P-256", "x": b64url(&xy[..32]), "y": b64url(&xy[32..])},
    ]});
    let claims = json!({"iss": "https://auth.lab", "sub": "labuser", "aud": "wiki"});

    let rs = token("RS256", "r1", &rsa, &claims, false);
    assert_eq!(verify_signature(&rs, &jwks), Ok(()));
    let es = token("ES256", "e1", &ec, &claims, true);
    assert_eq!(verify_signature(&es, &jwks), Ok(()));

    // The payload changed after signing.
    for t in [&rs, &es] {
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = b64url(
            json!({"iss": "https://auth.lab", "sub": "admin", "aud": "wiki"})
                .to_string()
                .as_bytes(),
        );
        let e = verify_signature(&parts.join("."), &jwks).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }
    // Signed by another key under the same kid.
    let forged = token("RS256", "r1", &other, &claims, false);
    assert!(verify_signature(&forged, &jwks)
        .unwrap_err()
        .contains("does not verify"));
    // A key set without the token's key.
    let e = verify_signature(&rs, &json!({"keys": []})).unwrap_err();
    assert!(e.contains("no key r1"), "{e}");
}
