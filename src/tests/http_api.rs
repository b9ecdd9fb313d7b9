//! Shared helpers of the HTTP test modules: [`Api`] (calls below `/api/v1` as one user on
//! one node) and the error-envelope and paging-bound assertions.

use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::realtime::{Cluster, uuid_of};

/// HTTP calls as one user against one node.
pub struct Api {
    /// `http://addr/api/v1`.
    pub base: String,
    /// The user's token.
    pub token: String,
    /// The user.
    pub user: Uuid,
}

impl Api {
    /// `user` talking to node `i`.
    pub fn new(c: &Cluster, i: usize, user: Uuid) -> Api {
        Api {
            base: format!("{}/api/v1", c.nodes[i].url()),
            token: c.env.token(user, false),
            user,
        }
    }

    /// GET `path` (below `/api/v1`).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        client::get(&format!("{}{path}", self.base), Some(&self.token))
            .await
            .expect("GET")
    }

    /// POST a JSON body to `path`.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        client::post(&format!("{}{path}", self.base), Some(&self.token), &body)
            .await
            .expect("POST")
    }

    /// POST raw bytes to `path`.
    pub async fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let a = client::send(
            "POST",
            &format!("{}{path}", self.base),
            &[("authorization", auth.as_str())],
            Some(body.to_vec()),
        )
        .await
        .expect("POST");
        (a.status, a.json())
    }

    /// The caller's conversation list (`query` without the `?`), asserting 200.
    pub async fn list(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/conversations?{query}")).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["conversations"]
            .as_array()
            .expect("conversations array")
            .clone()
    }

    /// Creates a group, asserting 200; returns its id.
    pub async fn group(&self, name: &str, members: &[Uuid]) -> Uuid {
        let (status, body) = self
            .post(
                "/conversations/group",
                json!({"group_name": name, "member_ids": members}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        uuid_of(&body["data"]["id"])
    }
}

/// Asserts an error answer: status, the envelope's `code` and the message text.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, message: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], status, "{}", answer.1);
    assert_eq!(answer.1["message"], message, "{}", answer.1);
    assert!(answer.1.get("data").is_none(), "{}", answer.1);
}

/// Asserts a 400 for each query string appended to `path` (paging bounds).
pub async fn assert_paging_bounds(api: &Api, path: &str) {
    let sep = if path.contains('?') { '&' } else { '?' };
    for q in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "offset=-1",
        "offset=x",
        "offset=10001",
        "offset=9999999999",
    ] {
        let (status, body) = api.get(&format!("{path}{sep}{q}")).await;
        assert_eq!(status, 400, "{path} {q}: {body}");
        let code = body["error"].as_str().unwrap_or_default();
        assert!(
            code == "invalid_limit" || code == "invalid_offset",
            "{q}: {body}"
        );
    }
    let (status, body) = api.get(&format!("{path}{sep}limit=100&offset=0")).await;
    assert_eq!(status, 200, "{path}: {body}");
    let (status, body) = api.get(&format!("{path}{sep}offset=10000")).await;
    assert_eq!(status, 200, "the largest offset: {path}: {body}");
}
