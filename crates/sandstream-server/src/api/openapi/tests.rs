use std::collections::BTreeSet;

use serde_json::Value;

use super::document;
use crate::api::{Access, routes};
use crate::state::{ExecStatus, Phase, SandboxState};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every `$ref` anywhere under `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The router's routes and the document's operations are the same set: a route added
/// without its `#[utoipa::path]` (or listed in `ApiDoc`) fails here, and so does an
/// operation whose path or method no longer matches its route.
#[test]
fn every_route_has_its_operation_and_no_other() {
    let doc = document();
    let routed: BTreeSet<String> = routes().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| METHODS.iter().filter(|m| ops.get(**m).is_some()).map(move |m| format!("{m} {path}")))
        .collect();
    assert_eq!(routed.difference(&documented).collect::<Vec<_>>(), Vec::<&String>::new(), "routes without operation");
    assert_eq!(documented.difference(&routed).collect::<Vec<_>>(), Vec::<&String>::new(), "operations without route");
    assert_eq!(routed.len(), 40, "the route table changed: {routed:?}");
    // Client generators name a call by its operationId: one each, all different.
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|ops| METHODS.iter().filter_map(|m| ops.get(*m)))
        .map(|op| op["operationId"].as_str().expect("operationId"))
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "{ids:?}");
}

/// Each operation says who may call it, names each `{parameter}` of its path, answers
/// a success with a body schema (or 204) and its errors with `ErrorBody`, and every
/// schema it refers to exists.
#[test]
fn every_operation_is_complete() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for route in routes() {
        let what = format!("{} {}", route.method, route.path);
        let op = &doc["paths"][route.path][route.method];
        assert_eq!(op["x-sandstream-auth"], route.access.as_str(), "{what}");
        let security = op["security"].as_array().expect("security");
        assert_eq!(security.is_empty(), route.access == Access::Public, "{what}: {security:?}");
        for scheme in security.iter().flat_map(|s| s.as_object().expect("requirement").keys()) {
            assert!(doc["components"]["securitySchemes"].get(scheme).is_some(), "{what}: scheme {scheme}");
        }
        let in_path: BTreeSet<&str> =
            route.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        let params: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(in_path, params, "{what}: path parameters");

        let responses = op["responses"].as_object().expect("responses");
        let successes: Vec<(&String, &Value)> = responses.iter().filter(|(s, _)| s.starts_with('2')).collect();
        assert!(!successes.is_empty(), "{what}: no success answer");
        for (status, r) in successes {
            let typed = r["content"].as_object().is_some_and(|c| c.values().all(|m| m.get("schema").is_some()));
            assert!(typed || status == "204", "{what}: {status} has no schema: {r}");
        }
        for (status, r) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            if route.path == "/readyz" || (route.path == "/healthz" && status == "503") {
                continue; // their 503 is their own shape, documented as such
            }
            assert_eq!(
                r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                "{what}: {status}"
            );
        }
        if route.access != Access::Public {
            assert!(responses.contains_key("401"), "{what}");
        }
        if ["post", "put", "patch"].contains(&route.method) && !route.path.ends_with("/cancel") {
            let no_body = ["/api/v1/session"].contains(&route.path);
            assert_eq!(op.get("requestBody").is_none(), no_body, "{what}: request body");
            // An optional body is optional, not a JSON null.
            let optional =
                ["/api/v1/sandboxes", "/api/v1/login-links", "/api/v1/sandboxes/{id}/ssh-access"].contains(&route.path);
            // A file upload's body is the file's raw bytes.
            let raw = route.path == "/api/v1/sandboxes/{id}/files";
            if !no_body {
                assert_eq!(op["requestBody"]["required"], !optional, "{what}: {}", op["requestBody"]);
                let schema = match raw {
                    true => &op["requestBody"]["content"]["application/octet-stream"]["schema"],
                    false => &op["requestBody"]["content"]["application/json"]["schema"],
                };
                assert!(schema["$ref"].is_string() || raw && schema["type"] == "string", "{what}: {schema}");
            }
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 30, "{all:?}");
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r} is not a schema"));
        assert!(schemas.contains_key(name), "{r} is missing from components");
    }
}

/// The sandbox is `sandboxId` in every answer that names one; the older names stay,
/// marked deprecated, except `containerId` where design note 000 uses it.
#[test]
fn a_sandbox_is_named_sandbox_id_and_old_names_are_deprecated() {
    let doc = document();
    let schema = |name: &str| doc["components"]["schemas"][name]["properties"].clone();
    let sandbox = schema("Sandbox");
    assert!(sandbox["sandboxId"].is_object(), "{sandbox}");
    assert_eq!(sandbox["id"]["deprecated"], true, "{sandbox}");
    assert!(sandbox["sandboxId"].get("deprecated").is_none(), "{sandbox}");
    let execution = schema("Execution");
    assert!(execution["sandboxId"].is_object(), "{execution}");
    assert_eq!(execution["containerId"]["deprecated"], true, "{execution}");
    // Note 000's exec route keeps `containerId` as a name of its own.
    let started = schema("ExecStarted");
    assert!(started["sandboxId"].is_object() && started["containerId"].is_object(), "{started}");
    assert!(started["containerId"].get("deprecated").is_none(), "{started}");
    let body = schema("ExecBody");
    assert!(body["sandboxId"].is_object() && body["containerId"].is_object(), "{body}");
}

/// A file's bytes are `application/octet-stream` both ways, a string of any bytes; the
/// download answers 200 and 206 so.
#[test]
fn file_bytes_are_octet_streams() {
    let doc = document();
    let files = &doc["paths"]["/api/v1/sandboxes/{id}/files"];
    let binary = |schema: &serde_json::Value| schema["type"] == "string" && schema["format"] == "binary";
    for status in ["200", "206"] {
        let content = &files["get"]["responses"][status]["content"];
        assert_eq!(content.as_object().map(|c| c.len()), Some(1), "{status}: {content}");
        assert!(binary(&content["application/octet-stream"]["schema"]), "{status}: {content}");
    }
    let upload = &files["put"]["requestBody"]["content"]["application/octet-stream"]["schema"];
    assert!(binary(upload), "{upload}");
    let range = files["get"]["parameters"].as_array().expect("parameters").iter().find(|p| p["name"] == "Range");
    assert_eq!(range.map(|p| p["in"].clone()), Some(serde_json::json!("header")));
    assert_eq!(
        doc["components"]["schemas"]["EntryType"]["enum"],
        serde_json::json!(["file", "dir", "symlink", "other"])
    );
}

/// The states' schemas list the strings the JSON really carries.
#[test]
fn state_enums_name_what_the_json_says() {
    let doc = document();
    let names = |name: &str| doc["components"]["schemas"][name]["enum"].clone();
    let json = |all: Vec<&str>| serde_json::json!(all);
    assert_eq!(names("SandboxState"), json(SandboxState::ALL.iter().map(|s| s.as_str()).collect()));
    assert_eq!(names("ExecStatus"), json(ExecStatus::ALL.iter().map(|s| s.as_str()).collect()));
    assert_eq!(names("Phase"), json(Phase::ALL.iter().map(|s| s.as_str()).collect()));
    for s in SandboxState::ALL {
        assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
    }
}
