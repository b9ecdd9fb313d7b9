//! The route table: every HTTP route once, with its method, path template and access rule.
//!
//! User routes are served under `/api/v1` and `/api`, admin routes under `/api/admin` and
//! `/api/v1/admin` (DECISIONS.md "prefixes"); the table holds the canonical form. Path
//! parameters are `:name` segments.

use hyper::Method;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token.
    Public,
    /// A valid user token (`Authorization: Bearer`).
    User,
    /// A valid token of an admin.
    Admin,
}

/// Which prefixes a route is served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Exactly the path given.
    Root,
    /// `/api/v1{path}` and `/api{path}`.
    User,
    /// `/api/admin{path}` and `/api/v1/admin{path}`.
    Admin,
}

/// Names every route so handlers can be dispatched with a `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum RouteId {
    Health,
    Ready,
    Metrics,
    WebSocket,
    OpenApi,
    WsToken,
    Logout,
    ConversationsList,
    ConversationsSearch,
    ConversationPrivate,
    ConversationGroup,
    ConversationMessages,
    ConversationHide,
    ConversationPin,
    ConversationUnpin,
    ConversationMute,
    ConversationUnmute,
    MessageReaders,
    ConversationExport,
    MembersAdd,
    MembersRemove,
    ConversationLeave,
    MemberRole,
    MessageRecall,
    MessageEdit,
    MessagesForward,
    MessagesSearch,
    NotificationsList,
    NotificationsReadAll,
    NotificationGet,
    NotificationRead,
    NotificationDelete,
    Block,
    Unblock,
    BlockedList,
    AdminSettingsList,
    AdminSettingsReload,
    AdminSettingsUpdate,
    AdminTemplatesList,
    AdminTemplateCreate,
    AdminTemplatesInitDefaults,
    AdminTemplateUpdate,
    AdminTemplateDelete,
    AdminBatchSend,
    AdminNodes,
    DevPage,
    DevScript,
    DevStyle,
    DevToken,
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Where it is mounted.
    pub scope: Scope,
    /// Path below the scope's prefix, with `:param` segments.
    pub path: &'static str,
    /// Handler name.
    pub id: RouteId,
    /// Access rule.
    pub access: Access,
}

impl Route {
    /// The canonical full path template (`/api/v1/...`, `/api/admin/...`).
    pub fn template(&self) -> String {
        match self.scope {
            Scope::Root => self.path.to_string(),
            Scope::User => format!("/api/v1{}", self.path),
            Scope::Admin => format!("/api/admin{}", self.path),
        }
    }
}

const fn route(
    method: Method,
    scope: Scope,
    path: &'static str,
    id: RouteId,
    access: Access,
) -> Route {
    Route {
        method,
        scope,
        path,
        id,
        access,
    }
}

/// Every route of the node. Where two templates could match one path, the first wins, so
/// static segments come before `:param` ones.
#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    route(Method::GET, Scope::Root, "/health", RouteId::Health, Access::Public),
    route(Method::GET, Scope::Root, "/ready", RouteId::Ready, Access::Public),
    route(Method::GET, Scope::Root, "/metrics", RouteId::Metrics, Access::Public),
    route(Method::GET, Scope::Root, "/ws", RouteId::WebSocket, Access::Public),
    route(Method::GET, Scope::User, "/openapi.json", RouteId::OpenApi, Access::Public),
    route(Method::POST, Scope::User, "/ws-token", RouteId::WsToken, Access::User),
    route(Method::POST, Scope::User, "/logout", RouteId::Logout, Access::User),
    route(Method::GET, Scope::User, "/conversations", RouteId::ConversationsList, Access::User),
    route(Method::GET, Scope::User, "/conversations/search", RouteId::ConversationsSearch, Access::User),
    route(Method::POST, Scope::User, "/conversations/private", RouteId::ConversationPrivate, Access::User),
    route(Method::POST, Scope::User, "/conversations/group", RouteId::ConversationGroup, Access::User),
    route(Method::GET, Scope::User, "/conversations/:id/messages", RouteId::ConversationMessages, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/hide", RouteId::ConversationHide, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/pin", RouteId::ConversationPin, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/unpin", RouteId::ConversationUnpin, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/mute", RouteId::ConversationMute, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/unmute", RouteId::ConversationUnmute, Access::User),
    route(Method::GET, Scope::User, "/conversations/:id/messages/:message_id/readers", RouteId::MessageReaders, Access::User),
    route(Method::GET, Scope::User, "/conversations/:id/export", RouteId::ConversationExport, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/members", RouteId::MembersAdd, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/members/remove", RouteId::MembersRemove, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/leave", RouteId::ConversationLeave, Access::User),
    route(Method::POST, Scope::User, "/conversations/:id/members/:user_id/role", RouteId::MemberRole, Access::User),
    route(Method::POST, Scope::User, "/messages/:id/recall", RouteId::MessageRecall, Access::User),
    route(Method::POST, Scope::User, "/messages/:id/edit", RouteId::MessageEdit, Access::User),
    route(Method::POST, Scope::User, "/messages/forward", RouteId::MessagesForward, Access::User),
    route(Method::GET, Scope::User, "/messages/search", RouteId::MessagesSearch, Access::User),
    route(Method::GET, Scope::User, "/notifications", RouteId::NotificationsList, Access::User),
    route(Method::POST, Scope::User, "/notifications/read-all", RouteId::NotificationsReadAll, Access::User),
    route(Method::GET, Scope::User, "/notifications/:id", RouteId::NotificationGet, Access::User),
    route(Method::POST, Scope::User, "/notifications/:id/read", RouteId::NotificationRead, Access::User),
    route(Method::POST, Scope::User, "/notifications/:id/delete", RouteId::NotificationDelete, Access::User),
    route(Method::POST, Scope::User, "/relationships/block", RouteId::Block, Access::User),
    route(Method::POST, Scope::User, "/relationships/unblock", RouteId::Unblock, Access::User),
    route(Method::GET, Scope::User, "/relationships/blocked", RouteId::BlockedList, Access::User),
    route(Method::GET, Scope::Admin, "/settings", RouteId::AdminSettingsList, Access::Admin),
    // The static segment comes first so it shadows a setting named "reload", as in the original.
    route(Method::POST, Scope::Admin, "/settings/reload", RouteId::AdminSettingsReload, Access::Admin),
    route(Method::POST, Scope::Admin, "/settings/:key", RouteId::AdminSettingsUpdate, Access::Admin),
    route(Method::GET, Scope::Admin, "/notification-templates", RouteId::AdminTemplatesList, Access::Admin),
    route(Method::POST, Scope::Admin, "/notification-templates", RouteId::AdminTemplateCreate, Access::Admin),
    route(Method::POST, Scope::Admin, "/notification-templates/init-defaults", RouteId::AdminTemplatesInitDefaults, Access::Admin),
    route(Method::POST, Scope::Admin, "/notification-templates/:id", RouteId::AdminTemplateUpdate, Access::Admin),
    route(Method::DELETE, Scope::Admin, "/notification-templates/:id", RouteId::AdminTemplateDelete, Access::Admin),
    route(Method::POST, Scope::Admin, "/notifications/batch-send", RouteId::AdminBatchSend, Access::Admin),
    route(Method::GET, Scope::Admin, "/nodes", RouteId::AdminNodes, Access::Admin),
    // The web client and its token route; with DEV_UI off they answer like unknown routes.
    route(Method::GET, Scope::Root, "/", RouteId::DevPage, Access::Public),
    route(Method::GET, Scope::Root, "/ui/app.js", RouteId::DevScript, Access::Public),
    route(Method::GET, Scope::Root, "/ui/style.css", RouteId::DevStyle, Access::Public),
    route(Method::POST, Scope::Root, "/api/dev/token", RouteId::DevToken, Access::Public),
];

/// Path parameters of a matched route, in template order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(&'static str, String)>,
}

impl Params {
    /// The raw value of `:name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Result of looking a request up in the table.
#[derive(Debug)]
pub enum Match {
    /// A route and its parameters.
    Found(&'static Route, Params),
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// No such path.
    NotFound,
}

impl RouteId {
    /// Whether the route belongs to the web client, mounted only with `DEV_UI=1`.
    pub fn is_dev(self) -> bool {
        matches!(
            self,
            RouteId::DevPage | RouteId::DevScript | RouteId::DevStyle | RouteId::DevToken
        )
    }
}

/// Finds the route for `method` and `path` (a single trailing slash is ignored).
pub fn resolve(method: &Method, path: &str) -> Match {
    resolve_with(method, path, true)
}

/// [`resolve`], with the web client's routes left out unless `dev_ui`: without it they
/// answer exactly like paths that do not exist, whatever the method.
pub fn resolve_with(method: &Method, path: &str, dev_ui: bool) -> Match {
    let path = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let mut path_exists = false;
    for r in ROUTES.iter().filter(|r| dev_ui || !r.id.is_dev()) {
        let prefixes: &[&str] = match r.scope {
            Scope::Root => &[""],
            Scope::User => &["/api/v1", "/api"],
            Scope::Admin => &["/api/admin", "/api/v1/admin"],
        };
        for prefix in prefixes {
            let Some(rest) = path.strip_prefix(prefix) else {
                continue;
            };
            if let Some(params) = match_template(r.path, rest) {
                if r.method == *method {
                    return Match::Found(r, params);
                }
                path_exists = true;
            }
        }
    }
    if path_exists {
        Match::MethodNotAllowed
    } else {
        Match::NotFound
    }
}

fn match_template(template: &'static str, path: &str) -> Option<Params> {
    let mut params = Params::default();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix(':') {
                    if ps.is_empty() {
                        return None;
                    }
                    params.pairs.push((name, ps.to_string()));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_aliases() {
        for path in ["/api/v1/ws-token", "/api/ws-token", "/api/v1/ws-token/"] {
            assert!(
                matches!(resolve(&Method::POST, path), Match::Found(r, _) if r.id == RouteId::WsToken),
                "{path}"
            );
        }
        for path in ["/api/admin/settings", "/api/v1/admin/settings"] {
            assert!(
                matches!(resolve(&Method::GET, path), Match::Found(r, _) if r.id == RouteId::AdminSettingsList),
                "{path}"
            );
        }
        assert!(matches!(
            resolve(&Method::GET, "/api/v1/ws-token"),
            Match::MethodNotAllowed
        ));
        assert!(matches!(resolve(&Method::GET, "/nope"), Match::NotFound));
        assert!(matches!(
            resolve(&Method::GET, "/api/v2/settings"),
            Match::NotFound
        ));
    }

    #[test]
    fn dev_routes_resolve_and_shadow_nothing() {
        for (method, path, id) in [
            (Method::GET, "/", RouteId::DevPage),
            (Method::GET, "/ui/app.js", RouteId::DevScript),
            (Method::GET, "/ui/style.css", RouteId::DevStyle),
            (Method::POST, "/api/dev/token", RouteId::DevToken),
        ] {
            assert!(
                matches!(resolve(&method, path), Match::Found(r, _) if r.id == id),
                "{path}"
            );
        }
        assert!(matches!(
            resolve(&Method::GET, "/ui/other.js"),
            Match::NotFound
        ));
        // Without DEV_UI every method on these paths is an unknown route, not a 405.
        for (method, path) in [
            (Method::GET, "/"),
            (Method::POST, "/"),
            (Method::GET, "/api/dev/token"),
            (Method::POST, "/api/dev/token"),
            (Method::DELETE, "/ui/app.js"),
        ] {
            assert!(
                matches!(resolve_with(&method, path, false), Match::NotFound),
                "{method} {path}"
            );
        }
        assert!(matches!(
            resolve_with(&Method::GET, "/health", false),
            Match::Found(r, _) if r.id == RouteId::Health
        ));
        assert!(matches!(
            resolve(&Method::GET, "/health"),
            Match::Found(r, _) if r.id == RouteId::Health
        ));
    }

    #[test]
    fn templates_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method.clone(), r.template())),
                "duplicate {}",
                r.template()
            );
        }
    }
}
