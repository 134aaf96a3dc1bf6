// Switchboard web client: vanilla ES2020, no framework, no build step.
//
// Safety rule for this file: text that comes from users or the server is only ever put
// into the page with textContent / text nodes (see `el`), never parsed as HTML.
//
// Shape: one `state` object, API calls and WebSocket frames change it, and `render()`
// (batched with `scheduleRender`) redraws the parts of the page from it.
'use strict';

const $ = (id) => document.getElementById(id);

/** Builds an element. Strings among `children` become text nodes, never markup. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'testid') node.dataset.testid = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const state = {
  token: sessionStorage.getItem('sb.token'),
  me: null,
  convs: new Map(), // conversation id -> conversation (API shape)
  listLoaded: false,
  msgs: new Map(), // conversation id -> { byId: Map<id, message>, hasMore, loaded, loading }
  users: new Map(), // user id -> user, for names
  presence: new Map(), // user id -> 'online' | 'offline'
  receipts: new Map(), // direct conversation id -> { delivered, read } of the other member
  typing: new Map(), // conversation id -> Map<user id, expiry ms>
  outbox: [], // sends not confirmed yet; a retry reuses the entry's client_id
  openId: null, // the open conversation
  draftUser: null, // user picked for a first direct message (no conversation yet)
  editing: null, // the own message being edited in the composer
  lastEventId: null, // newest event processed; null until the first hello
  groupPick: new Map(), // user id -> user, members picked for a new group
};

// ---------------------------------------------------------------- HTTP

/** An API call; failures throw an Error with `status` (0: network) and the error `code`. */
const apiError = (status, code, message) => Object.assign(new Error(message), { status, code });

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch (err) {
    throw apiError(0, 'network', 'Network error, check your connection.');
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    // An expired or revoked token: the only way forward is to log in again.
    if (res.status === 401 && state.token) logout();
    const error = (data && data.error) || {};
    throw apiError(res.status, error.code || `http_${res.status}`, error.message || res.statusText);
  }
  return data;
}

// ---------------------------------------------------------------- auth

$('auth-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const register = event.submitter && event.submitter.value === 'register';
  const body = { username: $('auth-username').value.trim(), password: $('auth-password').value };
  const display = $('auth-display').value.trim();
  if (register && display) body.display_name = display;
  $('auth-error').textContent = '';
  try {
    const res = await api('POST', register ? '/api/auth/register' : '/api/auth/login', body);
    $('auth-password').value = '';
    startSession(res.token, res.user);
  } catch (err) {
    $('auth-error').textContent = err.message;
  }
});

$('logout').addEventListener('click', () => logout());

function logout() {
  if (state.me) [eventKey(), receiptsKey()].forEach((key) => sessionStorage.removeItem(key));
  sessionStorage.removeItem('sb.token');
  sessionStorage.removeItem('sb.open');
  // A reload is the simplest complete reset: sockets, timers and state all go.
  location.reload();
}

const eventKey = () => `sb.lastEvent.${state.me.id}`;
const receiptsKey = () => `sb.receipts.${state.me.id}`;

function startSession(token, user) {
  state.token = token;
  state.me = user;
  state.users.set(user.id, user);
  sessionStorage.setItem('sb.token', token);
  // The last event seen survives a reload of this tab, so the socket replays what was missed.
  const stored = sessionStorage.getItem(eventKey());
  state.lastEventId = stored === null ? null : Number(stored);
  // Receipts too: the API has no other-member read pointer for direct conversations.
  state.receipts = new Map(JSON.parse(sessionStorage.getItem(receiptsKey()) || '[]'));
  $('auth-view').hidden = true;
  $('app-view').hidden = false;
  $('logout').hidden = false;
  $('me').textContent = user.display_name;
  connect();
}

function boot() {
  if (!state.token) {
    $('auth-view').hidden = false;
    return $('auth-username').focus();
  }
  api('GET', '/api/users/me').then((me) => startSession(state.token, me),
    (err) => err.status !== 401 && setTimeout(boot, 2000)); // server unreachable: try again
}

// ---------------------------------------------------------------- WebSocket

let socket = null;
let connecting = false; // a ticket request is in flight
let attempt = 0; // reconnect attempts since the last hello, for the backoff
let reconnectTimer = null;
let ackTimer = null;
let ackedOnSocket = 0;

function setStatus(text, phase) {
  Object.assign($('status'), { textContent: text }).dataset.state = phase;
}

async function connect() {
  clearTimeout(reconnectTimer);
  if (socket || connecting) return;
  setStatus(attempt ? 'Reconnecting…' : 'Connecting…', attempt ? 'reconnecting' : 'connecting');
  let ticket;
  connecting = true;
  try {
    // A single-use ticket keeps the long-lived token out of the URL.
    ({ ticket } = await api('POST', '/api/ws-ticket'));
  } catch (err) {
    if (err.status !== 401) scheduleReconnect();
    return;
  } finally {
    connecting = false;
  }
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const since = state.lastEventId === null ? '' : `&since=${state.lastEventId}`;
  const ws = new WebSocket(`${proto}//${location.host}/ws?ticket=${encodeURIComponent(ticket)}${since}`);
  socket = ws;
  ws.addEventListener('message', (event) => {
    let frame = null;
    try { frame = JSON.parse(event.data); } catch (err) { /* not JSON: ignore */ }
    if (frame) handleFrame(frame);
  });
  ws.addEventListener('close', () => {
    if (socket !== ws) return;
    socket = null;
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  // Exponential backoff 0.5 s -> 10 s with a little jitter, so a restarted server is not
  // hit by every client at the same instant.
  const delay = Math.min(10000, 500 * 2 ** attempt * (1 + Math.random() * 0.2));
  attempt += 1;
  setStatus('Reconnecting…', 'reconnecting');
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, delay);
}

// Leaving the page may keep it frozen in the back/forward cache with its socket open, and
// the user would look online. Close it; a restored page reconnects with `since`.
window.addEventListener('pagehide', () => {
  const ws = socket;
  socket = null;
  clearTimeout(reconnectTimer);
  if (ws) ws.close(1000, 'page hidden');
});
window.addEventListener('pageshow', (event) => event.persisted && state.me && connect());
// Back online: no need to wait out the backoff.
window.addEventListener('online', () => state.me && connect());

function sendFrame(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

/** Acks the newest processed event a moment later, so a burst is acked once. */
function scheduleAck() {
  clearTimeout(ackTimer);
  ackTimer = setTimeout(() => {
    if (state.lastEventId > ackedOnSocket && socket && socket.readyState === WebSocket.OPEN) {
      ackedOnSocket = state.lastEventId;
      sendFrame({ type: 'ack', event_id: state.lastEventId });
    }
  }, 300);
}

function handleFrame(frame) {
  const eventId = frame.event_id;
  // Events arrive in id order; anything at or below the last one was already processed
  // (replay seam after a reconnect, or a duplicate).
  if (eventId != null && state.lastEventId !== null && eventId <= state.lastEventId) return;
  switch (frame.type) {
    case 'hello': onHello(frame); break;
    case 'new_message':
      upsertConv(frame.conversation, frame.message.id);
      addMessage(frame.message);
      stopTyping(frame.message.conversation_id, frame.message.sender_id);
      break;
    case 'message_sent':
      addMessage(frame.message);
      if (!state.convs.has(frame.message.conversation_id)) refreshConv(frame.message.conversation_id);
      break;
    case 'conversation_created':
      // A replayed old snapshot must not replace what the list already knows.
      if (!state.convs.has(frame.conversation.id)) upsertConv(frame.conversation);
      break;
    case 'message_edited': addMessage(frame.message); break;
    case 'message_deleted':
      markDeleted(frame.conversation_id, frame.message_id);
      refreshConv(frame.conversation_id); // its unread count may have dropped
      break;
    case 'message_read': onRead(frame); break;
    case 'message_delivered':
      if (frame.user_id !== state.me.id) {
        const r = receipts(frame.conversation_id);
        r.delivered = Math.max(r.delivered, frame.last_delivered_message_id);
      }
      break;
    case 'member_added': case 'member_removed': onMembership(frame); break;
    case 'typing': onTyping(frame); break;
    case 'presence': state.presence.set(frame.user_id, frame.status); break;
    case 'error': console.warn('server error frame', frame.code, frame.message); break;
    default: break; // pong, and frame types added by newer servers
  }
  if (frame.type === 'message_read' || frame.type === 'message_delivered') {
    sessionStorage.setItem(receiptsKey(), JSON.stringify([...state.receipts]));
  }
  if (eventId != null) {
    state.lastEventId = eventId;
    sessionStorage.setItem(eventKey(), String(eventId));
    scheduleAck();
  }
  scheduleRender();
}

function onHello(frame) {
  attempt = 0;
  ackedOnSocket = 0;
  setStatus('Connected', 'connected');
  // First connection in this tab (or a server whose log is behind us): start from now.
  if (state.lastEventId === null || state.lastEventId > frame.last_event_id) {
    state.lastEventId = frame.last_event_id;
    sessionStorage.setItem(eventKey(), String(frame.last_event_id));
  }
  // The server pings every 30 s and the browser answers by itself: no client ping needed.
  // Loaded after the socket is up, so whatever happens from here on arrives live.
  if (!state.listLoaded) loadConversations();
}

function onRead(frame) {
  const conv = state.convs.get(frame.conversation_id);
  if (frame.reader_id === state.me.id) {
    // Read on this or another device of mine.
    if (!conv) return;
    conv.last_read_message_id = Math.max(conv.last_read_message_id || 0, frame.last_read_message_id);
    if (conv.last_message && conv.last_message.id <= conv.last_read_message_id) conv.unread_count = 0;
    else refreshConv(conv.id);
  } else {
    const r = receipts(frame.conversation_id);
    r.read = Math.max(r.read, frame.last_read_message_id);
    r.delivered = Math.max(r.delivered, r.read); // read implies delivered
  }
}

function onMembership(frame) {
  state.users.set(frame.user.id, frame.user);
  if (frame.type === 'member_removed' && frame.user.id === state.me.id) {
    state.convs.delete(frame.conversation_id);
    state.msgs.delete(frame.conversation_id);
    if (state.openId === frame.conversation_id) closeChat();
  } else {
    refreshConv(frame.conversation_id); // members_count changed
  }
}

function onTyping(frame) {
  if (frame.user_id === state.me.id) return;
  let users = state.typing.get(frame.conversation_id);
  if (!users) state.typing.set(frame.conversation_id, (users = new Map()));
  users.set(frame.user_id, Date.now() + 3000);
  setTimeout(scheduleRender, 3100); // to hide it again
}

const stopTyping = (conversationId, userId) => state.typing.get(conversationId)?.delete(userId);

// ---------------------------------------------------------------- state helpers

function receipts(conversationId) {
  let r = state.receipts.get(conversationId);
  if (!r) state.receipts.set(conversationId, (r = { delivered: 0, read: 0 }));
  return r;
}

function convMsgs(conversationId) {
  let s = state.msgs.get(conversationId);
  if (!s) state.msgs.set(conversationId, (s = { byId: new Map(), hasMore: true, loaded: false, loading: false }));
  return s;
}

const rememberUser = (user) => user && state.users.set(user.id, user);

/**
 * Stores a conversation snapshot. `asOf` is the message a frame's snapshot came with: a
 * replayed old frame must not overwrite newer state (unread count, last message).
 */
function upsertConv(conv, asOf = null) {
  const known = state.convs.get(conv.id);
  rememberUser(conv.other_user);
  if (known && known.last_message && asOf !== null && asOf < known.last_message.id) return;
  state.convs.set(conv.id, conv);
  if (conv.other_user && !state.presence.has(conv.other_user.id)) loadPresence(conv.other_user.id);
}

function addMessage(m) {
  // Only chats whose history is (being) loaded keep messages; the others load their latest
  // page when opened, so scroll-back paging stays simple.
  const s = state.msgs.get(m.conversation_id);
  if (s && (s.loaded || s.loading)) s.byId.set(m.id, m);
  if (m.client_id && m.sender_id === state.me.id) state.outbox = state.outbox.filter((e) => e.clientId !== m.client_id);
  const conv = state.convs.get(m.conversation_id);
  if (conv && (!conv.last_message || m.id >= conv.last_message.id)) conv.last_message = m;
  if (m.id === state.editing?.id && m.deleted) cancelEdit();
}

function markDeleted(conversationId, messageId) {
  const gone = (m) => Object.assign(m, { deleted: true, message: '', attachments: [] });
  const m = state.msgs.get(conversationId)?.byId.get(messageId);
  if (m) gone(m);
  const last = state.convs.get(conversationId)?.last_message;
  if (last && last.id === messageId) gone(last);
  if (state.editing && state.editing.id === messageId) cancelEdit();
}

async function refreshConv(id) {
  try {
    const conv = await api('GET', `/api/conversations/${id}`);
    const known = state.convs.get(id);
    // A live message may have landed while this request was in flight.
    if (known && known.last_message && (!conv.last_message || conv.last_message.id < known.last_message.id)) {
      conv.last_message = known.last_message;
    }
    upsertConv(conv);
  } catch (err) {
    if (err.status === 404) {
      state.convs.delete(id);
      if (state.openId === id) closeChat();
    }
  }
  scheduleRender();
}

async function loadConversations() {
  try {
    const { conversations } = await api('GET', '/api/conversations?limit=200');
    for (const conv of conversations) {
      const known = state.convs.get(conv.id);
      const asOf = conv.last_message ? conv.last_message.id : 0;
      if (!known || !known.last_message || asOf >= known.last_message.id) upsertConv(conv);
    }
    state.listLoaded = true;
    const reopen = Number(sessionStorage.getItem('sb.open'));
    if (reopen && state.convs.has(reopen) && !state.openId) openConversation(reopen);
  } catch (err) {
    if (err.status !== 401) setTimeout(loadConversations, 3000);
  }
  scheduleRender();
}

function loadPresence(userId) {
  state.presence.set(userId, state.presence.get(userId) || 'offline'); // asked once
  api('GET', `/api/users/${userId}/presence`).then((p) => {
    state.presence.set(userId, p.status);
    scheduleRender();
  }, () => {}); // the dot stays offline until a presence frame
}

const fetchingUsers = new Set();
function userName(id) {
  const user = state.users.get(id);
  if (user) return user.display_name;
  if (!fetchingUsers.has(id)) {
    fetchingUsers.add(id);
    api('GET', `/api/users/${id}`).then((u) => { rememberUser(u); scheduleRender(); }, () => {});
  }
  return '…';
}

const convName = (conv) => (conv.kind === 'group' ? conv.name : conv.other_user ? conv.other_user.display_name : 'Conversation');
const activity = (conv) => (conv.last_message ? conv.last_message.created_at : conv.created_at);

// ---------------------------------------------------------------- opening a chat

/** Shows a conversation, a draft to `draftUser` (no conversation yet), or neither. */
function showChat(id, draftUser = null) {
  Object.assign(state, { openId: id, draftUser });
  cancelEdit();
  if (id) sessionStorage.setItem('sb.open', String(id)); else sessionStorage.removeItem('sb.open');
  document.body.classList.toggle('chat-open', Boolean(id || draftUser)); // small screens
  closePanels();
  scheduleRender({ toBottom: true });
}

async function openConversation(id) {
  showChat(id);
  if (!convMsgs(id).loaded) await loadHistory(id, false);
  input.focus();
}

function openDraft(user) {
  // A direct conversation exists at most once per pair: reuse it when we know it. When we
  // do not, sending by recipient_id still lands in it.
  const known = [...state.convs.values()].find((conv) => conv.other_user && conv.other_user.id === user.id);
  if (known) return openConversation(known.id);
  showChat(null, user);
  input.focus();
}

const closeChat = () => showChat(null);

async function loadHistory(id, older) {
  const s = convMsgs(id);
  if (s.loading) return;
  s.loading = true;
  const ids = [...s.byId.keys()];
  const query = older && ids.length ? `?before_id=${Math.min(...ids)}` : '';
  try {
    const page = await api('GET', `/api/conversations/${id}/messages${query}`);
    for (const m of page.messages) if (!s.byId.has(m.id)) s.byId.set(m.id, m);
    if (older || !s.loaded) s.hasMore = page.has_more;
    s.loaded = true;
  } catch (err) {
    showChatError(err.message);
  } finally {
    s.loading = false;
  }
  scheduleRender(older ? { keepFromBottom: true } : { toBottom: true });
}

$('load-older').addEventListener('click', () => state.openId && loadHistory(state.openId, true));
// Scroll-back: reaching the top loads the previous page.
$('scroller').addEventListener('scroll', () => {
  const s = state.openId && state.msgs.get(state.openId);
  if (s && s.loaded && s.hasMore && $('scroller').scrollTop < 40) loadHistory(state.openId, true);
});

/** Marks the open conversation read up to the newest message shown, when the page is visible. */
let readInFlight = false;
async function maybeMarkRead() {
  const conv = state.openId && state.convs.get(state.openId);
  const s = conv && state.msgs.get(conv.id);
  if (!s || !s.loaded || readInFlight || document.visibilityState !== 'visible') return;
  let newest = 0;
  for (const m of s.byId.values()) if (m.sender_id !== state.me.id && m.id > newest) newest = m.id;
  if (newest <= (conv.last_read_message_id || 0)) return;
  readInFlight = true;
  try {
    const res = await api('POST', `/api/conversations/${conv.id}/read`, { message_id: newest });
    conv.last_read_message_id = Math.max(res.last_read_message_id || 0, newest);
    conv.unread_count = res.unread_count;
  } catch (err) {
    conv.last_read_message_id = Math.max(conv.last_read_message_id || 0, newest); // do not loop on errors
  } finally {
    readInFlight = false;
  }
  scheduleRender();
}
document.addEventListener('visibilitychange', () => scheduleRender());

// ---------------------------------------------------------------- composer

const input = $('composer-input');

input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('composer').requestSubmit();
  } else if (event.key === 'Escape' && state.editing) {
    cancelEdit();
  }
});

let lastTypingSent = 0;
input.addEventListener('input', () => {
  // At most one typing frame per 2 s; the other side shows it for ~3 s.
  if (state.openId && !state.editing && input.value.trim() && Date.now() - lastTypingSent >= 2000) {
    lastTypingSent = Date.now();
    sendFrame({ type: 'typing', conversation_id: state.openId });
  }
});

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (state.editing) return saveEdit(text);
  const file = $('attach').files[0] || null;
  if ((!text && !file) || (!state.openId && !state.draftUser)) return;
  const recipientId = state.openId ? null : state.draftUser.id;
  const entry = { clientId: newClientId(), convId: state.openId, recipientId, text, file, status: 'sending' };
  state.outbox.push(entry);
  input.value = '';
  $('attach').value = '';
  $('send').textContent = 'Send';
  lastTypingSent = 0;
  deliver(entry);
});

/** A random client_id: the server stores a message once per (sender, client_id). */
function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function deliver(entry) {
  entry.status = 'sending';
  scheduleRender({ toBottom: true });
  const target = entry.convId ? { conversation_id: entry.convId } : { recipient_id: entry.recipientId };
  const body = { ...target, message: entry.text, client_id: entry.clientId };
  try {
    let message;
    if (entry.file) {
      const form = new FormData();
      Object.entries(body).forEach(([key, value]) => form.append(key, String(value)));
      form.append('file', entry.file, entry.file.name);
      message = await api('POST', '/api/messages/with-attachment', form);
    } else {
      message = await api('POST', '/api/messages', body);
    }
    addMessage(message);
    if (!state.convs.has(message.conversation_id)) await refreshConv(message.conversation_id);
    addMessage(message); // now also the conversation's preview
    if (!entry.convId && state.draftUser && state.draftUser.id === entry.recipientId) {
      openConversation(message.conversation_id);
    }
  } catch (err) {
    if (err.status === 0 || err.status === 429 || err.status >= 500) {
      // Worth retrying; the same client_id makes a retry safe.
      entry.status = 'failed';
      entry.error = err.message;
    } else {
      state.outbox = state.outbox.filter((e) => e !== entry);
      showChatError(err.message);
      if (!input.value) input.value = entry.text; // give the text back to fix it
    }
  }
  scheduleRender({ toBottom: true });
}

function startEdit(m) {
  state.editing = { id: m.id, conversationId: m.conversation_id };
  input.value = m.message;
  $('edit-banner').hidden = false;
  $('send').textContent = 'Save';
  input.focus();
}

function cancelEdit() {
  if (!state.editing) return;
  state.editing = null;
  input.value = '';
  $('edit-banner').hidden = true;
  $('send').textContent = 'Send';
}
$('edit-cancel').addEventListener('click', cancelEdit);

/** Runs a user action; a failure is shown in the chat. */
const guarded = (action) => action().catch((err) => showChatError(err.message)).finally(() => scheduleRender());

function saveEdit(text) {
  const { id } = state.editing;
  if (!text) return;
  guarded(async () => {
    addMessage(await api('PATCH', `/api/messages/${id}`, { message: text }));
    cancelEdit();
  });
}

function deleteMessage(m) {
  if (!window.confirm('Delete this message for everyone?')) return;
  guarded(async () => {
    await api('DELETE', `/api/messages/${m.id}`);
    markDeleted(m.conversation_id, m.id);
  });
}

let errorTimer = null;
function showChatError(text) {
  $('chat-error').textContent = text;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { $('chat-error').textContent = ''; }, 8000);
}

$('back').addEventListener('click', () => {
  const id = state.openId;
  closeChat();
  const item = document.querySelector(`[data-conversation-id="${id}"]`);
  if (item) item.focus();
});

// ---------------------------------------------------------------- new chat / new group

const closePanels = (except = null) => ['new-chat', 'new-group'].forEach((button) => {
  $(`${button}-panel`).hidden = button !== except;
  $(button).setAttribute('aria-expanded', String(button === except));
});

function togglePanel(button, focusId) {
  closePanels($(`${button}-panel`).hidden ? button : null);
  if (!$(`${button}-panel`).hidden) $(focusId).focus();
}
$('new-chat').addEventListener('click', () => togglePanel('new-chat', 'user-search'));
$('new-group').addEventListener('click', () => togglePanel('new-group', 'group-name'));

/** Debounced user search; `show` draws the results. */
function searchBox(inputId, show) {
  let timer = null;
  let seq = 0; // only the newest search may draw
  $(inputId).addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = $(inputId).value.trim();
      const mine = ++seq;
      const { users } = q.length < 2 ? { users: [] }
        : await api('GET', `/api/users/search?q=${encodeURIComponent(q)}&limit=20`).catch(() => ({ users: [] }));
      users.forEach(rememberUser);
      if (mine === seq) show(users.filter((u) => u.id !== state.me.id));
    }, 250);
  });
}

const userLabel = (u) => `${u.display_name} (@${u.username})`;

searchBox('user-search', (users) => {
  $('user-results').replaceChildren(...users.map((u) => el('li', {},
    el('button', { type: 'button', class: 'result', testid: 'user-result', 'data-username': u.username,
      onclick: () => { $('user-search').value = ''; $('user-results').replaceChildren(); openDraft(u); } },
    userLabel(u)))));
});

function drawPicked() {
  const names = [...state.groupPick.values()].map((u) => u.display_name);
  $('group-picked').textContent = names.length ? `Members: ${names.join(', ')}` : 'No members picked yet.';
}

searchBox('group-search', (users) => {
  $('group-results').replaceChildren(...users.map((u) => {
    const box = el('input', { type: 'checkbox', id: `pick-${u.id}`, testid: 'group-member', 'data-username': u.username,
      checked: state.groupPick.has(u.id) });
    box.addEventListener('change', () => {
      if (box.checked) state.groupPick.set(u.id, u); else state.groupPick.delete(u.id);
      drawPicked();
    });
    return el('li', {}, box, el('label', { for: `pick-${u.id}` }, userLabel(u)));
  }));
});

$('group-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('group-error').textContent = '';
  try {
    const conv = await api('POST', '/api/groups', { name: $('group-name').value.trim(), member_ids: [...state.groupPick.keys()] });
    upsertConv(conv);
    state.groupPick.clear();
    $('group-form').reset();
    $('group-results').replaceChildren();
    drawPicked();
    openConversation(conv.id);
  } catch (err) {
    $('group-error').textContent = err.message;
  }
});

// ---------------------------------------------------------------- rendering

// Changes in one turn of the event loop are drawn once. Hints: toBottom, keepFromBottom.
let renderHints = null;
function scheduleRender(hints = {}) {
  if (renderHints) return Object.assign(renderHints, hints);
  renderHints = { ...hints };
  setTimeout(() => {
    const h = renderHints;
    renderHints = null;
    render(h);
  }, 0);
}

function render(hints) {
  if (!state.me) return;
  const focused = document.activeElement && document.activeElement.dataset.key;
  renderList();
  renderChat(hints);
  // Redrawn lists replace their buttons: give keyboard focus back to the same item.
  if (focused && (!document.activeElement || document.activeElement === document.body)) {
    const again = document.querySelector(`[data-key="${focused}"]`);
    if (again) again.focus();
  }
  maybeMarkRead();
}

function presenceDot(userId, testid) {
  const status = state.presence.get(userId) || 'offline';
  return el('span', { class: `dot ${status}`, role: 'img', 'aria-label': status, title: status, testid, 'data-status': status });
}

function preview(conv) {
  const m = conv.last_message;
  if (!m) return 'No messages yet';
  const who = m.sender_id === state.me.id ? 'You: ' : '';
  if (m.deleted) return `${who}message deleted`;
  if (!m.message && m.attachments.length) return `${who}Attachment: ${m.attachments[0].filename}`;
  return who + m.message;
}

/**
 * Redraws `list` from `items`, keeping the element of every item whose signature did not
 * change: focus, a click in progress and loaded images survive live updates.
 */
function drawKeyed(list, cache, items, keyOf, signatureOf, build) {
  const next = new Map();
  const nodes = items.map((item) => {
    const key = keyOf(item);
    const signature = JSON.stringify(signatureOf(item));
    let entry = cache.get(key);
    if (!entry || entry.signature !== signature) entry = { signature, node: build(item) };
    next.set(key, entry);
    return entry.node;
  });
  cache.clear();
  next.forEach((entry, key) => cache.set(key, entry));
  const same = nodes.length === list.children.length && nodes.every((node, i) => list.children[i] === node);
  if (!same) list.replaceChildren(...nodes);
}

const convNodes = new Map();
function renderList() {
  const convs = [...state.convs.values()].sort((a, b) => (activity(b) > activity(a) ? 1 : activity(b) < activity(a) ? -1 : b.id - a.id));
  $('conv-empty').hidden = convs.length > 0 || !state.listLoaded;
  const presenceOf = (conv) => (conv.other_user ? state.presence.get(conv.other_user.id) || 'offline' : null);
  drawKeyed($('conv-list'), convNodes, convs, (conv) => conv.id,
    (conv) => [convName(conv), preview(conv), conv.unread_count, presenceOf(conv), conv.id === state.openId],
    (conv) => {
      const name = convName(conv);
      const unread = conv.unread_count > 0
        ? el('span', { class: 'badge', testid: 'unread-badge', 'aria-label': `${conv.unread_count} unread` }, String(conv.unread_count))
        : null;
      return el('li', {}, el('button', {
        type: 'button', class: 'conv', testid: 'conv-item', 'data-key': `conv-${conv.id}`,
        'data-conversation-id': conv.id, 'data-name': name, 'aria-current': conv.id === state.openId ? 'true' : null,
        onclick: () => openConversation(conv.id),
      },
      conv.other_user ? presenceDot(conv.other_user.id, 'presence-dot') : el('span', { class: 'dot group', 'aria-hidden': 'true' }),
      el('span', { class: 'conv-text' },
        el('span', { class: 'conv-name', testid: 'conv-name' }, name),
        el('span', { class: 'conv-preview', testid: 'conv-preview' }, preview(conv))),
      unread));
    });
}

const messageNodes = new Map();
let drawnConv = null; // which chat the message list shows, to scroll down when it changes

function renderChat(hints) {
  const conv = state.openId ? state.convs.get(state.openId) : null;
  const draft = !conv && state.draftUser;
  $('chat-empty').hidden = Boolean(conv || draft);
  $('chat-view').hidden = !(conv || draft);
  if (!conv && !draft) {
    drawnConv = null;
    return;
  }
  $('chat-title').textContent = conv ? convName(conv) : `New conversation with ${state.draftUser.display_name}`;
  const other = conv ? conv.other_user : state.draftUser;
  $('chat-presence').replaceChildren(other ? presenceDot(other.id, 'chat-presence-dot') : '');
  $('typing').textContent = conv ? typingText(conv.id) : '';

  const s = conv ? convMsgs(conv.id) : { byId: new Map(), hasMore: false, loaded: true };
  $('load-older').hidden = !(s.loaded && s.hasMore);
  const messages = [...s.byId.values()].sort((a, b) => a.id - b.id);
  const peer = other ? other.id : null;
  const pending = state.outbox.filter((e) => (conv && e.convId === conv.id) || (peer !== null && e.recipientId === peer));
  const direct = conv ? conv.kind === 'direct' : true;
  const r = conv ? receipts(conv.id) : { delivered: 0, read: 0 };
  const tickOf = (m) => (m.sender_id !== state.me.id || !direct || m.deleted ? null
    : m.id <= r.read ? 'read' : m.id <= r.delivered ? 'delivered' : 'sent');

  const scroller = $('scroller');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
  const items = [...messages, ...pending];
  drawKeyed($('messages'), messageNodes, items, (m) => (m.clientId ? `pending-${m.clientId}` : m.id),
    (m) => (m.clientId ? [m.status] : [m.message, m.edited_at, m.deleted, tickOf(m), direct || userName(m.sender_id)]),
    (m) => (m.clientId ? pendingItem(m) : messageItem(m, direct, tickOf(m))));
  const changedConv = drawnConv !== (conv ? conv.id : 'draft');
  drawnConv = conv ? conv.id : 'draft';
  if (hints.keepFromBottom) scroller.scrollTop = scroller.scrollHeight - fromBottom; // after "load older"
  else if (hints.toBottom || atBottom || changedConv) scroller.scrollTop = scroller.scrollHeight;
}

function typingText(conversationId) {
  const now = Date.now();
  const names = [...(state.typing.get(conversationId) || [])].filter(([, until]) => until > now).map(([id]) => userName(id));
  return names.length ? `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…` : '';
}

function messageItem(m, direct, tick) {
  const own = m.sender_id === state.me.id;
  const time = new Date(m.created_at);
  const meta = el('span', { class: 'meta' },
    el('time', { datetime: m.created_at, title: time.toLocaleString() }, time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
    m.edited_at && !m.deleted ? el('span', { class: 'edited', testid: 'edited' }, ' (edited)') : null);
  if (tick) {
    const [mark, label] = { read: ['Read', 'Read'], delivered: ['✓✓', 'Delivered'], sent: ['✓', 'Sent'] }[tick];
    meta.append(' ', el('span', { class: `tick ${tick}`, testid: 'tick', 'data-state': tick, 'aria-label': label, title: label }, mark));
  }
  const item = el('li', { class: `msg${own ? ' own' : ''}${m.deleted ? ' deleted' : ''}`, testid: 'message',
    'data-message-id': m.id, 'data-own': String(own), 'data-deleted': String(m.deleted) });
  if (!own && !direct) item.append(el('span', { class: 'sender' }, userName(m.sender_id)));
  if (m.deleted) item.append(el('p', { class: 'text', testid: 'message-text' }, 'message deleted'));
  else if (m.message) item.append(el('p', { class: 'text', testid: 'message-text' }, m.message));
  if (!m.deleted) m.attachments.forEach((a) => item.append(attachmentNode(a)));
  item.append(meta);
  if (own && !m.deleted) {
    item.append(el('span', { class: 'actions' },
      el('button', { type: 'button', testid: 'edit-button', 'data-key': `edit-${m.id}`, 'aria-label': 'Edit message', onclick: () => startEdit(m) }, 'Edit'),
      el('button', { type: 'button', testid: 'delete-button', 'data-key': `delete-${m.id}`, 'aria-label': 'Delete message', onclick: () => deleteMessage(m) }, 'Delete')));
  }
  return item;
}

/** A message not confirmed yet: "Sending…", or failed with a Retry (same client_id). */
function pendingItem(entry) {
  const failed = entry.status === 'failed';
  return el('li', { class: 'msg own pending', testid: 'pending-message', 'data-status': entry.status },
    el('p', { class: 'text' }, entry.text || (entry.file ? `Attachment: ${entry.file.name}` : '')),
    el('span', { class: 'meta' }, failed ? `Not sent: ${entry.error} ` : 'Sending…',
      failed ? el('button', { type: 'button', testid: 'retry-button', 'data-key': `retry-${entry.clientId}`, onclick: () => deliver(entry) }, 'Retry') : null));
}

// Signed download URLs, fetched once per attachment and reused until a minute before expiry.
const signedUrls = new Map(); // attachment id -> { promise, until }
function signedUrl(id) {
  const cached = signedUrls.get(id);
  if (cached && cached.until > Date.now()) return cached.promise;
  const entry = { until: Infinity };
  entry.promise = api('GET', `/api/attachments/${id}/download`).then((d) => {
    entry.until = Date.now() + (d.expires_in_seconds - 60) * 1000;
    return d.download_url;
  });
  entry.promise.catch(() => signedUrls.delete(id));
  signedUrls.set(id, entry);
  return entry.promise;
}

const formatSize = (bytes) => (bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`);

function attachmentNode(a) {
  const link = el('a', { class: 'attachment', testid: 'attachment-link', href: '#', download: a.filename },
    `Download ${a.filename} (${formatSize(a.size)})`);
  // The link's URL expires: an old one is swapped for a fresh one when clicked.
  link.addEventListener('click', (event) => {
    const cached = signedUrls.get(a.id);
    if (link.getAttribute('href') !== '#' && cached && cached.until > Date.now()) return;
    event.preventDefault();
    signedUrl(a.id).then((url) => { link.href = url; location.assign(url); }, () => showChatError('Download unavailable.'));
  });
  const box = el('div', { class: 'attachment-box' });
  let img = null;
  if (a.mime_type.startsWith('image/')) {
    img = el('img', { class: 'preview', alt: a.filename, testid: 'attachment-image' });
    // A loading image grows the list: stay at the bottom if we were there.
    img.addEventListener('load', () => {
      const scroller = $('scroller');
      if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < img.height + 80) scroller.scrollTop = scroller.scrollHeight;
    });
    box.append(img);
  }
  box.append(link);
  signedUrl(a.id).then((url) => {
    link.href = url;
    if (img) img.src = url;
  }, () => link.append(' (unavailable)'));
  return box;
}

// A file picked: show it on the send button so the user knows it goes along.
$('attach').addEventListener('change', () => {
  const file = $('attach').files[0];
  $('send').textContent = state.editing ? 'Save' : file ? 'Send file' : 'Send';
});

boot();
