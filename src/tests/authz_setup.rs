//! The authorization matrices' shared setup: the callers ([`Who`]), the fixture they act
//! on (a group, a private conversation with a block, messages and a notification on one
//! node) and the result table printer ([`Matrix`]), used by `authz` and `authz_ws`.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio_postgres::types::{FromSql, ToSql};
use uuid::Uuid;

use super::client;
use super::realtime::{Cluster, send_text, uuid_of};

/// Who calls. Plain users (owner to blocked) are the non-admins of the admin routes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Who {
    /// Owner of the group.
    Owner,
    /// An admin of the group.
    Admin,
    /// A plain member of the group.
    Member,
    /// Was a member of the group and left it.
    Former,
    /// Never a member of anything here (and no admin).
    Outsider,
    /// Blocked by the partner of their private conversation.
    Blocked,
    /// A token with the `role: "admin"` claim.
    Claim,
    /// A user listed in `ADMIN_USER_IDS`, with a plain token.
    Listed,
    /// No token at all.
    Anonymous,
}

use Who::*;

/// The matrix's columns, in order.
pub const EVERYONE: [Who; 9] = [
    Owner, Admin, Member, Former, Outsider, Blocked, Claim, Listed, Anonymous,
];

impl Who {
    pub fn label(self) -> &'static str {
        match self {
            Owner => "owner",
            Admin => "group admin",
            Member => "member",
            Former => "former member",
            Outsider => "outsider",
            Blocked => "blocked",
            Claim => "admin claim",
            Listed => "ADMIN_USER_IDS",
            Anonymous => "no token",
        }
    }

    /// An active member of the group.
    pub fn in_group(self) -> bool {
        matches!(self, Owner | Admin | Member)
    }
}

/// One group (owner, admin, member, a member who left) and one private conversation whose
/// partner has blocked the other side, with messages and a notification, on one node.
pub struct Fixture {
    pub c: Cluster,
    pub db: tokio_postgres::Client,
    users: HashMap<Who, Uuid>,
    /// The blocked user's private partner, who blocked them (not a column).
    pub partner: Uuid,
    pub group: Uuid,
    pub private: Uuid,
    /// The owner's message in the group ("authzword").
    pub group_msg: Uuid,
    /// The former member's message in the group, sent before leaving ("authzword").
    pub former_msg: Uuid,
    /// The blocked user's message in the private conversation, sent before the block.
    pub blocked_msg: Uuid,
    /// The partner's reply in the private conversation ("authzword").
    pub partner_msg: Uuid,
    /// A notification of the member.
    pub member_note: Uuid,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let users: HashMap<Who, Uuid> = EVERYONE
            .iter()
            .filter(|w| **w != Anonymous)
            .map(|w| (*w, Uuid::new_v4()))
            .collect();
        let listed = users[&Listed].to_string();
        let c = Cluster::start(1, &[("ADMIN_USER_IDS", listed.as_str())]).await;
        for (key, value) in [
            ("recall_window_seconds", "3600"),
            ("edit_window_seconds", "3600"),
            ("max_messages_per_second", "0"),
            ("enable_typing_indicator", "true"),
        ] {
            c.set(key, value).await;
        }
        let db = c.env.db().await;
        let nil = Uuid::nil();
        let mut fx = Fixture {
            c,
            db,
            users,
            partner: Uuid::new_v4(),
            group: nil,
            private: nil,
            group_msg: nil,
            former_msg: nil,
            blocked_msg: nil,
            partner_msg: nil,
            member_note: nil,
        };
        let (admin, member, former) = (fx.user(Admin), fx.user(Member), fx.user(Former));
        let body = json!({"group_name": "authz", "member_ids": [admin, member, former]});
        let made = fx
            .call(Owner, "POST", "/api/v1/conversations/group", Some(&body))
            .await;
        assert_eq!(made.0, 200, "{}", made.1);
        fx.group = uuid_of(&made.1["data"]["id"]);
        fx.set_role(admin, "admin").await;
        let text = "authzword from the one who left";
        fx.former_msg = uuid_of(&fx.say(former, Some(fx.group), None, text).await["id"]);
        let path = format!("/api/v1/conversations/{}/leave", fx.group);
        let left = fx.call(Former, "POST", &path, None).await;
        assert_eq!(left.0, 200, "{}", left.1);
        let text = "authzword in the group";
        fx.group_msg = uuid_of(&fx.say(fx.user(Owner), Some(fx.group), None, text).await["id"]);
        let blocked = fx.user(Blocked);
        let first = fx
            .say(
                blocked,
                None,
                Some(fx.partner),
                "authzword from the blocked",
            )
            .await;
        fx.private = uuid_of(&first["conversation_id"]);
        fx.blocked_msg = uuid_of(&first["id"]);
        let text = "authzword from the blocker";
        fx.partner_msg = uuid_of(&fx.say(fx.partner, Some(fx.private), None, text).await["id"]);
        let token = fx.c.env.token(fx.partner, false);
        let body = json!({ "target_user_id": blocked });
        let block = fx
            .request(
                Some(&token),
                "POST",
                "/api/v1/relationships/block",
                Some(&body),
            )
            .await;
        assert_eq!(block.0, 200, "{}", block.1);
        fx.member_note = fx.note(member).await;
        fx
    }

    /// The user id of `who` (none for [`Who::Anonymous`]).
    pub fn uid(&self, who: Who) -> Option<Uuid> {
        self.users.get(&who).copied()
    }

    pub fn user(&self, who: Who) -> Uuid {
        self.uid(who).expect("a principal with a user id")
    }

    /// A name for a user id in reports.
    pub fn name(&self, user: Uuid) -> String {
        if user == self.partner {
            return "partner".into();
        }
        EVERYONE
            .iter()
            .find(|w| self.uid(**w) == Some(user))
            .map_or_else(|| user.to_string(), |w| w.label().to_string())
    }

    /// The token of `who`: the admin claim only for [`Who::Claim`].
    pub fn token(&self, who: Who) -> Option<String> {
        self.uid(who).map(|u| self.c.env.token(u, who == Claim))
    }

    /// The conversation a principal acts on: the private one for the blocked user, the
    /// group for everyone else.
    pub fn target(&self, who: Who) -> Uuid {
        if who == Blocked {
            self.private
        } else {
            self.group
        }
    }

    /// The active members of `conversation` among the fixture's users.
    pub fn members(&self, conversation: Uuid) -> Vec<Uuid> {
        if conversation == self.private {
            vec![self.user(Blocked), self.partner]
        } else {
            [Owner, Admin, Member].map(|w| self.user(w)).to_vec()
        }
    }

    pub async fn request(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let url = format!("{}{path}", self.c.nodes[0].url());
        let body = body.map(|b| b.to_string().into_bytes());
        let a = client::send(method, &url, &headers, body)
            .await
            .expect("HTTP call");
        (a.status, a.json())
    }

    /// One HTTP call as `who`.
    pub async fn call(
        &self,
        who: Who,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.request(self.token(who).as_deref(), method, path, body)
            .await
    }

    /// Sends a text from a connection of its own and returns the echo.
    pub async fn say(
        &self,
        user: Uuid,
        conv: Option<Uuid>,
        receiver: Option<Uuid>,
        text: &str,
    ) -> Value {
        let mut ws = self.c.connect(0, user).await;
        let echo = send_text(&mut ws, conv, receiver, text).await;
        ws.close().await;
        echo
    }

    /// The owner gives `user` a role in the group.
    pub async fn set_role(&self, user: Uuid, role: &str) {
        let path = format!("/api/v1/conversations/{}/members/{user}/role", self.group);
        let a = self
            .call(Owner, "POST", &path, Some(&json!({ "role": role })))
            .await;
        assert_eq!(a.0, 200, "{}", a.1);
    }

    /// The owner adds `user` to the group (back, if they left) with `role`.
    pub async fn join(&self, user: Uuid, role: &str) {
        let path = format!("/api/v1/conversations/{}/members", self.group);
        let body = json!({ "member_ids": [user] });
        let a = self.call(Owner, "POST", &path, Some(&body)).await;
        assert_eq!(a.0, 200, "{}", a.1);
        if role != "member" {
            self.set_role(user, role).await;
        }
    }

    /// A new user in the group with `role`.
    pub async fn join_new(&self, role: &str) -> Uuid {
        let user = Uuid::new_v4();
        self.join(user, role).await;
        user
    }

    /// Inserts an unread notification of `user`.
    pub async fn note(&self, user: Uuid) -> Uuid {
        self.db
            .query_one(
                "INSERT INTO notifications (user_id, notification_type, title)
                 VALUES ($1, 'system', 'authz') RETURNING id",
                &[&user],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The first column of the first row of `sql`, if any.
    pub async fn value<T: for<'a> FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Option<T> {
        self.db
            .query_opt(sql, params)
            .await
            .unwrap()
            .map(|r| r.get(0))
    }

    /// Is `message` recalled?
    pub async fn recalled(&self, message: Uuid) -> bool {
        let sql = "SELECT is_recalled FROM messages WHERE id = $1";
        self.value(sql, &[&message]).await.unwrap_or(false)
    }

    /// Takes back a recall of `message` (a recall cell may have recalled a fixture's
    /// message that an edit cell then edits).
    pub async fn unrecall(&self, message: Uuid) {
        let sql = "UPDATE messages SET is_recalled = FALSE, recalled_at = NULL WHERE id = $1";
        self.db.execute(sql, &[&message]).await.unwrap();
    }

    /// Is the text of `message` now `text`, edited?
    pub async fn edited_to(&self, message: Uuid, text: &str) -> bool {
        let sql = "SELECT content = $2 AND edited_at IS NOT NULL FROM messages WHERE id = $1";
        self.value(sql, &[&message, &text]).await == Some(true)
    }

    /// Has `user` blocked `target`?
    pub async fn blocks(&self, user: Uuid, target: Uuid) -> bool {
        let sql = "SELECT count(*) > 0 FROM user_relationships
                   WHERE user_id = $1 AND target_user_id = $2 AND relationship_type = 'blocked'";
        self.value(sql, &[&user, &target]).await.unwrap_or(false)
    }
}

/// A result table printed to stdout, one row per route (or frame) and one column per
/// principal; a cell not as expected is marked ✗ and listed after the table.
pub struct Matrix {
    title: &'static str,
    legend: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
    failures: Vec<String>,
}

impl Matrix {
    pub fn new(title: &'static str, legend: Vec<String>) -> Matrix {
        Matrix {
            title,
            legend,
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A failure outside the cells (a route without a row, a row without a route).
    pub fn problem(&mut self, what: String) {
        self.failures.push(what);
    }

    /// One cell: what happened and what was wrong with it (nothing when as expected).
    pub fn cell(&mut self, row: &str, who: Who, got: String, problems: Vec<String>) -> String {
        if problems.is_empty() {
            return got;
        }
        let why = problems.join("; ");
        self.failures
            .push(format!("{row} | {}: got {got}: {why}", who.label()));
        format!("✗ {got}")
    }

    pub fn row(&mut self, name: String, cells: Vec<String>) {
        self.rows.push((name, cells));
    }

    /// Prints the table, then fails if any cell was not as expected.
    pub fn finish(self) {
        let mut widths = vec![0usize; EVERYONE.len() + 1];
        let header: Vec<&str> = std::iter::once("")
            .chain(EVERYONE.iter().map(|w| w.label()))
            .collect();
        for (i, h) in header.iter().enumerate() {
            widths[i] = h.chars().count();
        }
        for (name, cells) in &self.rows {
            widths[0] = widths[0].max(name.chars().count());
            for (i, c) in cells.iter().enumerate() {
                widths[i + 1] = widths[i + 1].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        println!("\n== {} ==", self.title);
        for l in &self.legend {
            println!("{l}");
        }
        println!("{}", line(header.clone()));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for (name, cells) in &self.rows {
            let row: Vec<&str> = std::iter::once(name.as_str())
                .chain(cells.iter().map(String::as_str))
                .collect();
            println!("{}", line(row));
        }
        for f in &self.failures {
            println!("✗ {f}");
        }
        assert!(
            self.failures.is_empty(),
            "{} cells not as expected (matrix above):\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}
