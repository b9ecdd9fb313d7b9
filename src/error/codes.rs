//! Every stable error code, in one place. A code is the `error` field of an HTTP error
//! envelope, the `code` of a WebSocket `error` frame and a label of the rejected-message
//! metric; the OpenAPI document lists them all ([`Code::ALL`]). Each wire string is written
//! once, here, and never changes: clients match on it.

/// Declares [`Code`]: each variant with its wire string.
macro_rules! codes {
    ($($name:ident = $wire:literal,)*) => {
        /// A stable snake_case error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = concat!("`", $wire, "`")] $name,)*
        }

        impl Code {
            /// Every code, in the order listed here.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => $wire,)*
                }
            }
        }
    };
}

codes! {
    // Authentication and access.
    MissingAuthorization = "missing_authorization",
    InvalidAuthorization = "invalid_authorization",
    InvalidToken = "invalid_token",
    MissingToken = "missing_token",
    AdminRequired = "admin_required",
    OriginNotAllowed = "origin_not_allowed",
    // HTTP requests: routes, bodies, parameters, probes.
    RouteNotFound = "route_not_found",
    MethodNotAllowed = "method_not_allowed",
    BodyTooLarge = "body_too_large",
    InvalidBody = "invalid_body",
    InvalidId = "invalid_id",
    InvalidLimit = "invalid_limit",
    InvalidOffset = "invalid_offset",
    InvalidSeq = "invalid_seq",
    MissingQuery = "missing_query",
    InvalidConversationId = "invalid_conversation_id",
    InvalidUserId = "invalid_user_id",
    InvalidRole = "invalid_role",
    NotReady = "not_ready",
    // WebSocket connections and client frames.
    NotWebsocket = "not_websocket",
    Draining = "draining",
    TooManyConnections = "too_many_connections",
    TooManyDevices = "too_many_devices",
    RateLimited = "rate_limited",
    TooManyFrames = "too_many_frames",
    Overloaded = "overloaded",
    InvalidJson = "invalid_json",
    UnknownType = "unknown_type",
    InvalidMessageFormat = "invalid_message_format",
    InvalidTypingFormat = "invalid_typing_format",
    InvalidReadFormat = "invalid_read_format",
    InvalidRecallFormat = "invalid_recall_format",
    InvalidEditFormat = "invalid_edit_format",
    InvalidSetCurrentConversationFormat = "invalid_set_current_conversation_format",
    InvalidAckFormat = "invalid_ack_format",
    // Messages: sending, reading, recalling, editing.
    ConversationRequired = "conversation_required",
    SelfMessage = "self_message",
    InvalidMessageType = "invalid_message_type",
    InvalidContent = "invalid_content",
    ContentRequired = "content_required",
    ContentTooLong = "content_too_long",
    InvalidMetadata = "invalid_metadata",
    MetadataUrlRequired = "metadata_url_required",
    VideoTooLarge = "video_too_large",
    InvalidClientMsgId = "invalid_client_msg_id",
    InvalidReply = "invalid_reply",
    Blocked = "blocked",
    FirstMessageLimit = "first_message_limit",
    MessageNotFound = "message_not_found",
    NotSender = "not_sender",
    AlreadyRecalled = "already_recalled",
    RecallWindowPassed = "recall_window_passed",
    NotTextMessage = "not_text_message",
    MessageRecalled = "message_recalled",
    EditWindowPassed = "edit_window_passed",
    ReadReceiptsDisabled = "read_receipts_disabled",
    // Forwarding.
    InvalidMessageId = "invalid_message_id",
    MessageIdsRequired = "message_ids_required",
    ConversationIdsRequired = "conversation_ids_required",
    TooManyMessages = "too_many_messages",
    TooManyConversations = "too_many_conversations",
    DuplicateMessageId = "duplicate_message_id",
    DuplicateConversationId = "duplicate_conversation_id",
    // Conversations, groups and members.
    NotMember = "not_member",
    InvalidReceiver = "invalid_receiver",
    SelfConversation = "self_conversation",
    ConversationNotFound = "conversation_not_found",
    InvalidGroupName = "invalid_group_name",
    GroupTooLarge = "group_too_large",
    InvalidMemberId = "invalid_member_id",
    NotGroup = "not_group",
    NotOwner = "not_owner",
    NotOwnerOrAdmin = "not_owner_or_admin",
    TargetNotMember = "target_not_member",
    MemberNotFound = "member_not_found",
    CannotRemoveOwner = "cannot_remove_owner",
    CannotRemoveAdmin = "cannot_remove_admin",
    OwnerCannotLeave = "owner_cannot_leave",
    OwnerCannotDemoteSelf = "owner_cannot_demote_self",
    // Blocking.
    CannotBlockSelf = "cannot_block_self",
    AlreadyBlocked = "already_blocked",
    NotBlocked = "not_blocked",
    // Notifications and their templates.
    NotificationNotFound = "notification_not_found",
    TooManyUsers = "too_many_users",
    UserListRequired = "user_list_required",
    TitleTooLong = "title_too_long",
    TemplateNotFound = "template_not_found",
    DuplicateTemplateType = "duplicate_template_type",
    InvalidField = "invalid_field",
    UnknownField = "unknown_field",
    MissingField = "missing_field",
    NoFields = "no_fields",
    // Settings.
    SettingNotFound = "setting_not_found",
    InvalidSettingValue = "invalid_setting_value",
    // Our side: PostgreSQL or Redis unavailable, anything else.
    Unavailable = "unavailable",
    InternalError = "internal_error",
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is listed twice");
            assert!(
                !s.is_empty()
                    && s.split('_')
                        .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
                "{s} is not snake_case"
            );
        }
    }
}
