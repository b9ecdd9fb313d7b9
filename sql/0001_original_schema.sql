-- 0001: the original dinq_message schema (PROTOCOL.md §6.1), created only where absent.
-- A database of the original service already has all of this; a fresh one gets it here.
-- Later migrations change it into what dinq-message needs.

CREATE TABLE IF NOT EXISTS conversations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_type VARCHAR(20) NOT NULL,
    group_name VARCHAR(100),
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW(),
    last_message_at TIMESTAMP,
    last_message_id UUID
);
CREATE INDEX IF NOT EXISTS idx_conv_type ON conversations(conversation_type);
CREATE INDEX IF NOT EXISTS idx_conv_last_message_at ON conversations(last_message_at DESC NULLS LAST);

CREATE TABLE IF NOT EXISTS messages (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    sender_id UUID NOT NULL,
    message_type VARCHAR(20) NOT NULL,
    content TEXT,
    metadata JSONB,
    status VARCHAR(20) DEFAULT 'sent',
    reply_to_message_id UUID,
    is_recalled BOOLEAN DEFAULT FALSE,
    recalled_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_msg_conversation ON messages(conversation_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_msg_sender ON messages(sender_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_msg_created ON messages(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_msg_conversation_covering ON messages(conversation_id, created_at DESC)
    INCLUDE (sender_id, message_type, status, is_recalled);
CREATE INDEX IF NOT EXISTS idx_msg_recall_check ON messages(id, sender_id) INCLUDE (created_at, is_recalled);
CREATE INDEX IF NOT EXISTS idx_msg_search ON messages USING GIN (to_tsvector('simple', content))
    WHERE message_type = 'text' AND is_recalled = FALSE;

CREATE TABLE IF NOT EXISTS conversation_members (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    user_id UUID NOT NULL,
    role VARCHAR(20) DEFAULT 'member',
    is_muted BOOLEAN DEFAULT FALSE,
    is_hidden BOOLEAN DEFAULT FALSE,
    joined_at TIMESTAMP DEFAULT NOW(),
    left_at TIMESTAMP,
    unread_count INT DEFAULT 0,
    last_read_message_id UUID,
    last_read_at TIMESTAMP,
    UNIQUE (conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS idx_member_user ON conversation_members(user_id);
CREATE INDEX IF NOT EXISTS idx_member_conv ON conversation_members(conversation_id);
CREATE INDEX IF NOT EXISTS idx_member_conv_user_active ON conversation_members(conversation_id, user_id)
    WHERE left_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_member_user_active ON conversation_members(user_id, conversation_id)
    WHERE left_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_member_user_not_hidden ON conversation_members(user_id, conversation_id)
    WHERE left_at IS NULL AND is_hidden = FALSE;

CREATE TABLE IF NOT EXISTS user_relationships (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    target_user_id UUID NOT NULL,
    relationship_type VARCHAR(20) NOT NULL,
    created_at TIMESTAMP DEFAULT NOW(),
    UNIQUE (user_id, target_user_id, relationship_type)
);
CREATE INDEX IF NOT EXISTS idx_relationship_user ON user_relationships(user_id, relationship_type);
CREATE INDEX IF NOT EXISTS idx_relationship_target ON user_relationships(target_user_id, user_id, relationship_type);

CREATE TABLE IF NOT EXISTS system_settings (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    setting_key VARCHAR(100) NOT NULL UNIQUE,
    setting_value TEXT NOT NULL,
    description TEXT,
    updated_at TIMESTAMP DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_system_settings_key ON system_settings(setting_key);

CREATE TABLE IF NOT EXISTS notification_templates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    type VARCHAR(50) NOT NULL UNIQUE,
    title VARCHAR(200) NOT NULL,
    content_template TEXT,
    priority INTEGER DEFAULT 0,
    enable_push BOOLEAN DEFAULT TRUE,
    enable_websocket BOOLEAN DEFAULT TRUE,
    is_active BOOLEAN DEFAULT TRUE,
    description TEXT,
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_notification_templates_type ON notification_templates(type);
CREATE INDEX IF NOT EXISTS idx_notification_templates_is_active ON notification_templates(is_active);

CREATE TABLE IF NOT EXISTS notifications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    notification_type VARCHAR(50) NOT NULL,
    title VARCHAR(200) NOT NULL,
    content TEXT,
    metadata JSONB,
    is_read BOOLEAN DEFAULT FALSE,
    read_at TIMESTAMP,
    priority INT DEFAULT 0,
    created_at TIMESTAMP DEFAULT NOW(),
    expires_at TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_notif_user ON notifications(user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_notif_unread ON notifications(user_id, is_read) WHERE is_read = FALSE;
CREATE INDEX IF NOT EXISTS idx_notif_expires ON notifications(expires_at) WHERE expires_at IS NOT NULL;
