//! OpenAPI 3.0 export of the inventory: templated paths with their path
//! parameters, methods, query parameters, status codes, and JSON schemas
//! inferred from the field paths of request and 2xx response bodies. Pure
//! function of a snapshot's endpoints; output is deterministic.

use super::profile::{FieldStat, FieldType};
use super::Endpoint;
use crate::exchange::Text;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Methods OpenAPI can describe; other methods are left out of the export.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Schema of a field type (OpenAPI 3.0 dialect).
fn type_schema(t: FieldType, nullable: bool) -> Value {
    let mut s = match t {
        FieldType::String | FieldType::Null => json!({"type": "string"}),
        FieldType::Integer => json!({"type": "integer"}),
        FieldType::Number => json!({"type": "number"}),
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Object => json!({"type": "object"}),
        FieldType::Array => json!({"type": "array", "items": {}}),
        FieldType::Uuid => json!({"type": "string", "format": "uuid"}),
        FieldType::Email => json!({"type": "string", "format": "email"}),
        FieldType::DateTime => json!({"type": "string", "format": "date-time"}),
        FieldType::Date => json!({"type": "string", "format": "date"}),
        FieldType::Uri => json!({"type": "string", "format": "uri"}),
        FieldType::Ip => json!({"type": "string"}),
    };
    if nullable {
        if let Some(o) = s.as_object_mut() {
            o.insert("nullable".into(), Value::Bool(true));
        }
    }
    s
}

#[derive(Default)]
struct SchemaNode {
    stat: Option<FieldStat>,
    props: BTreeMap<String, SchemaNode>,
    items: Option<Box<SchemaNode>>,
}

/// `user.cards[].number` → ["user", "cards", "[]", "number"].
fn tokens(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let name = part.trim_end_matches("[]");
        if !name.is_empty() {
            out.push(name);
        }
        let arrays = (part.len() - name.len()) / 2;
        out.extend(std::iter::repeat_n("[]", arrays));
    }
    out
}

impl SchemaNode {
    fn insert(&mut self, path: &str, stat: &FieldStat) {
        let mut node = self;
        for t in tokens(path) {
            node = if t == "[]" {
                node.items.get_or_insert_with(Box::default)
            } else {
                node.props.entry(t.to_string()).or_default()
            };
        }
        match &mut node.stat {
            Some(s) => {
                s.count += stat.count;
                for (a, b) in s.types.iter_mut().zip(stat.types.iter()) {
                    *a += b;
                }
            }
            None => node.stat = Some(stat.clone()),
        }
    }

    fn schema(&self) -> Value {
        let (t, nullable) = self
            .stat
            .as_ref()
            .map_or((FieldType::Object, false), FieldStat::dominant);
        if !self.props.is_empty() && (t == FieldType::Object || self.stat.is_none()) {
            let props: Map<String, Value> = self
                .props
                .iter()
                .map(|(k, v)| (k.clone(), v.schema()))
                .collect();
            let mut s = json!({"type": "object", "properties": props});
            if nullable {
                s["nullable"] = Value::Bool(true);
            }
            return s;
        }
        if let Some(items) = &self.items {
            if t == FieldType::Array || self.stat.is_none() {
                let mut s = json!({"type": "array", "items": items.schema()});
                if nullable {
                    s["nullable"] = Value::Bool(true);
                }
                return s;
            }
        }
        type_schema(t, nullable || t == FieldType::Null)
    }
}

/// Schema of a body from its flat field list; a root array when paths start with `[]`.
pub fn body_schema(fields: &BTreeMap<Text, FieldStat>) -> Value {
    let mut root = SchemaNode::default();
    for (path, stat) in fields {
        root.insert(path, stat);
    }
    if root.props.is_empty() {
        if let Some(items) = &root.items {
            return json!({"type": "array", "items": items.schema()});
        }
    }
    root.stat = None;
    root.schema()
}

fn param_schema(stat: &FieldStat) -> Value {
    let (t, _) = stat.dominant();
    match t {
        FieldType::Object | FieldType::Array | FieldType::Null => json!({"type": "string"}),
        t => type_schema(t, false),
    }
}

fn operation_id(method: &str, path: &str, used: &mut BTreeMap<String, u32>) -> String {
    let mut id = method.to_ascii_lowercase();
    let mut upper = true;
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                id.push(c.to_ascii_uppercase());
            } else {
                id.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    let n = used.entry(id.clone()).or_insert(0);
    *n += 1;
    if *n > 1 {
        id = format!("{id}{n}");
    }
    id
}

fn operation(ep: &Endpoint, used_ids: &mut BTreeMap<String, u32>) -> Value {
    let p = &ep.profile;
    let mut params: Vec<Value> = ep
        .params
        .iter()
        .map(|(name, kind)| {
            let (t, format) = kind.schema();
            let mut schema = json!({"type": t});
            if let Some(f) = format {
                schema["format"] = json!(f);
            }
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    for (name, stat) in &p.query_params {
        params.push(json!({
            "name": name.as_str(),
            "in": "query",
            "required": stat.count >= p.requests,
            "schema": param_schema(stat),
        }));
    }
    let mut responses = Map::new();
    let response_schema = (!p.response_fields.is_empty()).then(|| body_schema(&p.response_fields));
    for (status, n) in p.status_codes() {
        let mut r = json!({"description": format!("Observed {n} times")});
        if (200..300).contains(&status) {
            if let Some(schema) = &response_schema {
                r["content"] = json!({"application/json": {"schema": schema}});
            }
        }
        responses.insert(status.to_string(), r);
    }
    if responses.is_empty() {
        responses.insert(
            "default".into(),
            json!({"description": "No response observed"}),
        );
    }
    let mut op = json!({
        "operationId": operation_id(&ep.method, &ep.path, used_ids),
        "summary": format!("{} {} (observed {} requests)", ep.method, ep.path, p.requests),
        "responses": responses,
        "x-apisensor-hosts": [ep.host],
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    let body_method = !matches!(ep.method.as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS");
    if body_method {
        if !p.request_fields.is_empty() {
            op["requestBody"] = json!({
                "content": {"application/json": {"schema": body_schema(&p.request_fields)}}
            });
        } else if let Some((ct, _)) = p.request_content_types.iter().max_by_key(|(_, n)| **n) {
            op["requestBody"] = json!({"content": {ct.as_str(): {"schema": {}}}});
        }
    }
    op
}

/// The OpenAPI 3.0.3 document of `endpoints` (one per distinct path and
/// method; the same template on several hosts is listed once with every
/// host in `x-apisensor-hosts`).
pub fn document(endpoints: &[Endpoint], title: &str) -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let mut used_ids = BTreeMap::new();
    let mut hosts: Vec<&str> = Vec::new();
    for ep in endpoints {
        let method = ep.method.to_ascii_lowercase();
        if !METHODS.contains(&method.as_str()) {
            continue;
        }
        if !hosts.contains(&ep.host.as_str()) {
            hosts.push(&ep.host);
        }
        let item = paths.entry(&ep.path).or_default();
        match item.get_mut(&method) {
            Some(existing) => {
                if let Some(list) = existing["x-apisensor-hosts"].as_array_mut() {
                    list.push(json!(ep.host));
                }
            }
            None => {
                item.insert(method, operation(ep, &mut used_ids));
            }
        }
    }
    let servers: Vec<Value> = hosts
        .iter()
        .map(|h| json!({"url": format!("http://{h}")}))
        .collect();
    let paths: Map<String, Value> = paths
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::Object(v)))
        .collect();
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": "Discovered from observed traffic by apisensor: only what was seen is described."
        },
        "paths": paths,
    });
    if !servers.is_empty() {
        doc["servers"] = Value::Array(servers);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(t: FieldType, n: u64) -> FieldStat {
        let mut s = FieldStat {
            count: n,
            ..FieldStat::default()
        };
        s.types[t as usize] = n;
        s
    }

    #[test]
    fn nested_schema_from_flat_paths() {
        let mut f = BTreeMap::new();
        f.insert(Text::from("id"), stat(FieldType::Integer, 2));
        f.insert(Text::from("user"), stat(FieldType::Object, 2));
        f.insert(Text::from("user.cards"), stat(FieldType::Array, 2));
        f.insert(Text::from("user.cards[]"), stat(FieldType::Object, 2));
        f.insert(
            Text::from("user.cards[].number"),
            stat(FieldType::String, 2),
        );
        let s = body_schema(&f);
        assert_eq!(s["properties"]["id"]["type"], "integer");
        assert_eq!(
            s["properties"]["user"]["properties"]["cards"]["items"]["properties"]["number"]["type"],
            "string"
        );
        let mut arr = BTreeMap::new();
        arr.insert(Text::from("[]"), stat(FieldType::Object, 1));
        arr.insert(Text::from("[].id"), stat(FieldType::Uuid, 1));
        let s = body_schema(&arr);
        assert_eq!(s["type"], "array");
        assert_eq!(s["items"]["properties"]["id"]["format"], "uuid");
    }

    #[test]
    fn tokens_split_arrays() {
        assert_eq!(tokens("a.b[][].c"), vec!["a", "b", "[]", "[]", "c"]);
        assert_eq!(tokens("[].x"), vec!["[]", "x"]);
    }
}
