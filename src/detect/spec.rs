//! API9 improper inventory against the API's own OpenAPI document: a call
//! that succeeds on an endpoint the document does not list (a shadow API)
//! or marks deprecated (a zombie API still in use).

use super::behavior::Finding;
use crate::event::{Owasp, Severity};
use crate::inventory::drift::{path_match, Spec};

pub struct SpecWatch {
    spec: Spec,
}

impl SpecWatch {
    pub fn new(spec: Spec) -> Self {
        SpecWatch { spec }
    }

    /// Judges one answered call: `template` is the path with ids replaced.
    pub fn check(
        &self,
        method: &str,
        host: &str,
        template: &str,
        status: u16,
        out: &mut Vec<Finding>,
    ) {
        if !(200..400).contains(&status) {
            // A 404 is the server agreeing the endpoint does not exist.
            return;
        }
        let key = format!("{host} {method} {template}");
        let best = self
            .spec
            .operations
            .iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method))
            .filter_map(|op| path_match(&op.path, template).map(|exact| (exact, op)))
            .max_by_key(|(exact, _)| *exact)
            .map(|(_, op)| op);
        match best {
            None => out.push(Finding {
                rule: "detect.inventory.shadow_api",
                severity: Severity::Medium,
                owasp: Owasp::ImproperInventoryManagement,
                confidence: 80,
                title: format!("Undocumented endpoint in use: {method} {template}"),
                what: format!(
                    "{key} answered {status} but is not in the API's OpenAPI document ({} operations)."
                    ,
                    self.spec.operations.len()
                ),
                why: "Endpoints nobody documented are rarely reviewed, tested or protected like the rest of the API.",
                todo: "Document the endpoint and bring it under the API's security controls, or remove it.",
                counts: vec![("status", u64::from(status))],
                subject: key,
            }),
            Some(op) if op.deprecated => out.push(Finding {
                rule: "detect.inventory.deprecated_api",
                severity: Severity::Medium,
                owasp: Owasp::ImproperInventoryManagement,
                confidence: 85,
                title: format!("Deprecated endpoint still in use: {method} {}", op.path),
                what: format!(
                    "{key} answered {status}; the OpenAPI document marks {} {} deprecated.",
                    op.method, op.path
                ),
                why: "Deprecated versions keep old flaws reachable after the current version fixed them.",
                todo: "Move the remaining clients to the current endpoint and switch the deprecated one off.",
                counts: vec![("status", u64::from(status))],
                subject: key,
            }),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /api/users/{userId}:
    get: {responses: {"200": {description: ok}}}
  /api/v0/users/{userId}:
    get: {deprecated: true, responses: {"200": {description: ok}}}
"#;

    fn rules(method: &str, template: &str, status: u16) -> Vec<&'static str> {
        let watch = SpecWatch::new(Spec::parse(SPEC, "t").unwrap());
        let mut out = Vec::new();
        watch.check(method, "h", template, status, &mut out);
        out.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn shadow_deprecated_and_documented() {
        assert_eq!(
            rules("GET", "/api/internal/export", 200),
            vec!["detect.inventory.shadow_api"]
        );
        assert_eq!(
            rules("GET", "/api/v0/users/{id}", 200),
            vec!["detect.inventory.deprecated_api"]
        );
        assert!(rules("GET", "/api/users/{id}", 200).is_empty());
        assert!(
            rules("GET", "/admin.php", 404).is_empty(),
            "a 404 is not a shadow API"
        );
        assert_eq!(
            rules("DELETE", "/api/users/{id}", 204),
            vec!["detect.inventory.shadow_api"]
        );
    }
}
