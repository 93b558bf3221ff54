//! `/api/v1/templates`: what `template` in `POST /api/v1/sandboxes` may be. Templates
//! live on runners (`sandstream template add` on each host); this is the union of what
//! the live runners report.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::error::AppResult;
use crate::registry::available;
use crate::store::Principal;

/// A template and the live runners that have it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Template {
    pub name: String,
    /// Runner ids, sorted.
    pub runners: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/templates", operation_id = "listTemplates", tag = "sandboxes",
    responses((status = 200, description = "Templates by name", body = Vec<Template>)))]
pub(crate) async fn list(State(state): State<Arc<AppState>>, _: Principal) -> AppResult<Json<Vec<Template>>> {
    let candidates = state.registry.candidates()?;
    let out = available(&candidates)
        .into_iter()
        .map(|(name, runners)| Template { name, runners: runners.into_iter().collect() })
        .collect();
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    const KEY: &str = "ss_templates_test_admin_key";

    struct Api {
        app: axum::Router,
        secret: String,
        _dir: tempfile::TempDir,
    }

    impl Api {
        async fn start() -> Api {
            let dir = tempfile::tempdir().expect("tempdir");
            let app = crate::server::app_for_tests(dir.path(), KEY).expect("app");
            let secret = std::fs::read_to_string(dir.path().join("runner-secret")).expect("secret").trim().to_string();
            Api { app, secret, _dir: dir }
        }

        async fn call(&self, method: reqwest::Method, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
            crate::server::call_for_tests(&self.app, method.as_str(), path, Some(bearer), body).await
        }

        async fn register(&self, body: Value) -> String {
            let (status, reg) = self.call(reqwest::Method::POST, "/api/v1/runners", &self.secret, Some(body)).await;
            assert_eq!(status, 201, "{reg}");
            reg["id"].as_str().expect("id").to_string()
        }
    }

    fn runner(name: &str) -> Value {
        // Nothing listens there: no request in this test may reach a runner.
        json!({"name": name, "controlUrl": "http://127.0.0.1:9", "advertiseHost": "127.0.0.1",
               "capacity": 4, "backend": "oci"})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn templates_come_from_runners_and_an_unknown_one_is_refused_before_any_runner_is_asked() {
        let api = Api::start().await;
        let mut with_py = runner("a");
        with_py["templates"] = json!(["default", "py"]);
        let a = api.register(with_py).await;
        // A runner older than the `templates` field has `default` only.
        let b = api.register(runner("b")).await;

        let (status, list) = api.call(reqwest::Method::GET, "/api/v1/templates", KEY, None).await;
        assert_eq!(status, 200, "{list}");
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        assert_eq!(list, json!([{"name": "default", "runners": both}, {"name": "py", "runners": [a.clone()]}]));
        let (_, runners) = api.call(reqwest::Method::GET, "/api/v1/runners", KEY, None).await;
        let mine = runners.as_array().expect("array").iter().find(|r| r["id"] == a.as_str()).expect("runner a").clone();
        assert_eq!(mine["templates"], json!(["default", "py"]));

        for (template, says) in [("no-such", "available templates: default, py"), ("../x", "not a template name")] {
            let (status, err) =
                api.call(reqwest::Method::POST, "/api/v1/sandboxes", KEY, Some(json!({"template": template}))).await;
            assert_eq!(status, 400, "{err}");
            assert_eq!(err["code"], "bad_request");
            assert!(err["message"].as_str().expect("message").contains(says), "{err}");
        }
        let (_, sandboxes) = api.call(reqwest::Method::GET, "/api/v1/sandboxes", KEY, None).await;
        assert_eq!(sandboxes, json!([]), "nothing half-created");

        // The next heartbeat without `py`: it is gone at once.
        let (status, _) = api
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/runners/{a}/heartbeat"),
                &api.secret,
                Some(json!({"sandboxes": [], "templates": ["default"]})),
            )
            .await;
        assert_eq!(status, 200);
        let (_, list) = api.call(reqwest::Method::GET, "/api/v1/templates", KEY, None).await;
        assert_eq!(list, json!([{"name": "default", "runners": both}]));
        let (status, err) =
            api.call(reqwest::Method::POST, "/api/v1/sandboxes", KEY, Some(json!({"template": "py"}))).await;
        assert_eq!(status, 400, "{err}");
        assert!(err["message"].as_str().expect("message").ends_with("available templates: default"), "{err}");

        let (status, _) = api.call(reqwest::Method::GET, "/api/v1/templates", "not-a-key", None).await;
        assert_eq!(status, 401);
    }
}
