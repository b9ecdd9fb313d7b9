// The dinq-message web client, served by a node started with DEV_UI=1: sign in with a dev
// token, list conversations, chat over the WebSocket (README "WebSocket protocol") and, with
// an admin token, see the settings and the node list. Plain JavaScript, no build step; text
// from the server is only ever set with textContent.

const $ = (id) => document.getElementById(id);
const SESSION_KEY = 'dinq.session'; // this tab's user (sessionStorage: one user per tab)
const LAST_USER_KEY = 'dinq.last-user'; // prefills the sign-in form of new tabs
const EMOJI = ['😀', '😂', '😍', '👍', '🎉', '🙏', '😢', '🔥', '❤️', '👋'];
const TYPING_SEND_MS = 2000; // at most one `typing` frame per this while typing
const TYPING_SHOW_MS = 4000; // "… is typing" stays this long after the last event
const HEARTBEAT_MS = 25000;

const state = {
  me: null, token: null, admin: false,
  ws: null, wsWanted: false, wasConnected: false, retryMs: 1000, heartbeat: null,
  conversations: new Map(), // id → item of GET /api/v1/conversations
  online: new Map(), // user id → bool
  readSeq: new Map(), // conversation id → newest seq another member has read
  current: null, // the open conversation
  messages: [], // its messages, by seq
  replyTo: null, // the message being answered
  lastTypingSent: 0, lastReadSent: null, offlineCount: 0,
  timers: {},
};

// ---- helpers ----------------------------------------------------------------------------
const short = (id) => (id ? String(id).slice(0, 8) : '');
const safeImage = (url) => typeof url === 'string' && /^(https?:|data:image\/)/i.test(url);
const time = (t) => (t ? Date.parse(t) || 0 : 0);
const value = (id) => $(id).value.trim();

/** A DOM element; string children become text nodes. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, v] of Object.entries(props)) {
    if (key === 'testid') node.dataset.testid = v;
    else if (key === 'data') Object.assign(node.dataset, v);
    else if (key === 'class') node.className = v;
    else if (key === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node[key] = v;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const linkButton = (testid, text, click) =>
  el('button', { type: 'button', class: 'link', testid, textContent: text, on: { click } });

/** Listens for `event` on element `id`; a form's submit does not reload the page. */
function on(id, event, fn) {
  $(id).addEventListener(event, (e) => {
    if (event === 'submit') e.preventDefault();
    fn(e);
  });
}

function uuid4() { // crypto.randomUUID needs https; this works on plain http too
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Calls the HTTP API and unwraps the envelope; throws with the server's message. */
async function api(method, path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  const res = await fetch(path, init);
  const env = await res.json().catch(() => null);
  if (!res.ok || !env || env.code !== 0) throw new Error(env?.message || `HTTP ${res.status}`);
  return env.data ?? {};
}

function later(name, ms, fn) {
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(fn, ms);
}

/** Shows `text` in element `id`; with `ms`, only for that long (`flash`). */
function say(id, text, ms) {
  $(id).textContent = text;
  $(id).hidden = false;
  if (ms) later(id, ms, () => { $(id).hidden = true; });
}

const flash = (id, text) => say(id, text, 6000);

/** `fn`, with a failure shown in element `id` as "`what`: <the server's message>". */
const guarded = (id, what, fn) => async (...args) => {
  try {
    return await fn(...args);
  } catch (e) {
    return say(id, `${what}: ${e.message}`, id === 'notice' ? 0 : 6000);
  }
};

function preview(m) {
  if (m.is_recalled) return 'message recalled';
  if (m.message_type === 'image' || m.message_type === 'video') return `[${m.message_type}]`;
  return (m.content ?? '').slice(0, 50);
}

// ---- session ----------------------------------------------------------------------------
async function signIn(userId, admin) {
  $('login-error').textContent = '';
  try {
    const data = await api('POST', '/api/dev/token', { user_id: userId || null, admin });
    Object.assign(state, { me: data.user_id, token: data.token, admin });
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({ user_id: data.user_id, admin }));
    localStorage.setItem(LAST_USER_KEY, data.user_id);
  } catch (e) {
    $('login-error').textContent = `Sign-in failed: ${e.message}`;
    return;
  }
  const shown = { login: false, app: true, logout: true, 'me-admin': admin, admin };
  for (const [id, show] of Object.entries(shown)) $(id).hidden = !show;
  $('me-id').textContent = state.me;
  $('me-id').title = 'your user id: give it to whoever should chat with you';
  await loadConversations();
  connect();
  if (admin) {
    loadAdmin();
    setInterval(loadNodes, 5000);
  }
}

// ---- conversations ----------------------------------------------------------------------
const loadConversations = guarded('notice', 'Could not load conversations', async () => {
  const data = await api('GET', '/api/v1/conversations?limit=100');
  state.conversations = new Map(data.conversations.map((c) => [c.id, c]));
  for (const c of data.conversations) learnOnline(c.online_status);
  renderAll();
});

const reloadSoon = () => later('reload', 300, loadConversations);

function learnOnline(map) {
  for (const [user, online] of Object.entries(map || {})) state.online.set(user, online);
}

/** The other member of a private conversation. */
function peerOf(c) {
  if (!c || c.conversation_type !== 'private') return null;
  const other = c.members?.find((m) => m.user_id !== state.me);
  return other?.user_id || Object.keys(c.online_status || {})[0] || null;
}

const titleOf = (c) => (c.conversation_type === 'group' ? c.group_name : `Chat with ${short(peerOf(c))}`);

function renderConversations() {
  const newest = (c) => time(c.last_message_time || c.created_at);
  // Pinned first, newest activity first within each part (as GET /conversations orders).
  const sorted = [...state.conversations.values()]
    .sort((a, b) => Number(Boolean(b.is_pinned)) - Number(Boolean(a.is_pinned)) || newest(b) - newest(a));
  $('conversations').replaceChildren(...sorted.map((c) => {
    const peer = peerOf(c);
    const online = Boolean(peer && state.online.get(peer));
    const status = { title: online ? 'online' : 'offline', data: { online } };
    const dot = peer
      ? el('span', { class: `dot${online ? ' on' : ''}`, testid: 'online-dot', ...status })
      : el('span', { class: 'dot group', textContent: '#' });
    const unread = c.unread_count > 0
      ? el('span', { class: `unread${c.is_muted ? ' muted' : ''}`, testid: 'unread-badge', textContent: String(c.unread_count) })
      : null;
    const marks = el('span', { class: 'marks', textContent: [c.is_pinned && 'pinned', c.is_muted && 'muted'].filter(Boolean).join(' · ') });
    const text = el('div', { class: 'conv-text' },
      el('strong', { textContent: titleOf(c) }),
      el('small', { textContent: c.last_message_text ?? '' }));
    return el('li', {
      class: c.id === state.current ? 'active' : '',
      testid: 'conversation-item',
      data: { conversationId: c.id, peer: peer || '', pinned: Boolean(c.is_pinned), muted: Boolean(c.is_muted) },
      on: { click: () => openConversation(c.id) },
    }, dot, text, marks, unread);
  }));
}

const openPrivate = guarded('notice', 'Could not open the chat', async (receiverId) => {
  const data = await api('POST', '/api/v1/conversations/private', { receiver_id: receiverId });
  state.conversations.set(data.conversation.id, data.conversation);
  learnOnline(data.conversation.online_status);
  $('new-private-input').value = '';
  await openConversation(data.conversation.id);
});

const createGroup = guarded('notice', 'Could not create the group', async (name, memberIds) => {
  const body = { group_name: name, member_ids: memberIds };
  const group = await api('POST', '/api/v1/conversations/group', body);
  $('new-group-name').value = '';
  $('new-group-members').value = '';
  await loadConversations();
  await openConversation(group.id);
});

// ---- the open conversation --------------------------------------------------------------
async function openConversation(id) {
  Object.assign(state, { current: id, messages: [], replyTo: null, lastReadSent: null });
  send('set_current_conversation', { conversation_id: id });
  $('chat-empty').hidden = true;
  $('chat-view').hidden = false;
  $('typing').textContent = '';
  renderAll();
  await loadHistory(id);
  const c = state.conversations.get(id);
  if (c) c.unread_count = 0;
  renderConversations();
}

const loadHistory = guarded('chat-error', 'Could not load the history', async (id) => {
  const data = await api('GET', `/api/v1/conversations/${id}/messages?limit=100`);
  if (state.current !== id) return;
  learnOnline(data.online_status);
  mergeMessages(data.messages);
  for (const member of state.conversations.get(id)?.members || []) {
    if (member.user_id !== state.me) bumpRead(id, member.last_read_message_id);
  }
  renderAll();
  markRead();
});

function mergeMessages(list) {
  for (const m of list) {
    const i = state.messages.findIndex((x) => x.id === m.id);
    if (i >= 0) state.messages[i] = { ...state.messages[i], ...m };
    else state.messages.push(m);
  }
  state.messages.sort((a, b) => a.seq - b.seq);
}

/** Another member has read the open conversation up to `messageId`. */
function bumpRead(conversationId, messageId) {
  const m = state.messages.find((x) => x.id === messageId);
  if (m && conversationId === state.current && m.seq > (state.readSeq.get(conversationId) || 0)) {
    state.readSeq.set(conversationId, m.seq);
  }
}

/** Sends `read` for the newest message of someone else, once, while the page is seen. */
function markRead() {
  const last = [...state.messages].reverse().find((m) => m.sender_id !== state.me);
  if (!last || last.id === state.lastReadSent || document.visibilityState === 'hidden') return;
  if (send('read', { conversation_id: state.current, message_id: last.id })) {
    state.lastReadSent = last.id;
  }
}

function renderAll() {
  renderConversations();
  renderHeader();
  renderReply();
  renderMessages();
}

function renderHeader() {
  const c = state.conversations.get(state.current);
  if (!c) return;
  const peer = peerOf(c);
  const online = Boolean(peer && state.online.get(peer));
  $('chat-title').textContent = titleOf(c);
  $('chat-title').title = peer || c.id;
  const status = online ? 'online' : 'offline';
  $('peer-status').textContent = peer ? status : `${c.members?.length ?? 0} members`;
  $('peer-status').className = `peer${online ? ' on' : ''}`;
  $('pin-toggle').textContent = c.is_pinned ? 'Unpin' : 'Pin';
  $('mute-toggle').textContent = c.is_muted ? 'Unmute' : 'Mute';
}

/** Pins or mutes the open conversation, or undoes it (the caller's own setting). */
const toggleSetting = guarded('chat-error', 'Could not change the setting', async (flag) => {
  const id = state.current;
  const c = state.conversations.get(id);
  if (!c) return;
  const route = flag === 'pin' ? (c.is_pinned ? 'unpin' : 'pin') : (c.is_muted ? 'unmute' : 'mute');
  const data = await api('POST', `/api/v1/conversations/${id}/${route}`);
  applySettings(data);
});

/** A conversation's settings as the server says them (an answer, or another device's change). */
function applySettings({ conversation_id: id, is_pinned, is_muted }) {
  updateConversation(id, { is_pinned, is_muted });
  if (id === state.current) renderHeader();
}

function renderReply() {
  $('reply-preview').hidden = !state.replyTo;
  $('reply-text').textContent = state.replyTo ? `Replying to: ${preview(state.replyTo)}` : '';
}

function renderMessages() {
  const list = $('messages');
  list.replaceChildren(...state.messages.map(renderMessage));
  list.scrollTop = list.scrollHeight;
}

function renderMessage(m) {
  const mine = m.sender_id === state.me;
  const li = el('li', {
    class: `msg ${mine ? 'mine' : 'theirs'}`,
    testid: 'message',
    data: { messageId: m.id, seq: m.seq, recalled: Boolean(m.is_recalled) },
  });
  if (!mine && state.conversations.get(m.conversation_id)?.conversation_type === 'group') {
    li.append(el('small', { class: 'sender', textContent: short(m.sender_id) }));
  }
  if (m.forwarded_from) {
    const from = `Forwarded from ${short(m.forwarded_from.sender_id)}`;
    li.append(el('div', { class: 'quote', testid: 'message-forwarded', textContent: from }));
  }
  if (m.reply_to_message_id) {
    const original = state.messages.find((x) => x.id === m.reply_to_message_id);
    const quote = `↪ ${original ? preview(original) : 'an earlier message'}`;
    li.append(el('div', { class: 'quote', testid: 'message-reply', textContent: quote }));
  }
  li.append(renderBody(m, mine));
  const sentAt = new Date(m.created_at).toLocaleTimeString();
  const meta = el('div', { class: 'meta' }, el('time', { textContent: sentAt }));
  if (m.edited_at && !m.is_recalled) {
    meta.append(el('span', { class: 'edited', testid: 'message-edited', textContent: 'edited' }));
  }
  if (!m.is_recalled) {
    if (mine) {
      const read = m.seq <= (state.readSeq.get(m.conversation_id) || 0);
      const status = read ? 'read' : 'sent';
      meta.append(el('span', { class: `status ${status}`, testid: 'message-status', textContent: status }));
    }
    meta.append(linkButton('reply-button', 'reply', () => {
      state.replyTo = m;
      renderReply();
      $('composer-input').focus();
    }));
    if (mine && m.message_type === 'text') {
      meta.append(linkButton('edit-button', 'edit', () => editMessage(m)));
    }
    if (mine) {
      meta.append(linkButton('recall-button', 'recall', () =>
        send('recall', { message_id: m.id }) || flash('chat-error', 'Not connected.')));
    }
  }
  li.append(meta);
  return li;
}

function renderBody(m, mine) {
  if (m.is_recalled) {
    const text = mine ? 'You recalled a message' : 'Message recalled';
    return el('em', { class: 'recalled', testid: 'message-recalled', textContent: text });
  }
  const url = m.metadata?.url ?? m.metadata?.image_url;
  if (m.message_type === 'image' && safeImage(url)) {
    return el('img', { class: 'image', testid: 'message-image', src: url, alt: 'image', loading: 'lazy' });
  }
  const kind = m.message_type === 'emoji' ? 'emoji' : 'text';
  const prefix = ['text', 'emoji'].includes(m.message_type) ? '' : `[${m.message_type}] `;
  return el('p', { class: kind, testid: 'message-text', textContent: prefix + (m.content ?? url ?? '') });
}

// ---- sending ----------------------------------------------------------------------------
function send(type, data) {
  if (state.ws?.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify({ type, data }));
  return true;
}

/** Asks for the new text of one's own message and sends an `edit`; the server's
 * `message_edited` (or an `error`) answers. */
function editMessage(m) {
  const text = prompt('Edit message', m.content ?? '');
  if (text == null || text === m.content) return;
  if (!text.trim()) {
    flash('chat-error', 'A message cannot be empty; recall it instead.');
    return;
  }
  if (!send('edit', { message_id: m.id, content: text })) flash('chat-error', 'Not connected.');
}

function sendMessage(fields) {
  if (!state.current) return false;
  const data = { conversation_id: state.current, client_msg_id: uuid4(), ...fields };
  if (state.replyTo) data.reply_to_message_id = state.replyTo.id;
  if (!send('message', data)) {
    flash('chat-error', 'Not connected; try again in a moment.');
    return false;
  }
  state.replyTo = null;
  renderReply();
  return true;
}

function onTyping() {
  const now = Date.now();
  if (!state.current || now - state.lastTypingSent < TYPING_SEND_MS) return;
  if (send('typing', { conversation_id: state.current })) state.lastTypingSent = now;
}

// ---- server events ----------------------------------------------------------------------
function onMessage(m, offline) {
  if (offline) {
    state.offlineCount += 1;
    say('offline-notice', `${state.offlineCount} message(s) arrived while you were offline`);
    reloadSoon(); // for the unread counts
  }
  const c = state.conversations.get(m.conversation_id);
  if (c) Object.assign(c, { last_message_time: m.created_at, last_message_text: preview(m) });
  else reloadSoon();
  if (m.conversation_id === state.current) {
    mergeMessages([m]);
    if (m.sender_id !== state.me) $('typing').textContent = '';
    renderMessages();
    markRead();
  }
  renderConversations();
}

/** Applies `fields` to a listed conversation, or reloads the list when it is not there. */
function updateConversation(id, fields) {
  const c = state.conversations.get(id);
  if (!c) return reloadSoon();
  Object.assign(c, fields);
  return renderConversations();
}

const handlers = {
  message: (m) => onMessage(m, false),
  offline_message: (m) => onMessage(m, true),
  conversation_update: ({ conversation_id: id, ...fields }) => updateConversation(id, fields),
  unread_count_update: (d) => updateConversation(d.conversation_id, { unread_count: d.unread_count }),
  conversation_settings_update: applySettings,
  typing(d) {
    if (d.conversation_id !== state.current || d.user_id === state.me) return;
    $('typing').textContent = `${short(d.user_id)} is typing…`;
    later('typing', TYPING_SHOW_MS, () => { $('typing').textContent = ''; });
  },
  read(d) {
    if (d.reader_id === state.me) return;
    const members = state.conversations.get(d.conversation_id)?.members || [];
    const member = members.find((x) => x.user_id === d.reader_id);
    if (member) member.last_read_message_id = d.message_id;
    bumpRead(d.conversation_id, d.message_id);
    if (d.conversation_id === state.current) renderMessages();
  },
  recalled(d) {
    const m = state.messages.find((x) => x.id === d.message_id);
    if (!m) return;
    Object.assign(m, { is_recalled: true, content: null, metadata: null });
    if (state.replyTo?.id === m.id) state.replyTo = null;
    renderAll();
  },
  message_edited(d) {
    const m = state.messages.find((x) => x.id === d.message_id);
    if (!m) return;
    Object.assign(m, { content: d.content, edited_at: d.edited_at });
    renderAll();
  },
  online_status_update(d) {
    state.online.set(d.user_id, d.is_online);
    renderAll();
  },
  error: (d) => flash(state.current ? 'chat-error' : 'notice', d.message || d.code || 'error'),
  notification: (n) => say('notice', `Notification: ${n.title}${n.content ? ` (${n.content})` : ''}`),
  offline_truncated(d) {
    const skipped = (d.conversations || []).reduce((sum, c) => sum + c.skipped, 0);
    say('notice', `${skipped} older missed message(s) were not pushed: they are in the history.`);
  },
};

function setConnected(connected) {
  $('connection-status').textContent = connected ? 'connected' : 'offline';
  $('connection-status').className = `conn ${connected ? 'on' : 'off'}`;
}

function connect() {
  state.wsWanted = true;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onopen = () => {
    state.retryMs = 1000;
    setConnected(true);
    if (state.current) send('set_current_conversation', { conversation_id: state.current });
    if (state.wasConnected) reloadSoon();
    state.wasConnected = true;
    clearInterval(state.heartbeat);
    state.heartbeat = setInterval(() => send('heartbeat', {}), HEARTBEAT_MS);
    markRead();
  };
  ws.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    if (Object.hasOwn(handlers, frame?.type)) handlers[frame.type](frame.data ?? {});
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    setConnected(false);
    clearInterval(state.heartbeat);
    if (!state.wsWanted) return;
    setTimeout(connect, state.retryMs); // what was missed meanwhile comes as offline_message
    state.retryMs = Math.min(state.retryMs * 2, 15000);
  };
}

// ---- admin ------------------------------------------------------------------------------
function settingRow(key, current) {
  const isBool = current === 'true' || current === 'false';
  const input = el('input', { type: isBool ? 'checkbox' : 'number', testid: `setting-${key}`, min: '0' });
  if (isBool) input.checked = current === 'true';
  else input.value = current;
  input.addEventListener('change', () => saveSetting(key, isBool ? String(input.checked) : input.value));
  return el('tr', { data: { key } }, el('th', { textContent: key }), el('td', {}, input));
}

const loadSettings = guarded('admin-error', 'Settings', async () => {
  const { settings } = await api('GET', '/api/admin/settings');
  $('settings').replaceChildren(...Object.keys(settings).sort().map((k) => settingRow(k, settings[k])));
});

const loadNodes = guarded('admin-error', 'Nodes', async () => {
  const { nodes } = await api('GET', '/api/admin/nodes');
  $('nodes').replaceChildren(...nodes.map((n) => el('tr', { testid: 'node-row', data: { nodeId: n.node_id } },
    el('td', { textContent: n.node_id, title: n.ws_url }),
    el('td', { testid: 'node-connections', textContent: String(n.connections) }),
    el('td', { textContent: !n.live ? 'stale' : n.accepting ? 'live' : 'draining' }))));
});

const loadAdmin = () => Promise.all([loadSettings(), loadNodes()]);

const saveSetting = guarded('admin-error', 'Setting', async (key, v) => {
  try {
    await api('POST', `/api/admin/settings/${encodeURIComponent(key)}`, { value: v });
  } finally {
    await loadAdmin(); // shows what the server has, whether or not the change was taken
  }
});

// ---- wiring -----------------------------------------------------------------------------
function init() {
  on('login-form', 'submit', () => signIn(value('login-user-id'), $('login-admin').checked));
  on('login-generate', 'click', () => { $('login-user-id').value = uuid4(); });
  on('logout', 'click', () => {
    sessionStorage.removeItem(SESSION_KEY);
    location.reload(); // closes the WebSocket too
  });
  on('new-private', 'submit', () => value('new-private-input') && openPrivate(value('new-private-input')));
  on('new-group', 'submit', () => {
    const members = value('new-group-members').split(',').map((s) => s.trim()).filter(Boolean);
    if (value('new-group-name')) createGroup(value('new-group-name'), members);
  });
  on('composer', 'submit', () => {
    const content = $('composer-input').value;
    if (content.trim() && sendMessage({ message_type: 'text', content })) $('composer-input').value = '';
  });
  on('composer-input', 'input', onTyping);
  on('image-form', 'submit', () => {
    const url = value('image-url-input');
    if (!safeImage(url)) flash('chat-error', 'An image URL starts with http:, https: or data:image/.');
    else if (sendMessage({ message_type: 'image', metadata: { url } })) $('image-url-input').value = '';
  });
  on('emoji-toggle', 'click', () => { $('emoji-picker').hidden = !$('emoji-picker').hidden; });
  const sendEmoji = (e) => {
    if (sendMessage({ message_type: 'emoji', content: e })) $('emoji-picker').hidden = true;
  };
  $('emoji-picker').append(...EMOJI.map((e) => el('button', {
    type: 'button', class: 'emoji-option', testid: 'emoji-option', textContent: e,
    on: { click: () => sendEmoji(e) },
  })));
  on('reply-cancel', 'click', () => { state.replyTo = null; renderReply(); });
  on('pin-toggle', 'click', () => toggleSetting('pin'));
  on('mute-toggle', 'click', () => toggleSetting('mute'));
  on('admin-refresh', 'click', loadAdmin);
  document.addEventListener('visibilitychange', markRead);

  const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
  $('login-user-id').value = saved?.user_id || localStorage.getItem(LAST_USER_KEY) || '';
  if (saved?.user_id) signIn(saved.user_id, Boolean(saved.admin));
}

init();
