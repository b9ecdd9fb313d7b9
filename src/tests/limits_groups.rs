//! The `max_group_members` setting over real nodes: creating a group or adding members past
//! it is a 400 `group_too_large` that changes nothing; an admin raises it with a setting
//! change (0 lifts it); bad values are refused.

use serde_json::{Value, json};
use uuid::Uuid;

use super::http_api::{Api, assert_error};
use super::realtime::Cluster;

const TOO_LARGE: &str = "group_too_large";

fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

fn assert_too_large(answer: &(u16, Value), limit: u64) {
    assert_error(answer, 400, &format!("a group has at most {limit} members"));
    assert_eq!(answer.1["error"], TOO_LARGE, "{}", answer.1);
}

async fn member_count(api: &Api, group: Uuid) -> usize {
    let item = api
        .list("")
        .await
        .into_iter()
        .find(|i| i["id"] == group.to_string())
        .expect("the group is listed");
    item["members"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_past_max_group_members_are_refused() {
    let c = Cluster::start(1, &[]).await;
    let owner = Api::new(&c, 0, Uuid::new_v4());
    let create = |members: &[Uuid]| json!({"group_name": "big", "member_ids": members});

    // The default (2,000, owner included) refuses a group of 2,001 without a write.
    let answer = owner.post("/conversations/group", create(&ids(2000))).await;
    assert_too_large(&answer, 2000);
    assert!(owner.list("").await.is_empty(), "nothing was created");

    c.set("max_group_members", "5").await;
    // Exactly at the limit is fine; one more is refused.
    assert_too_large(
        &owner.post("/conversations/group", create(&ids(5))).await,
        5,
    );
    // Duplicates and the owner's own id do not count.
    let mut four = ids(4);
    four.push(four[0]);
    let group = owner.group("g", &four).await;
    assert_eq!(member_count(&owner, group).await, 5);

    // Adding to a full group is refused and changes nothing.
    let add = format!("/conversations/{group}/members");
    assert_too_large(&owner.post(&add, json!({"member_ids": ids(1)})).await, 5);
    // Re-adding active members adds no one: allowed.
    let (status, body) = owner
        .post(&add, json!({"member_ids": [four[1], four[2]]}))
        .await;
    assert_eq!(status, 200, "{body}");
    // A list longer than the limit is refused before the database is touched.
    assert_too_large(&owner.post(&add, json!({"member_ids": ids(5)})).await, 5);
    // After a member leaves there is room for one, not two (all or nothing).
    let (status, body) = owner
        .post(
            &format!("/conversations/{group}/members/remove"),
            json!({"user_id": four[3]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_too_large(&owner.post(&add, json!({"member_ids": ids(2)})).await, 5);
    assert_eq!(member_count(&owner, group).await, 4);
    let (status, body) = owner.post(&add, json!({"member_ids": ids(1)})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(member_count(&owner, group).await, 5);

    // Bad values for the setting are refused.
    let admin = c.env.token(Uuid::new_v4(), true);
    for bad in ["-1", "abc", "1.5", "10000001"] {
        let (status, body) = super::client::post(
            &format!("{}/api/admin/settings/max_group_members", c.nodes[0].url()),
            Some(&admin),
            &json!({"value": bad}),
        )
        .await
        .unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_setting_value", "{bad}");
    }
    // An admin raises it; 0 lifts it.
    c.set("max_group_members", "7").await;
    let (status, body) = owner.post(&add, json!({"member_ids": ids(2)})).await;
    assert_eq!(status, 200, "{body}");
    c.set("max_group_members", "0").await;
    let (status, body) = owner.post(&add, json!({"member_ids": ids(3)})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(member_count(&owner, group).await, 10);
    c.stop().await;
}
