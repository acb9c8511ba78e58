//! Improper inventory: a Host the learning period never showed being
//! answered, and (with the API's OpenAPI document) calls to operations it
//! does not list or marks deprecated.

use super::report::Finding;
use super::rules::RuleId;
use crate::analysis::facts::Facts;
use crate::inventory::drift::{path_match, Spec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Packet time during which every answered host is taken as known.
const LEARN_HOSTS_SECS: u64 = 120;
/// Hosts remembered.
const MAX_HOSTS: usize = 4096;

/// Hosts the API was seen serving (part of the baseline snapshot), and
/// the spec if configured.
#[derive(Default, Serialize, Deserialize)]
pub struct Hosts {
    known: BTreeMap<String, u64>,
    first_secs: Option<u64>,
    exchanges: u64,
    #[serde(skip)]
    pub spec: Option<Spec>,
}

impl Hosts {
    pub fn observe(&mut self, f: &Facts<'_>, learn_exchanges: u64, out: &mut Vec<Finding>) {
        self.exchanges += 1;
        let first = *self.first_secs.get_or_insert(f.now);
        let host = f.key.host.to_string();
        let learning =
            f.now.saturating_sub(first) < LEARN_HOSTS_SECS || self.exchanges < learn_exchanges * 10;
        let known = self.known.contains_key(&host);
        let success = f.succeeded();
        if !known && success && self.known.len() < MAX_HOSTS {
            self.known.insert(host.clone(), f.now);
        }
        if !known && !learning && success {
            out.push(
                Finding::new(
                    RuleId::UnknownHost,
                    60,
                    format!(
                        "A request named the host {host:?} and was answered {} by {}, which until then served only {:?}.",
                        f.status().unwrap_or(0),
                        f.exchange.server,
                        self.known.keys().filter(|h| **h != host).take(5).collect::<Vec<_>>()
                    ),
                    host.clone(),
                )
                .title(format!("API answered for a host it was not known to serve: {host}"))
                .counts(&[("known_hosts", self.known.len() as u64)]),
            );
        }
        if let (Some(spec), true) = (&self.spec, success || f.status().is_some_and(|s| s < 400)) {
            spec_check(spec, f, out);
        }
    }
}

/// A successful call to an operation the spec lacks or deprecates.
fn spec_check(spec: &Spec, f: &Facts<'_>, out: &mut Vec<Finding>) {
    let method = f.key.method.as_str();
    let template = f.key.template.as_str();
    let best = spec
        .operations
        .iter()
        .filter(|op| op.method.eq_ignore_ascii_case(method))
        .filter_map(|op| path_match(&op.path, template).map(|exact| (exact, op)))
        .max_by_key(|(exact, _)| *exact)
        .map(|(_, op)| op);
    let status = f.status().unwrap_or(0);
    match best {
        None => out.push(
            Finding::new(
                RuleId::ShadowApi,
                80,
                format!(
                    "{} answered {status} but is not in the API's OpenAPI document ({} operations).",
                    f.key,
                    spec.operations.len()
                ),
                f.key.to_string(),
            )
            .title(format!("Undocumented endpoint in use: {method} {template}"))
            .counts(&[("status", u64::from(status))]),
        ),
        Some(op) if op.deprecated => out.push(
            Finding::new(
                RuleId::DeprecatedApi,
                90,
                format!(
                    "{} answered {status}; the API's OpenAPI document marks {} {} deprecated.",
                    f.key, op.method, op.path
                ),
                f.key.to_string(),
            )
            .title(format!("Deprecated endpoint still in use: {method} {template}"))
            .counts(&[("status", u64::from(status))]),
        ),
        Some(_) => {}
    }
}
