//! Properties of the plan over random dependency graphs: every step comes
//! after what it waits for and after its dependencies' verification, the
//! phases keep the canonical order, and the output does not depend on the
//! order the manifest lists things in.

use nixmox::manifest::{validate_value, LoadError};
use nixmox::plan::{self, Phase, Plan};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;

fn plan_of(v: &Value) -> Plan {
    let validated = validate_value(Path::new("prop.json"), v)
        .unwrap_or_else(|e| panic!("generated manifest rejected: {e:?}"));
    plan::build(&validated.manifest, &[]).unwrap_or_else(|e| panic!("plan failed: {e}"))
}

/// The same manifest with its services listed in another order.
fn reversed_services(v: &Value) -> Value {
    let mut out = v.clone();
    if let Some(map) = v["services"].as_object() {
        let rev: Map<String, Value> = map
            .iter()
            .rev()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out["services"] = Value::Object(rev);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn steps_respect_dependencies_and_phase_order(apps in 0usize..40, max_deps in 0usize..5, seed in any::<u64>()) {
        let manifest = nixmox::synth::manifest(apps, max_deps, seed);
        let p = plan_of(&manifest);
        let pos: HashMap<&str, usize> = p.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        prop_assert_eq!(pos.len(), p.steps.len(), "step ids are unique");
        for (i, step) in p.steps.iter().enumerate() {
            for a in &step.after {
                let j = pos.get(a.as_str()).copied();
                prop_assert!(j.is_some_and(|j| j < i), "{} waits for {} which is not earlier", step.id, a);
            }
        }
        // The core's first round before auth-core; after it only the core's
        // second round and its verification, then the applications.
        let core_again = |s: &nixmox::plan::Step| s.id.ends_with(":again")
            || (s.phase == Phase::Verify && s.service.as_deref().is_some_and(|n| p.core.iter().any(|c| c == n)));
        let last_core = p.steps.iter().rposition(|s| s.phase == Phase::NixCore && !s.id.ends_with(":again")).unwrap_or(0);
        let auth = pos["tf:auth-core"];
        prop_assert!(last_core < auth);
        let last_round = p.steps.iter().rposition(core_again).unwrap_or(auth);
        for (i, s) in p.steps.iter().enumerate().skip(auth + 1) {
            if i <= last_round {
                prop_assert!(core_again(s), "{} amid the core's second round", s.id);
            } else {
                prop_assert!(s.phase >= Phase::TfServiceInfra && !core_again(s), "{} after the core", s.id);
            }
        }
        for c in &p.core {
            prop_assert!(pos.contains_key(format!("nix:core:{c}:again").as_str()), "no second round for {}", c);
            prop_assert!(pos.contains_key(format!("verify:{c}").as_str()), "no verify for {}", c);
        }
        // Each application's own steps in canonical order, after its dependencies are verified.
        let services = manifest["services"].as_object().cloned().unwrap_or_default();
        for (name, body) in &services {
            let ids: Vec<usize> = ["tf:service-infra", "nix:service-config", "health", "tf:service-config", "verify"]
                .iter()
                .map(|ph| pos[format!("{ph}:{name}").as_str()])
                .collect();
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "{name}'s steps out of order");
            for dep in body["depends_on"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if let Some(&v) = pos.get(format!("verify:{dep}").as_str()) {
                    prop_assert!(v < ids[0], "{name} starts before {dep} is verified");
                }
            }
        }
        // Waves: nobody depends on a member of its own or a later wave.
        let wave_of: HashMap<&str, usize> = p.waves.iter().enumerate().flat_map(|(w, names)| names.iter().map(move |n| (n.as_str(), w))).collect();
        for (name, body) in &services {
            for dep in body["depends_on"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if let Some(&dw) = wave_of.get(dep) {
                    prop_assert!(dw < wave_of[name.as_str()], "{name} shares or precedes the wave of {dep}");
                }
            }
        }
    }

    #[test]
    fn plan_is_deterministic_and_ignores_listing_order(apps in 0usize..30, seed in any::<u64>()) {
        let manifest = nixmox::synth::manifest(apps, 3, seed);
        let a = plan_of(&manifest);
        let b = plan_of(&manifest);
        let c = plan_of(&reversed_services(&manifest));
        prop_assert_eq!(&a.steps, &b.steps);
        prop_assert_eq!(&a.steps, &c.steps);
        prop_assert_eq!(&a.waves, &c.waves);
    }

    #[test]
    fn cycles_are_reported_with_their_path(apps in 2usize..30, seed in any::<u64>(), pick in any::<u64>()) {
        let mut manifest = nixmox::synth::manifest(apps, 2, seed);
        // Close a cycle: an early app now depends on a later one that (perhaps
        // transitively) depends on it; force the loop with a direct edge back.
        let a = (pick % (apps as u64 - 1)) as usize;
        let b = a + 1 + (pick as usize / 7) % (apps - a - 1).max(1);
        let (na, nb) = (format!("app{a:05}"), format!("app{b:05}"));
        manifest["services"][&nb]["depends_on"].as_array_mut().expect("deps").push(json!(na.clone()));
        manifest["services"][&na]["depends_on"].as_array_mut().expect("deps").push(json!(nb.clone()));
        let err = validate_value(Path::new("prop.json"), &manifest).expect_err("a cycle must be rejected");
        let LoadError::Invalid { errors, .. } = err else { panic!("not a validation error") };
        let cycle = errors.iter().find(|e| e.message.starts_with("dependency cycle: ")).expect("cycle reported");
        let path: Vec<&str> = cycle.message.trim_start_matches("dependency cycle: ").split(" -> ").collect();
        prop_assert!(path.len() >= 3 && path.first() == path.last(), "{}", cycle.message);
        prop_assert!(cycle.path.as_str().ends_with(".depends_on"));
        // Each link in the reported path is a real dependency.
        for w in path.windows(2) {
            let deps = manifest["services"][w[0]]["depends_on"].as_array().cloned().unwrap_or_default();
            prop_assert!(deps.contains(&json!(w[1])), "{} does not depend on {}", w[0], w[1]);
        }
    }
}
