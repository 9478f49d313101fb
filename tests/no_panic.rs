//! No input makes validation or planning panic: arbitrary JSON trees, alone
//! and grafted into every level of a valid manifest, are either accepted or
//! rejected with errors that carry a message.

use nixmox::manifest::{validate_value, LoadError};
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::path::Path;

fn small() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json");
    let text = std::fs::read_to_string(&path).expect("read examples/small/manifest.json");
    serde_json::from_str(&text).expect("examples/small/manifest.json is JSON")
}

fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("domain".to_string()),
        Just("ip".to_string()),
        Just("depends_on".to_string()),
        Just("proxy".to_string()),
        Just("auth".to_string()),
        Just("type".to_string()),
        Just("oidc".to_string()),
        Just("db".to_string()),
        Just("dbs".to_string()),
        Just("health".to_string()),
        Just("upstream".to_string()),
        "[a-z_]{0,8}",
        ".{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::String),
        Just(Value::String("10.77.0.10:3000".into())),
        Just(Value::String("wiki".into())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Places in the small manifest where a graft lands.
const GRAFTS: &[&[&str]] = &[
    &[],
    &["network"],
    &["network", "outposts"],
    &["core_services"],
    &["core_services", "authentik"],
    &["services"],
    &["services", "wiki"],
    &["services", "wiki", "depends_on"],
    &["services", "wiki", "interface"],
    &["services", "wiki", "interface", "auth"],
    &["services", "wiki", "interface", "auth", "oidc"],
    &["services", "wiki", "interface", "proxy"],
    &["services", "wiki", "interface", "db"],
    &["services", "wiki", "interface", "health"],
    &["services", "search", "interface", "proxy", "auth"],
    &["deployment_phases"],
];

fn check(v: &Value) {
    match validate_value(Path::new("arbitrary.json"), v) {
        Ok(validated) => {
            let plan =
                nixmox::plan::build(&validated.manifest, &[]).expect("plan of a valid manifest");
            assert!(!plan.steps.is_empty());
        }
        Err(LoadError::Invalid { errors, .. }) => {
            assert!(!errors.is_empty(), "rejected without an error");
            assert!(errors.iter().all(|e| !e.message.is_empty()));
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_trees_never_panic(v in arb_json()) {
        check(&v);
    }

    #[test]
    fn grafts_into_a_valid_manifest_never_panic(graft in 0..GRAFTS.len(), v in arb_json()) {
        let mut m = small();
        let mut at = &mut m;
        for key in GRAFTS[graft] {
            at = &mut at[*key];
        }
        *at = v;
        check(&m);
    }
}
