//! REST calls to a `sandstream` server under test.

use serde_json::Value;

/// `method url` with `key` as the bearer token and `body` as JSON: the status, and the
/// body as JSON (or as a JSON string when it is not JSON).
pub async fn call(key: &str, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
