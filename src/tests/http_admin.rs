//! Admin notification routes against real nodes: template list, create, update, delete and
//! init-defaults with every error, the batch send (rendering, one row per distinct user,
//! `notification` then `notification_update` on a device on another node), and 403 for
//! non-admins on each route.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::http_notifications::{Api, done, refused, refused_with};
use super::realtime::Cluster;

const TEMPLATES: &str = "/api/admin/notification-templates";
const BATCH: &str = "/api/admin/notifications/batch-send";

fn types(body: &Value) -> Vec<&str> {
    body["data"]["templates"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

async fn template_id(api: &Api, kind: &str) -> String {
    let (_, list) = api.get(TEMPLATES).await;
    list["data"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == kind)
        .map(|t| t["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no template {kind}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_create_update_delete_and_defaults() {
    let c = Cluster::start(1, &[]).await;
    let api = Api::of(&c, 0, Uuid::new_v4(), true);
    let db = c.env.db().await;

    let (status, list) = api.get(TEMPLATES).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        types(&list),
        [
            "card_completed",
            "new_group_message",
            "new_message",
            "system"
        ]
    );
    let system = &list["data"]["templates"][3];
    assert_eq!(
        keys(system),
        [
            "content_template",
            "created_at",
            "enable_push",
            "enable_websocket",
            "id",
            "is_active",
            "priority",
            "title",
            "type",
            "updated_at"
        ]
    );
    assert_eq!(
        (
            &system["title"],
            &system["content_template"],
            &system["priority"]
        ),
        (
            &json!("System Notification"),
            &json!("{{content}}"),
            &json!(1)
        )
    );

    // Create: booleans as given, every field back in the answer.
    let (status, created) = api
        .post(
            TEMPLATES,
            json!({"type": "promo", "title": "Hi {{name}}", "content_template": "c",
                "priority": 2, "enable_push": false, "enable_websocket": false,
                "is_active": false, "description": "d", "id": "ignored"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let t = &created["data"]["template"];
    assert_eq!(
        (
            &t["type"],
            &t["priority"],
            &t["enable_push"],
            &t["enable_websocket"],
            &t["is_active"],
            &t["description"]
        ),
        (
            &json!("promo"),
            &json!(2),
            &json!(false),
            &json!(false),
            &json!(false),
            &json!("d")
        )
    );
    assert_eq!(t["created_at"], t["updated_at"]);
    let promo = t["id"].as_str().unwrap().to_string();
    let row = db
        .query_one(
            "SELECT enable_push, enable_websocket, is_active FROM notification_templates WHERE type = 'promo'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, false, false)
    );
    let (_, minimal) = api
        .post(TEMPLATES, json!({"type": "min", "title": "M"}))
        .await;
    let m = &minimal["data"]["template"];
    assert_eq!(
        keys(m),
        [
            "created_at",
            "enable_push",
            "enable_websocket",
            "id",
            "is_active",
            "priority",
            "title",
            "type",
            "updated_at"
        ]
    );
    assert_eq!(
        (&m["priority"], &m["enable_push"], &m["is_active"]),
        (&json!(0), &json!(true), &json!(true))
    );
    refused(
        &api.post(TEMPLATES, json!({"type": "promo", "title": "again"}))
            .await,
        409,
        "duplicate_template_type",
        "a template of type promo already exists",
    );
    let bad_creates = [
        (json!({"title": "T"}), "missing_field", "type is required"),
        (json!({"type": "t"}), "missing_field", "title is required"),
        (
            json!({"type": "", "title": "T"}),
            "invalid_field",
            "invalid value for type: expected a non-empty string of at most 50 characters",
        ),
        (
            json!({"type": "t", "title": "T", "priority": 3}),
            "invalid_field",
            "invalid value for priority: expected an integer from 0 to 2",
        ),
        (
            json!({"type": "t", "title": "T", "enable_push": "no"}),
            "invalid_field",
            "invalid value for enable_push: expected true or false",
        ),
        (
            json!({"type": "t", "title": "T", "colour": "red"}),
            "unknown_field",
            "unknown field: colour",
        ),
    ];
    for (body, code, text) in bad_creates {
        refused(&api.post(TEMPLATES, body).await, 400, code, text);
    }
    for raw in [&b""[..], b"{nope", b"[1]", b"\"type\""] {
        refused_with(
            &api.call("POST", TEMPLATES, Some(raw)).await,
            400,
            "invalid_body",
        );
    }

    // Update by fixed fields only.
    let path = format!("{TEMPLATES}/{promo}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    done(
        &api.post(
            &path,
            json!({"title": "New {{name}}", "is_active": true, "content_template": null}),
        )
        .await,
        "Template updated successfully",
    );
    let (_, list) = api.get("/api/v1/admin/notification-templates").await;
    let t = list["data"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == promo.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            &t["title"],
            &t["is_active"],
            &t["enable_push"],
            &t["priority"]
        ),
        (
            &json!("New {{name}}"),
            &json!(true),
            &json!(false),
            &json!(2)
        )
    );
    assert!(t.get("content_template").is_none(), "{t}");
    assert_eq!(t["created_at"], created["data"]["template"]["created_at"]);
    assert_ne!(t["updated_at"], t["created_at"], "updated_at refreshed");
    let sneaky = json!({"title": "x", "title = 'pwned', type": "y",
        "1; DROP TABLE notifications; --": true});
    let (s, v) = api.post(&path, sneaky).await;
    assert_eq!((s, &v["error"]), (400, &json!("unknown_field")), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown field: ")
    );
    let bad_updates = [
        (
            json!({"priority": "high"}),
            "invalid_field",
            "invalid value for priority: expected an integer from 0 to 2",
        ),
        (
            json!({"is_active": 1}),
            "invalid_field",
            "invalid value for is_active: expected true or false",
        ),
        (
            json!({"title": null}),
            "invalid_field",
            "invalid value for title: expected a non-empty string of at most 200 characters",
        ),
        (
            json!({"created_at": "2020-01-01T00:00:00Z"}),
            "unknown_field",
            "unknown field: created_at",
        ),
        (json!({}), "no_fields", "no fields to update"),
    ];
    for (body, code, text) in bad_updates {
        refused(&api.post(&path, body).await, 400, code, text);
    }
    refused_with(
        &api.call("POST", &path, Some(b"not json")).await,
        400,
        "invalid_body",
    );
    refused(
        &api.post(&path, json!({"type": "system"})).await,
        409,
        "duplicate_template_type",
        "a template of type system already exists",
    );
    let title: String = db
        .query_one(
            "SELECT title FROM notification_templates WHERE id::text = $1",
            &[&promo],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "New {{name}}", "nothing changed by refused updates");
    let none = format!("{TEMPLATES}/{}", Uuid::new_v4());
    let invalid = ("invalid_id", "Invalid template ID");
    let not_found = ("template_not_found", "template not found");
    refused(
        &api.post(&none, json!({"title": "x"})).await,
        404,
        not_found.0,
        not_found.1,
    );
    refused(
        &api.post(&format!("{TEMPLATES}/xyz"), json!({"title": "x"}))
            .await,
        400,
        invalid.0,
        invalid.1,
    );

    // Delete.
    refused(
        &api.call("DELETE", &format!("{TEMPLATES}/xyz"), None).await,
        400,
        invalid.0,
        invalid.1,
    );
    refused(
        &api.call("DELETE", &none, None).await,
        404,
        not_found.0,
        not_found.1,
    );
    done(
        &api.call("DELETE", &path, None).await,
        "Template deleted successfully",
    );
    refused(
        &api.call("DELETE", &path, None).await,
        404,
        not_found.0,
        not_found.1,
    );

    // init-defaults brings back a deleted default and leaves edited ones alone.
    let system = template_id(&api, "system").await;
    done(
        &api.call("DELETE", &format!("{TEMPLATES}/{system}"), None)
            .await,
        "Template deleted successfully",
    );
    let card = template_id(&api, "card_completed").await;
    done(
        &api.post(&format!("{TEMPLATES}/{card}"), json!({"title": "Edited"}))
            .await,
        "Template updated successfully",
    );
    done(
        &api.post(&format!("{TEMPLATES}/init-defaults"), json!({}))
            .await,
        "Default templates initialized successfully",
    );
    let (_, list) = api.get(TEMPLATES).await;
    assert_eq!(
        types(&list),
        [
            "card_completed",
            "min",
            "new_group_message",
            "new_message",
            "system"
        ]
    );
    assert_eq!(list["data"]["templates"][0]["title"], "Edited");
    assert_eq!(list["data"]["templates"][4]["title"], "System Notification");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_get_403_everywhere() {
    let admin_user = Uuid::new_v4();
    let listed = admin_user.to_string();
    let c = Cluster::start(1, &[("ADMIN_USER_IDS", listed.as_str())]).await;
    let user = Api::of(&c, 0, Uuid::new_v4(), false);
    let id = Uuid::new_v4();
    let routes = [
        ("GET", TEMPLATES.to_string(), None),
        (
            "POST",
            TEMPLATES.to_string(),
            Some(json!({"type": "x", "title": "X"})),
        ),
        (
            "POST",
            format!("{TEMPLATES}/{id}"),
            Some(json!({"title": "X"})),
        ),
        ("DELETE", format!("{TEMPLATES}/{id}"), None),
        (
            "POST",
            format!("{TEMPLATES}/init-defaults"),
            Some(json!({})),
        ),
        (
            "POST",
            BATCH.to_string(),
            Some(json!({"user_ids": [id], "template_type": "system", "template_vars": {}})),
        ),
    ];
    for (method, path, body) in &routes {
        let body = body.as_ref().map(|b| b.to_string().into_bytes());
        for p in [
            path.clone(),
            path.replacen("/api/admin", "/api/v1/admin", 1),
        ] {
            let a = user.call(method, &p, body.as_deref()).await;
            refused(&a, 403, "admin_required", "admin access required");
        }
    }
    let db = c.env.db().await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM notification_templates").await,
        4
    );
    assert_eq!(count("SELECT count(*) FROM notifications").await, 0);
    // A user listed in ADMIN_USER_IDS needs no admin claim.
    let listed_admin = Api::of(&c, 0, admin_user, false);
    assert_eq!(listed_admin.get(TEMPLATES).await.0, 200);
    c.stop().await;
}
