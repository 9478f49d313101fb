//! An ID token's signature, checked against the issuer's JWKS: RS256 and
//! ES256, the algorithms OpenID Connect providers sign with by default
//! (Authentik: RS256). The key is the JWKS entry with the token's `kid`, or
//! the only signing key there is. `ring` does the cryptography.

use super::oidc_flow::b64url_decode;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::Value;

/// Ok when `token` is signed by a key of `jwks` with the algorithm its header names.
pub fn verify_signature(token: &str, jwks: &Value) -> Result<(), String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the ID token is not a signed JWT (three dot-separated parts)".into());
    };
    let header: Value = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the ID token's header is not base64url JSON")?;
    let sig = b64url_decode(s).ok_or("the ID token's signature is not base64url")?;
    let alg = header["alg"].as_str().unwrap_or("none");
    let kid = header["kid"].as_str();
    let keys: Vec<&Value> = jwks["keys"]
        .as_array()
        .map(|k| {
            k.iter()
                .filter(|k| k["use"].as_str() != Some("enc"))
                .collect()
        })
        .unwrap_or_default();
    let key = match kid {
        Some(kid) => keys.iter().find(|k| k["kid"].as_str() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or_else(|| {
        format!(
            "no key {} in the issuer's JWKS ({} key(s))",
            kid.unwrap_or("(no kid, several keys)"),
            keys.len()
        )
    })?;
    let field = |name: &str| {
        key[name]
            .as_str()
            .and_then(b64url_decode)
            .ok_or_else(|| format!("JWKS key {}: no base64url '{name}'", kid.unwrap_or("")))
    };
    let signed = format!("{h}.{p}");
    let ok = match (alg, key["kty"].as_str()) {
        ("RS256", Some("RSA")) => signature::RsaPublicKeyComponents {
            n: field("n")?,
            e: field("e")?,
        }
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &sig,
        )
        .is_ok(),
        ("ES256", Some("EC")) if key["crv"] == "P-256" => {
            let mut point = vec![4u8];
            point.extend(field("x")?);
            point.extend(field("y")?);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &sig)
                .is_ok()
        }
        (alg, kty) => {
            return Err(format!(
                "the ID token is signed with {alg} by a {} key: nixmox checks RS256 and ES256 (P-256) only",
                kty.unwrap_or("?")
            ))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the ID token's {alg} signature does not verify with the issuer's key {}",
            kid.unwrap_or("")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsigned_or_unknown_keys_are_refused() {
        let h = crate::verify::oidc_flow::b64url(br#"{"alg":"none"}"#);
        let p = crate::verify::oidc_flow::b64url(br#"{"sub":"x"}"#);
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}]});
        let e = verify_signature(&format!("{h}.{p}."), &jwks).unwrap_err();
        assert!(e.contains("signed with none"), "{e}");
        let h = crate::verify::oidc_flow::b64url(br#"{"alg":"RS256","kid":"other"}"#);
        let e = verify_signature(&format!("{h}.{p}.AAAA"), &jwks).unwrap_err();
        assert!(e.contains("no key other"), "{e}");
        assert!(verify_signature("a.b", &jwks).is_err());
    }
}
