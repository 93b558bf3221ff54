//! The OpenAPI 3.1 document, built from the same route table as the router
//! (`api::routes`), so a route cannot be served without being documented. Request and
//! response bodies are described in API.md.

use serde_json::{Map, Value, json};

use super::Access;

pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for route in super::routes() {
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}').map(String::from))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let security = match route.access {
            Access::Public => json!([]),
            Access::Runner => json!([{"runnerSecret": []}]),
            Access::Key | Access::Admin => json!([{"bearer": []}, {"apiKeyHeader": []}, {"session": []}]),
        };
        let op = json!({
            "summary": route.summary,
            "parameters": params,
            "security": security,
            "x-sandstream-auth": route.access.as_str(),
            "responses": {
                "default": {"description": "see API.md; errors are {status: \"error\", code, message}"}
            }
        });
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        entry[route.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Sandstream", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "session": {"type": "apiKey", "in": "cookie", "name": "sandstream_session"},
            "runnerSecret": {"type": "http", "scheme": "bearer"}
        }}
    })
}
