// Switchboard web client: vanilla ES2020, no framework, no build step.
//
// Safety rule for this file: text that comes from users or the server is only ever put
// into the page with textContent / text nodes (see `el`), never parsed as HTML. Links in
// message text are built as <a> elements from the split text (see `linkify`).
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

/** A line icon (24 x 24 path data), drawn like the ones in index.html. */
function icon(d) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  const attrs = { viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.8', 'stroke-linecap': 'round',
    'stroke-linejoin': 'round', 'aria-hidden': 'true' };
  Object.entries(attrs).forEach(([key, value]) => svg.setAttribute(key, value));
  const path = document.createElementNS(svg.namespaceURI, 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}
const PIN_ICON = 'M9 4h6l-1 6 4 4H6l4-4zM12 14v7';
const MUTED_ICON = 'M6 16V11a6 6 0 0 1 12 0v5l1.5 2h-15zM10 20.5h4M4 4l16 16';
const SMILE_ICON = 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM8.5 14a4 4 0 0 0 7 0M9 9.5h.01M15 9.5h.01';

// The server's messaging.edit_window_seconds (default 15 min): past it, Edit is hidden.
const EDIT_WINDOW_MS = 15 * 60 * 1000;
// Messages from one sender closer than this are drawn as one run (one name, one avatar).
const RUN_GAP_MS = 5 * 60 * 1000;
// Messages fetched on each side of a message opened from search or of the first unread.
const AROUND = 25;
// Phone layout (one column, larger touch targets); matches the media query in app.css.
const phone = () => window.matchMedia('(max-width: 700px)').matches;

// Logged in across tabs and reloads: the token lives in localStorage; which chat is open
// is per tab (sessionStorage).
const TOKEN_KEY = 'sb.token';
const OPEN_KEY = 'sb.open';
const NOTIFY_DISMISSED_KEY = 'sb.notify.dismissed';

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  me: null,
  connected: false, // our socket is open and said hello; presence is only known then
  convs: new Map(), // conversation id -> conversation (API shape)
  listLoaded: false,
  msgs: new Map(), // conversation id -> message window, see `convMsgs`
  users: new Map(), // user id -> user, for names
  presence: new Map(), // user id -> { status: 'online' | 'offline', last_seen }
  receipts: new Map(), // direct conversation id -> { delivered, read } of the other member
  members: new Map(), // group id -> [{ user, role, last_read_message_id, last_delivered_message_id }]
  typing: new Map(), // conversation id -> Map<user id, expiry ms>
  outbox: [], // sends not confirmed yet; a resend reuses the entry's client_id
  openId: null, // the open conversation
  draftUser: null, // user picked for a first direct message (no conversation yet)
  editing: null, // the own message being edited in the composer
  lastEventId: null, // newest event processed; null until the first hello
  liveFrom: 0, // events above this arrived live (not replayed): only those notify
  groupPick: new Map(), // user id -> user, members picked for a new group
  blocked: new Set(), // user ids I blocked
  contacts: [], // users
  requests: { incoming: [], outgoing: [] },
  search: { q: '', results: [], total: 0, done: false },
  infoOpen: false, // the details panel beside the chat
  scrollTo: null, // after the next draw: { bottom } | { unread } | { message: id }
  highlight: null, // message opened from search: flashed and marked
  selected: null, // message whose actions show on touch screens
  flashSeq: 0, // bumped on every jump to a message, so its flash plays again
  replyTo: null, // { id, conversationId, sender_id, message }: quoted by the next send
  picker: null, // message whose emoji picker is open
  mention: null, // @ completion: { start, end, options, active }
  pinsOpen: false, // the pinned messages panel beside the chat
  pins: new Map(), // conversation id -> pinned messages, most recently pinned first
  muteOpen: false, // the notification settings menu
  push: { id: null, busy: false, error: '' }, // Web Push here: `id` is the server's subscription id while on
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

let loggingOut = false;
async function logout() {
  // Also reached from a 401 inside the push clean-up below: once is enough.
  if (loggingOut) return;
  loggingOut = true;
  $('logout').disabled = true;
  // While the token still works: the next person using this browser must not get this
  // user's pushes. Bounded, because a slow server must not keep anyone logged in.
  await withTimeout(dropPush(), 3000).catch(() => {});
  // The other tabs hear of it through the storage event and reload too. The last event id
  // stays: logging in again replays what came meanwhile, which also acks it (delivered).
  localStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(OPEN_KEY);
  // A reload is the simplest complete reset: sockets, timers and state all go.
  location.reload();
}

// Another tab logged out, or in as someone: this tab follows.
window.addEventListener('storage', (event) => {
  if ((event.key === TOKEN_KEY || event.key === null) && localStorage.getItem(TOKEN_KEY) !== state.token) location.reload();
});

const eventKey = () => `sb.lastEvent.${state.me.id}`;
const receiptsKey = () => `sb.receipts.${state.me.id}`;
const pushKey = () => `sb.push.${state.me.id}`;

function startSession(token, user) {
  state.token = token;
  state.me = user;
  state.users.set(user.id, user);
  localStorage.setItem(TOKEN_KEY, token);
  // The last event seen survives reloads and logins, so the socket replays what was missed.
  const stored = localStorage.getItem(eventKey());
  state.lastEventId = stored === null ? null : Number(stored);
  ackedEver = state.lastEventId; // as far as we know, the last page acked what it processed
  // Receipts too: the API has no other-member read pointer for direct conversations.
  state.receipts = new Map(JSON.parse(localStorage.getItem(receiptsKey()) || '[]'));
  state.push.id = Number(localStorage.getItem(pushKey())) || null;
  $('auth-view').hidden = true;
  $('app-view').hidden = false;
  $('logout').hidden = false;
  $('user-menu-toggle').hidden = false;
  api('GET', '/api/users/me/away').then(showAway, () => {});
  $('me-avatar').replaceChildren(avatar(user.display_name, user.id, 'small'));
  $('me').textContent = user.display_name;
  connect();
  loadSafety();
  startPush();
  // Edit buttons expire and "Today" becomes "Yesterday": redraw now and then.
  setInterval(() => scheduleRender(), 30000);
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
// Newest event acked on any socket. A socket can only ack what it was sent, so one that
// dropped before acking makes the next one start from here (the replay is acked, not redrawn).
let ackedEver = null;

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
  const from = ackedEver === null ? state.lastEventId : Math.min(ackedEver, state.lastEventId);
  const since = from === null ? '' : `&since=${from}`;
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
    socketDown();
    scheduleReconnect();
  });
}

/** Our socket is gone: what others do is unknown until the next hello. */
function socketDown() {
  state.connected = false;
  scheduleRender();
}

function scheduleReconnect() {
  // Exponential backoff 0.5 s -> 10 s with a little jitter, so a restarted server is not
  // hit by every client at the same instant.
  const delay = Math.min(10000, 500 * 2 ** attempt * (1 + Math.random() * 0.2));
  attempt += 1;
  // Still tried while the browser says offline: a server on this machine may be reachable.
  if (navigator.onLine) setStatus('Reconnecting…', 'reconnecting'); else setStatus('Offline', 'offline');
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, delay);
}

/** Closes our socket on purpose (no reconnect scheduled by its close event). */
function dropSocket(reason) {
  ackNow(); // what was processed counts as delivered, even when we leave at once
  const ws = socket;
  socket = null;
  clearTimeout(reconnectTimer);
  if (ws) ws.close(1000, reason);
  socketDown();
}

// Leaving the page may keep it frozen in the back/forward cache with its socket open, and
// the user would look online. Close it; a restored page reconnects with `since`.
window.addEventListener('pagehide', () => dropSocket('page hidden'));
window.addEventListener('pageshow', (event) => event.persisted && state.me && connect());
// A socket can linger for a minute after the network went: do not trust it.
window.addEventListener('offline', () => {
  if (!state.me) return;
  dropSocket('offline');
  scheduleReconnect();
});
// Back online: no need to wait out the backoff.
window.addEventListener('online', () => {
  if (!state.me) return;
  attempt = Math.max(attempt, 1); // shows "Reconnecting…"
  connect();
});

function sendFrame(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

/** Acks the newest processed event a moment later, so a burst is acked once. */
function scheduleAck() {
  clearTimeout(ackTimer);
  ackTimer = setTimeout(ackNow, 300);
}

function ackNow() {
  clearTimeout(ackTimer);
  if (state.lastEventId > ackedOnSocket && socket && socket.readyState === WebSocket.OPEN) {
    ackedOnSocket = state.lastEventId;
    ackedEver = state.lastEventId;
    sendFrame({ type: 'ack', event_id: state.lastEventId });
  }
}

function handleFrame(frame) {
  const eventId = frame.event_id;
  // Events arrive in id order; anything at or below the last one was already processed
  // (replay seam after a reconnect, or a duplicate): only acked again.
  if (eventId != null && state.lastEventId !== null && eventId <= state.lastEventId) return scheduleAck();
  switch (frame.type) {
    case 'hello': onHello(frame); break;
    case 'new_message': onNewMessage(frame); break;
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
        noteReceipt(frame.conversation_id, frame.user_id, { delivered: frame.last_delivered_message_id });
      }
      break;
    case 'member_added': case 'member_removed': onMembership(frame); break;
    case 'typing': onTyping(frame); break;
    case 'presence': state.presence.set(frame.user_id, { status: frame.status, last_seen: frame.last_seen }); break;
    case 'reaction_added': case 'reaction_removed': onReaction(frame); break;
    case 'message_pinned': case 'message_unpinned': onPin(frame); break;
    case 'settings_changed': onSettings(frame); break;
    case 'error': console.warn('server error frame', frame.code, frame.message); break;
    default: break; // pong, and frame types added by newer servers
  }
  if (eventId != null) {
    state.lastEventId = eventId;
    localStorage.setItem(eventKey(), String(eventId));
    // Every event is acked, whatever its conversation: that is what "delivered" means.
    scheduleAck();
  }
  scheduleRender();
}

function onHello(frame) {
  attempt = 0;
  ackedOnSocket = 0;
  state.connected = true;
  state.liveFrom = frame.last_event_id;
  setStatus('Connected', 'connected');
  // First connection for this user in this browser (or a server whose log is behind us):
  // start from now.
  if (state.lastEventId === null || state.lastEventId > frame.last_event_id) {
    state.lastEventId = frame.last_event_id;
    ackedEver = frame.last_event_id;
    localStorage.setItem(eventKey(), String(frame.last_event_id));
  }
  // The server pings every 30 s and the browser answers by itself: no client ping needed.
  // Loaded after the socket is up, so whatever happens from here on arrives live.
  if (!state.listLoaded) loadConversations();
  else refreshPresence();
  flushOutbox();
}

function onNewMessage(frame) {
  const m = frame.message;
  upsertConv(frame.conversation, m.id);
  addMessage(m);
  stopTyping(m.conversation_id, m.sender_id);
  // In the open chat of a hidden tab it stays unread: mark where the new ones start.
  const s = state.msgs.get(m.conversation_id);
  if (m.conversation_id === state.openId && document.hidden && s && s.readMark === null) s.readMark = m.id - 1;
  if (frame.event_id > state.liveFrom) notify(m, frame.conversation); // not for replayed ones
}

function onRead(frame) {
  const conv = state.convs.get(frame.conversation_id);
  if (frame.reader_id === state.me.id) {
    // Read on this or another device of mine.
    if (!conv) return;
    conv.last_read_message_id = Math.max(conv.last_read_message_id || 0, frame.last_read_message_id);
    if (conv.last_message && conv.last_message.id <= conv.last_read_message_id) Object.assign(conv, { unread_count: 0, unread_mentions: 0 });
    else refreshConv(conv.id);
  } else {
    noteReceipt(frame.conversation_id, frame.reader_id, { read: frame.last_read_message_id });
  }
}

/** Another member's read or delivered pointer moved (read implies delivered). */
function noteReceipt(conversationId, userId, { read = 0, delivered = 0 }) {
  const members = state.members.get(conversationId);
  const member = members && members.find((x) => x.user.id === userId);
  if (member) {
    member.last_read_message_id = Math.max(member.last_read_message_id || 0, read);
    member.last_delivered_message_id = Math.max(member.last_delivered_message_id || 0, delivered, read);
  }
  const conv = state.convs.get(conversationId);
  if (conv && conv.kind === 'group') return;
  const r = receipts(conversationId);
  r.read = Math.max(r.read, read);
  r.delivered = Math.max(r.delivered, delivered, r.read);
  localStorage.setItem(receiptsKey(), JSON.stringify([...state.receipts]));
}

function onMembership(frame) {
  state.users.set(frame.user.id, frame.user);
  if (frame.type === 'member_removed' && frame.user.id === state.me.id) {
    state.convs.delete(frame.conversation_id);
    state.msgs.delete(frame.conversation_id);
    state.members.delete(frame.conversation_id);
    if (state.openId === frame.conversation_id) closeChat();
    return;
  }
  refreshConv(frame.conversation_id); // members_count changed
  if (state.members.has(frame.conversation_id)) loadMembers(frame.conversation_id);
}

function onTyping(frame) {
  if (frame.user_id === state.me.id) return;
  let users = state.typing.get(frame.conversation_id);
  if (!users) state.typing.set(frame.conversation_id, (users = new Map()));
  users.set(frame.user_id, Date.now() + 3000);
  setTimeout(scheduleRender, 3100); // to hide it again
}

const stopTyping = (conversationId, userId) => state.typing.get(conversationId)?.delete(userId);

/** The loaded copies of a message: in its chat's window, and as its conversation's last message. */
function copiesOf(conversationId, messageId) {
  const found = [];
  const m = state.msgs.get(conversationId)?.byId.get(messageId);
  if (m) found.push(m);
  const last = state.convs.get(conversationId)?.last_message;
  if (last && last.id === messageId && last !== m) found.push(last);
  return found;
}

/**
 * One reaction added or removed on a loaded message. Idempotent: my own PUT's answer may
 * have applied it already. False when it cannot tell (user_ids holds only the first 50).
 */
function applyReaction(m, emoji, userId, added) {
  const reactions = m.reactions || (m.reactions = []);
  const r = reactions.find((x) => x.emoji === emoji);
  const has = Boolean(r && r.user_ids.includes(userId));
  if (r && r.user_ids.length < r.count && !has) return false;
  if (added && !has) {
    if (r) Object.assign(r, { count: r.count + 1, user_ids: [...r.user_ids, userId] });
    else reactions.push({ emoji, count: 1, user_ids: [userId] });
  } else if (!added && has) {
    Object.assign(r, { count: r.count - 1, user_ids: r.user_ids.filter((id) => id !== userId) });
    if (r.count <= 0) m.reactions = reactions.filter((x) => x !== r);
  }
  return true;
}

function onReaction(frame) {
  const added = frame.type === 'reaction_added';
  const unsure = copiesOf(frame.conversation_id, frame.message_id)
    .filter((m) => !applyReaction(m, frame.emoji, frame.user_id, added));
  if (unsure.length) refetchMessage(frame.conversation_id, frame.message_id);
}

/** Loads one message again (its reactions could not be worked out from a frame). */
async function refetchMessage(conversationId, messageId) {
  try {
    const { messages } = await api('GET', `/api/conversations/${conversationId}/messages?after_id=${messageId - 1}&limit=1`);
    const fresh = messages.find((m) => m.id === messageId);
    if (fresh) copiesOf(conversationId, messageId).forEach((m) => Object.assign(m, fresh));
  } catch (err) { /* stays as it was */ }
  scheduleRender();
}

function onPin(frame) {
  const pinned = frame.type === 'message_pinned';
  copiesOf(frame.conversation_id, frame.message_id).forEach((m) => { m.pinned = pinned; });
  if (state.pins.has(frame.conversation_id)) loadPins(frame.conversation_id);
}

function onSettings(frame) {
  const conv = state.convs.get(frame.conversation_id);
  if (conv) Object.assign(conv, { notify: frame.notify, muted_until: frame.muted_until });
}

// ---------------------------------------------------------------- notifications

const canNotify = () => 'Notification' in window;

/** A desktop notification for a message from someone else while this tab is hidden. */
function notify(m, conv) {
  if (!canNotify() || Notification.permission !== 'granted' || !document.hidden || m.sender_id === state.me.id) return;
  if (!wantsNotification(state.convs.get(m.conversation_id) || conv, m)) return;
  const from = userName(m.sender_id);
  const title = conv.kind === 'group' ? `${from === '…' ? 'New message' : from} in ${conv.name}` : convName(conv);
  // One notification per conversation: a newer one replaces it (the tag).
  const n = new Notification(title, { body: messageSummary(m), tag: `sb-conv-${m.conversation_id}` });
  n.addEventListener('click', () => {
    window.focus();
    openConversation(m.conversation_id);
    n.close();
  });
}

/** The conversation's notification settings (notify, muted_until) let this message notify. */
function wantsNotification(conv, m) {
  if (mutedNow(conv) || conv.notify === 'none') return false;
  return conv.notify !== 'mentions' || (m.mentions || []).includes(state.me.id);
}

// "Until I unmute": the API has no such value, so a date no one lives to see.
const FOREVER = '9999-12-31T23:59:59Z';
const mutedNow = (conv) => Boolean(conv.muted_until && Date.parse(conv.muted_until) > Date.now());
/** Shown as muted in the list: muted for now, or set to notify of nothing. */
const quiet = (conv) => mutedNow(conv) || conv.notify === 'none';

$('enable-notifications').addEventListener('click', () => {
  // Asked only from this click: browsers (rightly) distrust prompts on page load.
  Notification.requestPermission().finally(() => scheduleRender());
});
$('notify-dismiss').addEventListener('click', () => {
  localStorage.setItem(NOTIFY_DISMISSED_KEY, '1');
  scheduleRender();
});

// ---------------------------------------------------------------- push notifications

// Web Push reaches this browser while no Switchboard tab is open: sw.js shows the
// notification. Opt-in per user and browser; the server's subscription id is kept under
// `pushKey()` while it is on.

const pushSupported = () => 'serviceWorker' in navigator && 'PushManager' in window && canNotify();

/** Rejects with a timeout error when `promise` has not settled within `ms`. */
const withTimeout = (promise, ms) => Promise.race([promise,
  new Promise((resolve, reject) => setTimeout(() => reject(apiError(0, 'timeout', 'This took too long, try again.')), ms))]);

/** base64url (padded or not) to bytes: how the server hands out its VAPID public key. */
function base64UrlBytes(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '=')), (c) => c.charCodeAt(0));
}

/** Whether `sub` was made with `key`; true when the browser does not say (nothing to compare). */
function sameServerKey(sub, key) {
  const own = sub.options && sub.options.applicationServerKey;
  if (!own) return true;
  const bytes = new Uint8Array(own);
  return bytes.length === key.length && bytes.every((b, i) => b === key[i]);
}

let workerRegistration = null; // promise of the registration, null where push is unsupported

/** Registers sw.js and brings this browser's subscription in line with the server. */
function startPush() {
  if (!pushSupported() || workerRegistration) return;
  workerRegistration = navigator.serviceWorker.register('/sw.js').catch((err) => {
    console.warn('service worker registration failed', err);
    return null;
  });
  syncPush();
}

/** The browser's current push subscription, if any; never throws. */
async function browserSubscription() {
  try {
    const registration = await navigator.serviceWorker.getRegistration('/');
    return registration ? await registration.pushManager.getSubscription() : null;
  } catch (err) {
    return null;
  }
}

/**
 * Subscribes this browser with the server's current key (reusing a subscription made with
 * it) and stores the subscription on the server. Resolves to the server's id for it.
 */
async function subscribePush() {
  if (!(await workerRegistration)) throw apiError(0, 'no_worker', 'Push notifications are unavailable right now.');
  // subscribe() needs an active worker, which a first registration takes a moment to get.
  const registration = await withTimeout(navigator.serviceWorker.ready, 10000);
  const { public_key: publicKey } = await api('GET', '/api/push/vapid-public-key');
  const applicationServerKey = base64UrlBytes(publicKey);
  let sub = await registration.pushManager.getSubscription();
  // A subscription made with a replaced key would be refused by the push service.
  if (sub && !sameServerKey(sub, applicationServerKey)) {
    await sub.unsubscribe();
    sub = null;
  }
  if (!sub) sub = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey });
  const { endpoint, keys } = sub.toJSON();
  // The same endpoint again is answered with its existing id: safe to repeat.
  const { id } = await api('POST', '/api/push/subscriptions', { endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } });
  return id;
}

function setPushId(id) {
  state.push.id = id;
  if (!state.me) return;
  if (id === null) localStorage.removeItem(pushKey()); else localStorage.setItem(pushKey(), String(id));
}

/**
 * On page load: browsers rotate subscriptions and the server's key can change, so the
 * server's record is refreshed from what this browser holds now. The toggle waits for it.
 */
async function syncPush() {
  const known = state.push.id;
  state.push.busy = true;
  scheduleRender();
  try {
    if (!known) {
      // Not opted in here: a subscription left by someone else (a logout that could not
      // finish) must not bring their pushes to this user.
      const stale = await browserSubscription();
      if (stale) await stale.unsubscribe();
    } else if (Notification.permission !== 'granted') {
      await dropPush(); // permission withdrawn in the browser's settings: nothing could show
    } else {
      const id = await subscribePush();
      // A new subscription replaced the old one: its record would only collect failures.
      if (id !== known) api('DELETE', `/api/push/subscriptions/${known}`).catch(() => {});
      if (state.push.id === known) setPushId(id);
    }
  } catch (err) {
    console.warn('push subscription not refreshed', err); // stays as it was: the next load tries again
  } finally {
    state.push.busy = false;
    scheduleRender();
  }
}

/** Turns push off here: the server forgets the subscription and the browser drops it. */
async function dropPush() {
  const id = state.push.id;
  setPushId(null);
  const sub = pushSupported() ? await browserSubscription() : null;
  // Either one alone stops the pushes; failures are ignored (a dead endpoint is pruned by
  // the server when its push service refuses it).
  await Promise.allSettled([id ? api('DELETE', `/api/push/subscriptions/${id}`) : null, sub ? sub.unsubscribe() : null]);
}

async function enablePush() {
  // Asked only from this click, like the banner's button.
  if (Notification.permission === 'default') await Notification.requestPermission();
  if (Notification.permission !== 'granted') return;
  try {
    setPushId(await subscribePush());
  } catch (err) {
    // Not stored on the server: a browser subscription alone would only mislead.
    const sub = await browserSubscription();
    if (sub) sub.unsubscribe().catch(() => {});
    throw err;
  }
}

// Turned on or off in another tab: the browser's subscription is shared, and so is its state.
window.addEventListener('storage', (event) => {
  if (!state.me || event.key !== pushKey()) return;
  state.push.id = Number(event.newValue) || null;
  scheduleRender();
});

$('push-toggle').addEventListener('click', async () => {
  if (state.push.busy) return;
  Object.assign(state.push, { busy: true, error: '' });
  scheduleRender();
  const turningOn = state.push.id === null;
  try {
    await (turningOn ? enablePush() : dropPush());
  } catch (err) {
    state.push.error = `Could not turn on push notifications: ${err.message || err.name}`;
  } finally {
    state.push.busy = false;
    scheduleRender();
  }
});

/** off, on, unsupported or denied: what the toggle shows (and its data-state says). */
function pushState() {
  if (!pushSupported()) return 'unsupported';
  if (Notification.permission === 'denied') return 'denied';
  return state.push.id !== null ? 'on' : 'off';
}

const PUSH_TEXT = {
  off: 'Get notified of new messages even when Switchboard is closed.',
  on: 'Push notifications on',
  denied: 'Notifications are blocked for this site. Allow them in your browser’s site settings to get push notifications.',
  unsupported: '',
};

function renderPush() {
  const status = pushState();
  const toggle = $('push-toggle');
  $('push-settings').hidden = status === 'unsupported';
  $('push-settings').dataset.state = status;
  toggle.dataset.state = status;
  toggle.hidden = status === 'unsupported' || status === 'denied';
  toggle.disabled = state.push.busy;
  toggle.setAttribute('aria-busy', String(state.push.busy));
  toggle.textContent = status === 'on' ? 'Turn off' : 'Enable push notifications';
  if (status === 'on') toggle.setAttribute('aria-label', 'Turn off push notifications'); else toggle.removeAttribute('aria-label');
  $('push-status').textContent = PUSH_TEXT[status];
  $('push-error').textContent = state.push.error;
}

// ---------------------------------------------------------------- opening from a notification

/** `#conversation=N`: how sw.js opens a conversation in a new window. */
function hashTarget() {
  const match = /^#conversation=(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
}

let pendingOpen = hashTarget(); // a conversation to open once the list has loaded

function openFromOutside(id) {
  pendingOpen = id;
  if (state.listLoaded) openPending();
}

async function openPending() {
  const id = pendingOpen;
  pendingOpen = null;
  // Consumed: a reload should not jump back to it.
  if (hashTarget() !== null) history.replaceState(null, '', location.pathname + location.search);
  if (!state.convs.has(id)) await refreshConv(id);
  if (state.convs.has(id)) openConversation(id);
}

window.addEventListener('hashchange', () => {
  const id = hashTarget();
  if (id !== null) openFromOutside(id);
});

// A notification clicked while this window was open: sw.js focuses it and says which chat.
if ('serviceWorker' in navigator) {
  navigator.serviceWorker.addEventListener('message', (event) => {
    const data = event.data;
    if (data && data.type === 'open-conversation' && Number.isInteger(data.conversation_id)) openFromOutside(data.conversation_id);
  });
}

// ---------------------------------------------------------------- state helpers

function receipts(conversationId) {
  let r = state.receipts.get(conversationId);
  if (!r) state.receipts.set(conversationId, (r = { delivered: 0, read: 0 }));
  return r;
}

/**
 * A conversation's loaded messages: one contiguous window of its history. `hasMore`: older
 * ones exist; `hasNewer`: the window ends before the latest (opened at a search hit or an
 * old unread), so live messages wait until the user scrolls down. `readMark`: the last
 * message read when the chat was opened; the "New messages" line goes after it.
 */
function convMsgs(conversationId) {
  let s = state.msgs.get(conversationId);
  if (!s) {
    s = { byId: new Map(), hasMore: true, hasNewer: false, loaded: false, loading: false, readMark: null };
    state.msgs.set(conversationId, s);
  }
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
  // Only chats whose history is (being) loaded keep messages, and only at the live end of
  // their window; the others load when opened or scrolled to, so paging stays simple.
  const s = state.msgs.get(m.conversation_id);
  if (s && (s.loaded || s.loading) && (!s.hasNewer || s.byId.has(m.id))) s.byId.set(m.id, m);
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
    // The list holds every message up to the hello: this device has them (delivered).
    scheduleAck();
    const reopen = Number(sessionStorage.getItem(OPEN_KEY));
    if (pendingOpen !== null) openPending();
    else if (reopen && state.convs.has(reopen) && !state.openId) openConversation(reopen);
  } catch (err) {
    if (err.status !== 401) setTimeout(loadConversations, 3000);
  }
  scheduleRender();
}

function loadPresence(userId) {
  if (!state.presence.has(userId)) state.presence.set(userId, { status: 'offline', last_seen: null }); // asked once
  api('GET', `/api/users/${userId}/presence`).then((p) => {
    state.presence.set(userId, { status: p.status, last_seen: p.last_seen });
    scheduleRender();
  }, () => {}); // the dot stays as it is until a presence frame
}

/** Presence frames were missed while our socket was down: ask again for the recent chats. */
function refreshPresence() {
  const direct = [...state.convs.values()].filter((conv) => conv.other_user);
  direct.sort((a, b) => (activity(b) > activity(a) ? 1 : -1)).slice(0, 30).forEach((conv) => loadPresence(conv.other_user.id));
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

/** Marks a bot, so nobody takes its answers for a person's. */
const botBadge = () => el('span', { class: 'bot-badge', testid: 'bot-badge', title: 'Bot' }, 'BOT');

const convName = (conv) => (conv.kind === 'group' ? conv.name : conv.other_user ? conv.other_user.display_name : 'Conversation');
const activity = (conv) => (conv.last_message ? conv.last_message.created_at : conv.created_at);
/** The tab title's count: what may notify. A muted or `none` conversation adds nothing, a
 * `mentions` one only its unread mentions. */
const unreadTotal = () => [...state.convs.values()].reduce((sum, conv) => {
  if (quiet(conv)) return sum;
  return sum + ((conv.notify === 'mentions' ? conv.unread_mentions : conv.unread_count) || 0);
}, 0);

/** Blocks, contacts and contact requests: no frames announce them, so they are fetched. */
async function loadSafety() {
  try {
    const [blocks, contacts, requests] = await Promise.all([
      api('GET', '/api/blocks'), api('GET', '/api/contacts'), api('GET', '/api/contacts/requests')]);
    state.blocked = new Set(blocks.blocks.map((b) => b.user.id));
    state.contacts = contacts.contacts;
    state.requests = requests;
    contacts.contacts.forEach(rememberUser);
  } catch (err) {
    $('contacts-error').textContent = err.status ? err.message : '';
  }
  scheduleRender();
}
// Coming back to the tab refreshes them, at most every 30 s.
let safetyLoadedAt = 0;
window.addEventListener('focus', () => {
  if (!state.me || Date.now() - safetyLoadedAt < 30000) return;
  safetyLoadedAt = Date.now();
  loadSafety();
});

// ---------------------------------------------------------------- opening a chat

/** Shows a conversation, a draft to `draftUser` (no conversation yet), or neither. */
function showChat(id, draftUser = null) {
  if (id !== state.openId) Object.assign(state, { infoOpen: false, pinsOpen: false, muteOpen: false, picker: null });
  if (state.replyTo && state.replyTo.conversationId !== id) state.replyTo = null;
  closeMentions();
  Object.assign(state, { openId: id, draftUser, selected: null, highlight: null });
  cancelEdit();
  if (id) sessionStorage.setItem(OPEN_KEY, String(id)); else sessionStorage.removeItem(OPEN_KEY);
  document.body.classList.toggle('chat-open', Boolean(id || draftUser)); // small screens
  closePanels();
  scheduleRender();
}

/**
 * Opens a conversation at `at` (a message, e.g. from search), else at its first unread
 * message with a "New messages" line above it, else at the bottom.
 */
async function openConversation(id, at = null) {
  const conv = state.convs.get(id);
  const s = convMsgs(id);
  if (id !== state.openId) s.readMark = conv && conv.unread_count > 0 ? conv.last_read_message_id || 0 : null;
  showChat(id);
  if (conv && conv.kind === 'group') loadMembers(id);
  if (at !== null) {
    state.highlight = at;
    if (!s.byId.has(at)) await loadAround(id, at);
    state.scrollTo = { message: at }; // and it flashes once (app.css), marked until another chat opens
  } else {
    if (!s.loaded || s.hasNewer) await loadLatest(id);
    if (s.readMark !== null && !unreadInWindow(s)) await loadAround(id, s.readMark + 1);
    state.scrollTo = s.readMark !== null ? { unread: true } : { bottom: true };
  }
  scheduleRender();
  if (!phone()) input.focus();
}

/** Whether the loaded window reaches back to the first unread message. */
function unreadInWindow(s) {
  if (!s.hasMore) return true;
  const ids = [...s.byId.keys()];
  return ids.length > 0 && Math.min(...ids) <= s.readMark;
}

async function openAt(conversationId, messageId) {
  if (!state.convs.has(conversationId)) await refreshConv(conversationId);
  if (state.convs.has(conversationId)) openConversation(conversationId, messageId);
}

function openDraft(user) {
  // A direct conversation exists at most once per pair: reuse it when we know it. When we
  // do not, sending by recipient_id still lands in it.
  const known = [...state.convs.values()].find((conv) => conv.other_user && conv.other_user.id === user.id);
  if (known) return openConversation(known.id);
  showChat(null, user);
  if (!phone()) input.focus();
}

const closeChat = () => showChat(null);

/** Runs one page request for a conversation's window, one at a time. */
async function page(id, load) {
  const s = convMsgs(id);
  if (s.loading) return;
  s.loading = true;
  try {
    await load(s, (query) => api('GET', `/api/conversations/${id}/messages${query}`));
    s.loaded = true;
  } catch (err) {
    showChatError(err.message);
  } finally {
    s.loading = false;
  }
  scheduleRender();
}

const keep = (s, messages) => messages.forEach((m) => s.byId.has(m.id) || s.byId.set(m.id, m));

/** The latest page, replacing the window. */
const loadLatest = (id) => page(id, async (s, get) => {
  const res = await get('');
  s.byId = new Map(res.messages.map((m) => [m.id, m]));
  Object.assign(s, { hasMore: res.has_more, hasNewer: false });
});

/** Messages around `messageId` (it included), replacing the window. */
const loadAround = (id, messageId) => page(id, async (s, get) => {
  const [older, newer] = await Promise.all([
    get(`?before_id=${messageId + 1}&limit=${AROUND}`), get(`?after_id=${messageId}&limit=${AROUND}`)]);
  s.byId = new Map([...older.messages, ...newer.messages].map((m) => [m.id, m]));
  Object.assign(s, { hasMore: older.has_more, hasNewer: newer.has_more });
});

const loadOlder = (id) => page(id, async (s, get) => {
  const ids = [...s.byId.keys()];
  const res = await get(ids.length ? `?before_id=${Math.min(...ids)}` : '');
  keep(s, res.messages);
  s.hasMore = res.has_more;
  scheduleRender({ keepFromBottom: true }); // the rows above must not push the view down
});

const loadNewer = (id) => page(id, async (s, get) => {
  const ids = [...s.byId.keys()];
  if (!ids.length) return;
  const res = await get(`?after_id=${Math.max(...ids)}`);
  keep(s, res.messages);
  s.hasNewer = res.has_more;
});

$('load-older').addEventListener('click', () => state.openId && loadOlder(state.openId));
// Scrolling to either end of the window loads the next page there.
$('scroller').addEventListener('scroll', () => {
  // A scroll event dispatched before a pending intent is drawn comes from the previous
  // layout (say, the last chat's rows cleared to the top), not from the reader.
  if (state.scrollTo) return;
  const s = state.openId && state.msgs.get(state.openId);
  const scroller = $('scroller');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
  if (s && s.loaded && !s.loading && s.hasMore && scroller.scrollTop < 40) loadOlder(state.openId);
  if (s && s.loaded && !s.loading && s.hasNewer && fromBottom < 40) loadNewer(state.openId);
  $('jump-latest').hidden = !(s && (s.hasNewer || fromBottom > scroller.clientHeight));
});

$('jump-latest').addEventListener('click', async () => {
  const id = state.openId;
  if (!id) return;
  if (convMsgs(id).hasNewer) await loadLatest(id);
  state.scrollTo = { bottom: true };
  scheduleRender();
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
    conv.unread_mentions = res.unread_mentions ?? (res.unread_count ? conv.unread_mentions : 0);
  } catch (err) {
    conv.last_read_message_id = Math.max(conv.last_read_message_id || 0, newest); // do not loop on errors
  } finally {
    readInFlight = false;
  }
  scheduleRender();
}
document.addEventListener('visibilitychange', () => scheduleRender());

// ---------------------------------------------------------------- groups: members

async function loadMembers(id) {
  try {
    const { members } = await api('GET', `/api/groups/${id}/members`);
    members.forEach((m) => {
      rememberUser(m.user);
      // Large groups carry no presence frames (presence.max_group_members): this read is
      // how their members' dots are known, refreshed whenever the group opens.
      if (m.presence && m.user.id !== state.me.id) {
        state.presence.set(m.user.id, { status: m.presence.status, last_seen: m.presence.last_seen });
      }
    });
    state.members.set(id, members);
  } catch (err) {
    if (err.status !== 404) $('info-error').textContent = err.message;
  }
  scheduleRender();
}

const myRole = (id) => state.members.get(id)?.find((m) => m.user.id === state.me.id)?.role || 'member';
const canManage = (id) => ['owner', 'admin'].includes(myRole(id));

/** A change to the member list; the list is fetched again whatever happened. */
async function memberAction(action) {
  const id = state.openId;
  $('info-error').textContent = '';
  try {
    await action(id);
  } catch (err) {
    $('info-error').textContent = err.message;
  }
  await loadMembers(id);
  refreshConv(id);
}

const addMember = (user) => memberAction((id) => api('POST', `/api/groups/${id}/members`, { user_id: user.id }));
const setRole = (user, role) => memberAction((id) => api('PATCH', `/api/groups/${id}/members/${user.id}`, { role }));
function removeMember(user) {
  if (!window.confirm(`Remove ${user.display_name} from the group?`)) return;
  memberAction((id) => api('DELETE', `/api/groups/${id}/members/${user.id}`));
}

$('leave-group').addEventListener('click', async () => {
  const id = state.openId;
  if (!id || !window.confirm('Leave this group? You will no longer get its messages.')) return;
  try {
    await api('DELETE', `/api/groups/${id}/members/${state.me.id}`);
    state.convs.delete(id);
    state.msgs.delete(id);
    closeChat();
  } catch (err) {
    $('info-error').textContent = err.message;
  }
});

// ---------------------------------------------------------------- blocks and contacts

/** Runs a blocks/contacts call, then fetches that state again. */
async function safetyAction(action, errorId) {
  $(errorId).textContent = '';
  try {
    await action();
  } catch (err) {
    $(errorId).textContent = err.message;
  }
  await loadSafety();
}

const infoUser = () => state.convs.get(state.openId)?.other_user || null;

function toggleBlock(user) {
  const blocked = state.blocked.has(user.id);
  if (!blocked && !window.confirm(`Block ${user.display_name}? They will not be able to message you.`)) return;
  safetyAction(() => (blocked ? api('DELETE', `/api/blocks/${user.id}`) : api('POST', '/api/blocks', { user_id: user.id })), 'info-error');
}

$('block-button').addEventListener('click', () => infoUser() && toggleBlock(infoUser()));
$('unblock-inline').addEventListener('click', () => infoUser() && toggleBlock(infoUser()));

/** Where the contact relation with `user` stands: contact, incoming, outgoing or none. */
function contactStatus(user) {
  if (state.contacts.some((c) => c.id === user.id)) return { kind: 'contact' };
  const incoming = state.requests.incoming.find((r) => r.status === 'pending' && r.from_user.id === user.id);
  if (incoming) return { kind: 'incoming', request: incoming };
  if (state.requests.outgoing.some((r) => r.status === 'pending' && r.to_user.id === user.id)) return { kind: 'outgoing' };
  return { kind: 'none' };
}

const requestContact = (user, errorId) => safetyAction(() => api('POST', '/api/contacts/requests', { user_id: user.id }), errorId);
const acceptContact = (request, errorId) => safetyAction(() => api('POST', `/api/contacts/requests/${request.id}/accept`), errorId);

$('contact-button').addEventListener('click', () => {
  const user = infoUser();
  if (!user) return;
  const status = contactStatus(user);
  if (status.kind === 'none') requestContact(user, 'info-error');
  else if (status.kind === 'incoming') acceptContact(status.request, 'info-error');
});

// ---------------------------------------------------------------- composer

const input = $('composer-input');

input.addEventListener('keydown', (event) => {
  if (state.mention && mentionKey(event)) return;
  if (event.key === 'Escape' && state.replyTo && !state.editing) return cancelReply();
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('composer').requestSubmit();
  } else if (event.key === 'Escape' && state.editing) {
    cancelEdit();
  }
});

let lastTypingSent = 0;
input.addEventListener('input', () => {
  fitComposer();
  updateMentions();
  // At most one typing frame per 2 s; the other side shows it for ~3 s.
  if (state.openId && !state.editing && input.value.trim() && Date.now() - lastTypingSent >= 2000) {
    lastTypingSent = Date.now();
    sendFrame({ type: 'typing', conversation_id: state.openId });
  }
});

/** The message box grows with its text, up to about eight lines. */
function fitComposer() {
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight + 2, 200)}px`;
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (state.editing) return saveEdit(text);
  const file = $('attach').files[0] || null;
  if ((!text && !file) || (!state.openId && !state.draftUser)) return;
  const recipientId = state.openId ? null : state.draftUser.id;
  const reply = state.replyTo && state.replyTo.conversationId === state.openId ? state.replyTo : null;
  const entry = { clientId: newClientId(), convId: state.openId, recipientId, text, file, status: 'sending',
    created_at: new Date().toISOString(), replyTo: reply };
  state.replyTo = null;
  closeMentions();
  // Opened at an older message: the sent one shows at the end of the latest page.
  const ready = state.openId && convMsgs(state.openId).hasNewer ? loadLatest(state.openId) : null;
  state.outbox.push(entry);
  input.value = '';
  fitComposer();
  clearAttachment();
  lastTypingSent = 0;
  state.scrollTo = { bottom: true };
  if (ready) ready.then(() => deliver(entry)); else deliver(entry);
});

/** A random client_id: the server stores a message once per (sender, client_id). */
function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Posts an outbox entry. Network failures keep it queued for `flushOutbox`. */
async function deliver(entry) {
  if (entry.inFlight) return; // never two posts of one entry at once
  entry.inFlight = true;
  entry.status = 'sending';
  scheduleRender();
  const target = entry.convId ? { conversation_id: entry.convId } : { recipient_id: entry.recipientId };
  const body = { ...target, message: entry.text, client_id: entry.clientId };
  if (entry.replyTo) body.reply_to_id = entry.replyTo.id;
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
    if (err.status === 0) {
      entry.status = 'queued'; // offline: sent again by itself once the socket is back
    } else if (err.status === 429 || err.status >= 500) {
      entry.status = 'failed'; // the same client_id makes a retry safe
      entry.error = err.message;
    } else {
      state.outbox = state.outbox.filter((e) => e !== entry);
      showChatError(err.message);
      if (!input.value) input.value = entry.text; // give the text back to fix it
    }
  } finally {
    entry.inFlight = false;
  }
  scheduleRender();
}

/** Sends what waited for the network again, in order, each with its own client_id. */
let flushing = false;
async function flushOutbox() {
  if (flushing) return;
  flushing = true;
  try {
    for (const entry of [...state.outbox]) {
      if (entry.status !== 'sending' && state.outbox.includes(entry)) await deliver(entry);
    }
  } finally {
    flushing = false;
  }
}

function discard(entry) {
  state.outbox = state.outbox.filter((e) => e !== entry);
  scheduleRender();
}

function startEdit(m) {
  state.editing = { id: m.id, conversationId: m.conversation_id };
  state.replyTo = null;
  input.value = m.message;
  fitComposer();
  $('edit-banner').hidden = false;
  $('send').textContent = 'Save';
  input.focus();
}

function cancelEdit() {
  if (!state.editing) return;
  state.editing = null;
  input.value = '';
  fitComposer();
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

// ---------------------------------------------------------------- reactions, replies, pins

const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'];
const reactedByMe = (m, emoji) => Boolean(m.reactions?.find((r) => r.emoji === emoji)?.user_ids.includes(state.me.id));

/** Adds (on) or removes my reaction; the answer holds the message's reactions as they are now. */
function react(m, emoji, on) {
  state.picker = null;
  guarded(async () => {
    const res = await api(on ? 'PUT' : 'DELETE', `/api/messages/${m.id}/reactions/${encodeURIComponent(emoji)}`);
    copiesOf(m.conversation_id, m.id).forEach((copy) => { copy.reactions = res.reactions; });
  });
}

function togglePicker(m) {
  state.picker = state.picker === m.id ? null : m.id;
  scheduleRender();
}

function startReply(m) {
  cancelEdit();
  state.picker = null;
  state.replyTo = { id: m.id, conversationId: m.conversation_id, sender_id: m.sender_id, message: messageSummary(m) };
  scheduleRender();
  input.focus();
}

function cancelReply() {
  state.replyTo = null;
  scheduleRender();
}
$('reply-cancel').addEventListener('click', () => { cancelReply(); input.focus(); });

/** Scrolls the open chat to a message (loading the page around it if needed) and flashes it. */
async function jumpTo(conversationId, messageId) {
  if (conversationId !== state.openId) return openAt(conversationId, messageId);
  if (!convMsgs(conversationId).byId.has(messageId)) await loadAround(conversationId, messageId);
  if (phone()) state.pinsOpen = false; // the panel covers the chat there
  Object.assign(state, { highlight: messageId, flashSeq: state.flashSeq + 1, scrollTo: { message: messageId } });
  scheduleRender();
}

/** Direct: either user pins. Group: owners and admins only. */
const canPin = (m, conv) => Boolean(conv) && !m.deleted && (conv.kind === 'direct' || canManage(conv.id));

function togglePin(m) {
  const on = !m.pinned;
  guarded(async () => {
    await api(on ? 'PUT' : 'DELETE', `/api/messages/${m.id}/pin`);
    copiesOf(m.conversation_id, m.id).forEach((copy) => { copy.pinned = on; });
    if (state.pins.has(m.conversation_id)) await loadPins(m.conversation_id);
  });
}

async function loadPins(id) {
  try {
    const { messages } = await api('GET', `/api/conversations/${id}/pins`);
    state.pins.set(id, messages);
  } catch (err) {
    showChatError(err.message);
  }
  scheduleRender();
}

$('pins-toggle').addEventListener('click', () => {
  state.pinsOpen = !state.pinsOpen;
  if (state.pinsOpen) {
    state.infoOpen = false;
    loadPins(state.openId);
  }
  scheduleRender();
});
$('pins-close').addEventListener('click', () => {
  state.pinsOpen = false;
  scheduleRender();
  $('pins-toggle').focus();
});

// ---------------------------------------------------------------- notification settings

$('mute-toggle').addEventListener('click', () => {
  state.muteOpen = !state.muteOpen;
  scheduleRender();
});

function saveSettings(body) {
  const id = state.openId;
  state.muteOpen = false;
  guarded(async () => onSettings(await api('PUT', `/api/conversations/${id}/settings`, body)));
}

const NOTIFY_CHOICES = [['all', 'All messages'], ['mentions', 'Mentions only'], ['none', 'Nothing']];
const MUTE_CHOICES = [['1h', 'For 1 hour', 3600e3], ['8h', 'For 8 hours', 8 * 3600e3], ['forever', 'Until I unmute', null]];

function muteUntil(choice) {
  const [, , ms] = MUTE_CHOICES.find(([key]) => key === choice);
  return ms === null ? FOREVER : new Date(Date.now() + ms).toISOString();
}

function muteText(conv) {
  if (!mutedNow(conv)) return 'Not muted';
  const until = new Date(conv.muted_until);
  if (until.getFullYear() > 9000) return 'Muted until you unmute';
  const now = new Date();
  const tomorrow = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  const day = sameDay(until, now) ? '' : sameDay(until, tomorrow) ? 'tomorrow ' : `${until.toLocaleDateString([], { day: 'numeric', month: 'short' })} `;
  return `Muted until ${day}${clock(until)}`;
}

let muteDrawn = '';
function renderMuteMenu(conv) {
  const muted = mutedNow(conv);
  $('mute-toggle').dataset.muted = String(quiet(conv));
  $('mute-toggle').setAttribute('aria-expanded', String(state.muteOpen));
  $('mute-menu').hidden = !state.muteOpen;
  const signature = JSON.stringify([conv.id, conv.notify, conv.muted_until, muteText(conv)]);
  if (signature === muteDrawn) return;
  muteDrawn = signature;
  $('notify-options').replaceChildren(...NOTIFY_CHOICES.map(([value, label]) => el('button', {
    type: 'button', class: 'menu-item', role: 'radio', 'aria-checked': String((conv.notify || 'all') === value),
    testid: 'notify-option', 'data-value': value, onclick: () => saveSettings({ notify: value }) }, label)));
  const choices = MUTE_CHOICES.map(([value, label]) => el('button', { type: 'button', class: 'menu-item', testid: 'mute-option',
    'data-value': value, onclick: () => saveSettings({ muted_until: muteUntil(value) }) }, label));
  if (muted) {
    choices.push(el('button', { type: 'button', class: 'menu-item', testid: 'mute-option', 'data-value': 'off',
      onclick: () => saveSettings({ muted_until: null }) }, 'Unmute'));
  }
  $('mute-options').replaceChildren(...choices);
  $('mute-state').textContent = muteText(conv);
}

// ---------------------------------------------------------------- away replies (user menu)

let userMenuOpen = false;

function setUserMenu(open) {
  userMenuOpen = open;
  $('user-menu').hidden = !open;
  $('user-menu-toggle').setAttribute('aria-expanded', String(open));
  if (open) loadAway();
}

$('user-menu-toggle').addEventListener('click', () => setUserMenu(!userMenuOpen));

let awayEdited = false; // typed into since the menu opened: a late load must not overwrite it
$('away-form').addEventListener('input', () => { awayEdited = true; });

/** The away setting and the bots that may write it, read afresh each time the menu opens. */
async function loadAway() {
  $('away-error').textContent = '';
  $('away-status').textContent = '';
  awayEdited = false;
  try {
    // Without the bot list the form still works with the fixed text.
    const [away, bots] = await Promise.all([api('GET', '/api/users/me/away'),
      api('GET', '/api/bots').then((r) => r.bots, () => [])]);
    showAway(away);
    if (awayEdited) return;
    $('away-bot').replaceChildren(el('option', { value: '' }, 'The message below'),
      ...bots.map((b) => el('option', { value: b.user.id }, `${b.user.display_name} (@${b.user.username})`)));
    $('away-enabled').checked = away.enabled;
    $('away-bot').value = away.assistant_bot_id === null ? '' : String(away.assistant_bot_id);
    $('away-message').value = away.message || '';
  } catch (err) {
    $('away-error').textContent = err.message;
  }
}

function showAway(away) {
  $('away-flag').hidden = !away.enabled;
}

$('away-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const bot = $('away-bot').value;
  const message = $('away-message').value.trim();
  const body = { enabled: $('away-enabled').checked, assistant_bot_id: bot ? Number(bot) : null, message: message || null };
  $('away-error').textContent = '';
  $('away-status').textContent = '';
  try {
    const away = await api('PUT', '/api/users/me/away', body);
    showAway(away);
    $('away-status').textContent = away.enabled ? 'Away replies are on.' : 'Away replies are off.';
  } catch (err) {
    $('away-error').textContent = err.message;
  }
});

// Menus and the emoji picker close on a click elsewhere and on Escape.
document.addEventListener('click', (event) => {
  if (userMenuOpen && !event.target.closest('.user-menu-wrap')) setUserMenu(false);
  if (state.muteOpen && !event.target.closest('.menu-wrap')) {
    state.muteOpen = false;
    scheduleRender();
  }
  if (state.picker !== null && !event.target.closest('.emoji-picker, [data-testid=react-button]')) {
    state.picker = null;
    scheduleRender();
  }
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && userMenuOpen) {
    setUserMenu(false);
    $('user-menu-toggle').focus();
    return;
  }
  if (event.key !== 'Escape' || (!state.muteOpen && state.picker === null)) return;
  if (state.muteOpen) $('mute-toggle').focus();
  Object.assign(state, { muteOpen: false, picker: null });
  scheduleRender();
});

// ---------------------------------------------------------------- @ completion

/** After each keystroke: an "@name" being typed in a group offers its members. */
function updateMentions() {
  const conv = state.openId && state.convs.get(state.openId);
  const before = input.value.slice(0, input.selectionStart);
  const match = conv && conv.kind === 'group' && input.selectionStart === input.selectionEnd
    && /(^|\s)@([A-Za-z0-9_.-]{0,32})$/.exec(before);
  if (!match) return closeMentions();
  const q = match[2].toLowerCase();
  const options = (state.members.get(conv.id) || []).map((x) => x.user).filter((u) => u.id !== state.me.id
    && (u.username.startsWith(q) || u.display_name.toLowerCase().split(/\s+/).some((w) => w.startsWith(q)))).slice(0, 6);
  if (!options.length) return closeMentions();
  const active = state.mention ? Math.min(state.mention.active, options.length - 1) : 0;
  state.mention = { start: before.length - match[2].length - 1, end: before.length, options, active };
  drawMentions();
}

function closeMentions() {
  if (!state.mention) return;
  state.mention = null;
  drawMentions();
}

function drawMentions() {
  const box = $('mention-list');
  box.hidden = !state.mention;
  input.setAttribute('aria-expanded', String(Boolean(state.mention)));
  if (!state.mention) return input.removeAttribute('aria-activedescendant');
  const { options, active } = state.mention;
  box.replaceChildren(...options.map((u, i) => {
    const item = el('li', { id: `mention-${u.id}`, role: 'option', class: 'mention-option', testid: 'mention-option',
      'data-username': u.username, 'aria-selected': String(i === active) }, personRow(u));
    item.addEventListener('mousedown', (event) => event.preventDefault()); // the box keeps the focus
    item.addEventListener('click', () => pickMention(i));
    return item;
  }));
  input.setAttribute('aria-activedescendant', `mention-${options[active].id}`);
}

function pickMention(i) {
  const { start, end, options } = state.mention;
  const insert = `@${options[i].username} `;
  input.value = input.value.slice(0, start) + insert + input.value.slice(end);
  input.setSelectionRange(start + insert.length, start + insert.length);
  closeMentions();
  fitComposer();
  input.focus();
}

/** Arrow keys, Enter, Tab and Escape while the member list is open; true when handled. */
function mentionKey(event) {
  const m = state.mention;
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    m.active = (m.active + (event.key === 'ArrowDown' ? 1 : m.options.length - 1)) % m.options.length;
    drawMentions();
  } else if ((event.key === 'Enter' && !event.isComposing) || event.key === 'Tab') {
    pickMention(m.active);
  } else if (event.key === 'Escape') {
    closeMentions();
  } else {
    return false;
  }
  event.preventDefault();
  return true;
}
input.addEventListener('click', updateMentions);
input.addEventListener('blur', closeMentions);

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

$('chat-info').addEventListener('click', () => {
  state.infoOpen = !state.infoOpen;
  if (state.infoOpen) state.pinsOpen = false;
  $('info-error').textContent = '';
  if (state.infoOpen && state.openId && state.convs.get(state.openId)?.kind === 'group') loadMembers(state.openId);
  scheduleRender();
});
$('info-close').addEventListener('click', () => {
  state.infoOpen = false;
  scheduleRender();
  $('chat-info').focus();
});

// A file picked: show it above the box and on the send button so the user knows it goes along.
$('attach').addEventListener('change', () => {
  const file = $('attach').files[0];
  $('attach-chip').hidden = !file;
  $('attach-name').textContent = file ? `${file.name} (${formatSize(file.size)})` : '';
  $('send').textContent = state.editing ? 'Save' : file ? 'Send file' : 'Send';
});

function clearAttachment() {
  $('attach').value = '';
  $('attach-chip').hidden = true;
  $('send').textContent = state.editing ? 'Save' : 'Send';
}
$('attach-clear').addEventListener('click', clearAttachment);

// ---------------------------------------------------------------- sidebar panels

const PANELS = ['new-chat', 'new-group', 'contacts'];
const closePanels = (except = null) => PANELS.forEach((button) => {
  $(`${button}-panel`).hidden = button !== except;
  $(button).setAttribute('aria-expanded', String(button === except));
});

function togglePanel(button, focusId) {
  closePanels($(`${button}-panel`).hidden ? button : null);
  if (!$(`${button}-panel`).hidden) $(focusId).focus();
}
$('new-chat').addEventListener('click', () => togglePanel('new-chat', 'user-search'));
$('new-group').addEventListener('click', () => togglePanel('new-group', 'group-name'));
$('contacts').addEventListener('click', () => {
  togglePanel('contacts', 'contact-search');
  if (!$('contacts-panel').hidden) loadSafety();
});

/** Debounced search box: `find(q)` runs for q of 2+ characters, `show` draws its answer. */
function debouncedSearch(inputId, find, show, empty) {
  let timer = null;
  let seq = 0; // only the newest search may draw
  $(inputId).addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = $(inputId).value.trim();
      const mine = ++seq;
      const result = q.length < 2 ? empty : await find(q).catch(() => empty);
      if (mine === seq) show(result, q);
    }, 250);
  });
}

/** A user search box; `show` draws the users found (never me). */
function searchBox(inputId, show) {
  debouncedSearch(inputId, (q) => api('GET', `/api/users/search?q=${encodeURIComponent(q)}&limit=20`), ({ users }) => {
    users.forEach(rememberUser);
    show(users.filter((u) => u.id !== state.me.id));
  }, { users: [] });
}

const userLabel = (u) => `${u.display_name} (@${u.username})`;

/** A person row: avatar, name and @username, then `extra` (buttons, a role). */
function personRow(user, ...extra) {
  return el('span', { class: 'person' }, avatar(user.display_name, user.id, 'small'),
    el('span', { class: 'person-text' }, el('span', { class: 'person-name' }, user.display_name),
      el('span', { class: 'person-handle' }, `@${user.username}`)),
    ...extra);
}

searchBox('user-search', (users) => {
  $('user-results').replaceChildren(...users.map((u) => el('li', {},
    el('button', { type: 'button', class: 'result', testid: 'user-result', 'data-username': u.username, 'aria-label': userLabel(u),
      onclick: () => { $('user-search').value = ''; $('user-results').replaceChildren(); openDraft(u); } },
    personRow(u)))));
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
    return el('li', { class: 'pick' }, box, el('label', { for: `pick-${u.id}` }, userLabel(u)));
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

searchBox('contact-search', (users) => {
  $('contact-results').replaceChildren(...users.map((u) => {
    const status = contactStatus(u).kind;
    const label = { contact: 'Contact', outgoing: 'Requested', incoming: 'Accept', none: 'Add' }[status];
    return el('li', { class: 'person-item' }, personRow(u, el('button', { type: 'button', class: 'small-btn', testid: 'contact-add',
      'data-username': u.username, disabled: status === 'contact' || status === 'outgoing',
      onclick: async () => {
        const { request } = contactStatus(u);
        await (request ? acceptContact(request, 'contacts-error') : requestContact(u, 'contacts-error'));
        $('contact-search').value = '';
        $('contact-results').replaceChildren();
      } }, label)));
  }));
});

searchBox('member-search', (users) => {
  const members = new Set((state.members.get(state.openId) || []).map((m) => m.user.id));
  $('member-results').replaceChildren(...users.filter((u) => !members.has(u.id)).map((u) => el('li', {},
    el('button', { type: 'button', class: 'result', testid: 'member-add-result', 'data-username': u.username,
      'aria-label': `Add ${userLabel(u)}`,
      onclick: () => { $('member-search').value = ''; $('member-results').replaceChildren(); addMember(u); } },
    personRow(u, el('span', { class: 'add-mark', 'aria-hidden': 'true' }, '+'))))));
});

// ---------------------------------------------------------------- message search

debouncedSearch('message-search',
  (q) => api('GET', `/api/messages/search?q=${encodeURIComponent(q)}&page_size=30`),
  (res, q) => {
    state.search = { q, results: res.messages, total: res.total, done: q.length >= 2 };
    scheduleRender();
  },
  { messages: [], total: 0 });

$('message-search').addEventListener('input', () => {
  // Emptied: back to the list at once, without waiting for the debounce.
  const q = $('message-search').value.trim();
  state.search = q.length < 2 ? { q: '', results: [], total: 0, done: false } : { ...state.search, q, done: false };
  scheduleRender();
});
$('message-search').addEventListener('keydown', (event) => {
  if (event.key !== 'Escape') return;
  $('message-search').value = '';
  $('message-search').dispatchEvent(new Event('input'));
});

// ---------------------------------------------------------------- text: links and highlights

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/** A URL's end without the punctuation that usually follows a link in prose. */
function trimUrl(raw) {
  let url = raw.replace(/[.,;:!?'"]+$/, '');
  // A closing bracket belongs to the link only when it opened one inside it.
  while (/[)\]}]$/.test(url)) {
    const close = url.slice(-1);
    const open = { ')': '(', ']': '[', '}': '{' }[close];
    if (url.split(open).length >= url.split(close).length) break;
    url = url.slice(0, -1).replace(/[.,;:!?'"]+$/, '');
  }
  return url;
}

const safeHref = (url) => {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch (err) {
    return null;
  }
};

/** Message text as text nodes, with http(s) URLs as links that open in a new tab. */
function linkify(text) {
  const parts = [];
  let at = 0;
  for (const match of text.matchAll(URL_RE)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (!href) continue;
    parts.push(text.slice(at, match.index),
      el('a', { href, rel: 'noopener noreferrer', target: '_blank', class: 'link', testid: 'message-link' }, url));
    at = match.index + url.length;
  }
  parts.push(text.slice(at));
  return parts.filter((part) => part !== '');
}

const MENTION_RE = /(^|[^A-Za-z0-9_.@-])@([A-Za-z0-9_.-]{3,32})/g;

/** Text parts (strings) with the @usernames of the message's mentions as marked spans. */
function mentionize(parts, m) {
  const names = new Map(); // lower-case username -> user id
  for (const id of m.mentions || []) {
    const user = state.users.get(id);
    if (user) names.set(user.username.toLowerCase(), id); else userName(id); // fetched, then drawn again
  }
  if (!names.size) return parts;
  return parts.flatMap((text) => {
    if (typeof text !== 'string') return [text];
    const out = [];
    let at = 0;
    for (const match of text.matchAll(MENTION_RE)) {
      let name = match[2];
      // "@bob." at the end of a sentence: the full stop is not part of the name.
      while (!names.has(name.toLowerCase()) && /[.-]$/.test(name)) name = name.slice(0, -1);
      const id = names.get(name.toLowerCase());
      if (id === undefined) continue;
      const start = match.index + match[1].length;
      const me = id === state.me.id;
      out.push(text.slice(at, start), el('span', { class: `mention${me ? ' me' : ''}`, testid: 'mention', 'data-user-id': id,
        'data-me': String(me) }, text.slice(start, start + name.length + 1)));
      at = start + name.length + 1;
    }
    out.push(text.slice(at));
    return out.filter((part) => part !== '');
  });
}

/** `text` with the words of `q` marked, as text nodes and <mark> elements. */
function highlighted(text, q) {
  const words = q.split(/\s+/).filter((w) => w.length > 1).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  if (!words.length) return [text];
  const re = new RegExp(`(${words.join('|')})`, 'gi');
  // Split with a capture group: the odd parts are the matches.
  return text.split(re).map((part, i) => (i % 2 === 1 ? el('mark', {}, part) : part)).filter((part) => part !== '');
}

// ---------------------------------------------------------------- time

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
const dayKey = (d) => `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
const clock = (d) => d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });

/** "Today", "Yesterday", a weekday this week, else a date. */
function dayLabel(d) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (sameDay(d, today)) return 'Today';
  if (sameDay(d, yesterday)) return 'Yesterday';
  if (today - d < 6 * 86400000) return d.toLocaleDateString([], { weekday: 'long' });
  const year = d.getFullYear() === today.getFullYear() ? undefined : 'numeric';
  return d.toLocaleDateString([], { weekday: 'short', day: 'numeric', month: 'long', year });
}

/** The conversation list's time: a clock today, a weekday this week, else a short date. */
function shortTime(iso) {
  const d = new Date(iso);
  const today = new Date();
  if (sameDay(d, today)) return clock(d);
  if (today - d < 6 * 86400000) return d.toLocaleDateString([], { weekday: 'short' });
  return d.toLocaleDateString([], { day: 'numeric', month: 'short' });
}

function lastSeen(p) {
  if (!state.connected) return 'connecting…';
  if (!p) return '';
  if (p.status === 'online') return 'online';
  if (!p.last_seen) return 'offline';
  const d = new Date(p.last_seen);
  return `last seen ${dayLabel(d).toLowerCase()} at ${clock(d)}`;
}

const canEdit = (m) => m.sender_id === state.me.id && !m.deleted && Date.now() - Date.parse(m.created_at) < EDIT_WINDOW_MS;

// ---------------------------------------------------------------- rendering

// Changes in one turn of the event loop are drawn once. Hint: keepFromBottom.
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
  const total = unreadTotal();
  document.title = total ? `(${total}) Switchboard` : 'Switchboard';
  renderBanner();
  renderPush();
  renderList();
  renderSearch();
  renderContacts();
  renderChat(hints);
  renderInfo();
  renderPins();
  // Redrawn lists replace their buttons: give keyboard focus back to the same item.
  if (focused && (!document.activeElement || document.activeElement === document.body)) {
    const again = document.querySelector(`[data-key="${focused}"]`);
    if (again) again.focus();
  }
  maybeMarkRead();
}

function renderBanner() {
  $('notify-banner').hidden = !canNotify() || Notification.permission !== 'default'
    || localStorage.getItem(NOTIFY_DISMISSED_KEY) === '1';
}

/** Initials on a colour picked from the id, so a person keeps their colour everywhere. */
function avatar(name, id, size = '', shape = '') {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] || '?'];
  const initials = letters.map((w) => Array.from(w)[0].toUpperCase()).join('');
  return el('span', { class: `avatar ${size} ${shape} c${Math.abs(id) % 8}`, 'aria-hidden': 'true' }, initials);
}

const presenceOf = (userId) => (state.connected ? state.presence.get(userId)?.status || 'offline' : 'unknown');

function presenceDot(userId, testid) {
  const status = presenceOf(userId);
  const label = status === 'unknown' ? 'presence unknown' : status;
  return el('span', { class: `dot ${status}`, role: 'img', 'aria-label': label, title: label, testid, 'data-status': status });
}

/** The avatar of a conversation: the other person with their presence, or the group. */
function convAvatar(conv, size = '', dotTestid = 'presence-dot') {
  if (!conv.other_user) return el('span', { class: 'avatar-wrap' }, avatar(conv.name || '#', conv.id, size, 'square'));
  return el('span', { class: 'avatar-wrap' }, avatar(conv.other_user.display_name, conv.other_user.id, size),
    presenceDot(conv.other_user.id, dotTestid));
}

/** A message in one line of plain text, for previews and notifications. */
function messageSummary(m) {
  if (m.deleted) return 'message deleted';
  if (!m.message && m.attachments.length) return `Attachment: ${m.attachments[0].filename}`;
  return m.message;
}

function preview(conv) {
  const m = conv.last_message;
  if (!m) return 'No messages yet';
  return (m.sender_id === state.me.id ? 'You: ' : '') + messageSummary(m);
}

/** In a group, who wrote the last message (outside the preview text itself). */
function previewSender(conv) {
  const m = conv.last_message;
  return conv.kind === 'group' && m && m.sender_id !== state.me.id && !m.deleted ? `${userName(m.sender_id)}: ` : '';
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
  drawKeyed($('conv-list'), convNodes, convs, (conv) => conv.id,
    (conv) => [convName(conv), preview(conv), previewSender(conv), shortTime(activity(conv)), conv.unread_count,
      conv.other_user ? presenceOf(conv.other_user.id) : null, conv.id === state.openId, conv.unread_mentions || 0, quiet(conv)],
    convItem);
}

function convItem(conv) {
  const name = convName(conv);
  const unread = conv.unread_count > 0
    ? el('span', { class: 'badge', testid: 'unread-badge', 'aria-label': `${conv.unread_count} unread` }, String(conv.unread_count))
    : null;
  const mentions = conv.unread_mentions || 0;
  const mention = mentions > 0
    ? el('span', { class: 'badge mention-badge', testid: 'mention-badge', 'data-count': mentions,
      'aria-label': `${mentions} unread mention${mentions === 1 ? '' : 's'}`, title: 'You were mentioned' }, '@')
    : null;
  const muted = quiet(conv);
  return el('li', {}, el('button', {
    type: 'button', class: `conv${unread ? ' has-unread' : ''}${muted ? ' quiet' : ''}`, testid: 'conv-item', 'data-key': `conv-${conv.id}`,
    'data-conversation-id': conv.id, 'data-name': name, 'aria-current': conv.id === state.openId ? 'true' : null,
    onclick: () => openConversation(conv.id),
  },
  convAvatar(conv),
  el('span', { class: 'conv-text' },
    el('span', { class: 'conv-top' },
      el('span', { class: 'conv-name', testid: 'conv-name' }, name),
      conv.other_user && conv.other_user.is_bot ? botBadge() : null,
      muted ? el('span', { class: 'muted-icon', testid: 'muted-icon', role: 'img', 'aria-label': 'Muted', title: 'Muted' }, icon(MUTED_ICON)) : null,
      el('time', { class: 'conv-time', datetime: activity(conv) }, shortTime(activity(conv)))),
    el('span', { class: 'conv-bottom' },
      el('span', { class: 'conv-line' }, previewSender(conv) ? el('span', { class: 'conv-sender' }, previewSender(conv)) : null,
        el('span', { class: 'conv-preview', testid: 'conv-preview' }, preview(conv))),
      mention, unread))));
}

const searchNodes = new Map();
function renderSearch() {
  const { q, results, total, done } = state.search;
  const active = q.length >= 2;
  $('search-pane').hidden = !active;
  $('chats-pane').hidden = active;
  if (!active) return;
  $('search-status').textContent = !done ? 'Searching…'
    : total === 0 ? `No messages match “${q}”.` : `${total} message${total === 1 ? '' : 's'} found`;
  drawKeyed($('search-results'), searchNodes, results, (m) => m.id,
    (m) => [q, m.message, state.convs.has(m.conversation_id), userName(m.sender_id)],
    (m) => searchItem(m, q));
}

function searchItem(m, q) {
  const conv = state.convs.get(m.conversation_id);
  const who = m.sender_id === state.me.id ? 'You' : userName(m.sender_id);
  return el('li', {}, el('button', {
    type: 'button', class: 'conv', testid: 'search-result', 'data-key': `search-${m.id}`,
    'data-message-id': m.id, 'data-conversation-id': m.conversation_id,
    onclick: () => openAt(m.conversation_id, m.id),
  },
  conv ? convAvatar(conv) : avatar(who, m.sender_id),
  el('span', { class: 'conv-text' },
    el('span', { class: 'conv-top' },
      el('span', { class: 'conv-name' }, conv ? convName(conv) : who),
      el('time', { class: 'conv-time', datetime: m.created_at }, shortTime(m.created_at))),
    el('span', { class: 'result-snippet' }, el('span', { class: 'conv-sender' }, `${who}: `), ...highlighted(m.message, q)))));
}

let contactsDrawn = '';
function renderContacts() {
  const pending = state.requests.incoming.filter((r) => r.status === 'pending');
  $('requests-badge').hidden = pending.length === 0;
  $('requests-badge').textContent = String(pending.length);
  const outgoing = state.requests.outgoing.filter((r) => r.status === 'pending');
  // Drawn again only when the data changed: keeps a click in progress.
  const signature = JSON.stringify([pending, outgoing, state.contacts]);
  if (signature === contactsDrawn) return;
  contactsDrawn = signature;
  $('request-list').replaceChildren(
    ...pending.map((r) => el('li', { class: 'person-item', testid: 'contact-request', 'data-username': r.from_user.username },
      personRow(r.from_user, el('button', { type: 'button', class: 'small-btn primary', testid: 'contact-accept',
        onclick: () => acceptContact(r, 'contacts-error') }, 'Accept')))),
    ...outgoing.map((r) => el('li', { class: 'person-item', testid: 'contact-outgoing', 'data-username': r.to_user.username },
      personRow(r.to_user, el('span', { class: 'chip' }, 'Sent')))));
  if (!pending.length && !outgoing.length) $('request-list').append(el('li', { class: 'muted none' }, 'No pending requests.'));
  $('contact-list').replaceChildren(...state.contacts.map((u) => el('li', {},
    el('button', { type: 'button', class: 'result', testid: 'contact-item', 'data-username': u.username,
      'aria-label': `Message ${userLabel(u)}`, onclick: () => openDraft(u) }, personRow(u)))));
  if (!state.contacts.length) $('contact-list').append(el('li', { class: 'muted none' }, 'No contacts yet.'));
}

function renderChat(hints) {
  const conv = state.openId ? state.convs.get(state.openId) : null;
  const draft = !conv && state.draftUser;
  $('chat-empty').hidden = Boolean(conv || draft);
  $('chat-view').hidden = !(conv || draft);
  if (!conv && !draft) return;
  renderChatHead(conv);
  const other = conv ? conv.other_user : state.draftUser;
  const blocked = Boolean(other && state.blocked.has(other.id));
  $('blocked-notice').hidden = !blocked;
  $('composer').hidden = blocked;
  if (blocked) $('blocked-text').textContent = `You blocked ${other.display_name}. Unblock them to send messages.`;
  const reply = conv && state.replyTo && state.replyTo.conversationId === conv.id ? state.replyTo : null;
  $('reply-bar').hidden = !reply;
  if (reply) {
    $('reply-who').textContent = `Replying to ${reply.sender_id === state.me.id ? 'yourself' : userName(reply.sender_id)}`;
    $('reply-snippet').textContent = reply.message;
  }

  const s = conv ? convMsgs(conv.id) : { byId: new Map(), hasMore: false, hasNewer: false, loaded: true, readMark: null };
  $('load-older').hidden = !(s.loaded && s.hasMore);
  const scroller = $('scroller');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
  const items = chatItems(conv, other, s);
  $('chat-none').hidden = items.length > 0 || !s.loaded;
  drawKeyed($('messages'), messageNodes, items, (item) => item.key, (item) => item.signature, (item) => item.build());
  const intent = state.scrollTo;
  if (intent && s.loaded && !s.loading) {
    state.scrollTo = null;
    scrollToIntent(intent);
  } else if (hints.keepFromBottom) {
    scroller.scrollTop = scroller.scrollHeight - fromBottom; // after "load older"
  } else if (atBottom && !s.hasNewer) {
    scroller.scrollTop = scroller.scrollHeight;
  }
  $('jump-latest').hidden = !(s.hasNewer || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight > scroller.clientHeight);
}

function renderChatHead(conv) {
  const other = conv ? conv.other_user : state.draftUser;
  $('chat-title').textContent = conv ? convName(conv) : `New conversation with ${state.draftUser.display_name}`;
  $('chat-presence').replaceChildren(conv ? convAvatar(conv, 'medium', 'chat-presence-dot')
    : el('span', { class: 'avatar-wrap' }, avatar(other.display_name, other.id, 'medium'), presenceDot(other.id, 'chat-presence-dot')));
  const typing = conv ? typingText(conv.id) : '';
  $('typing').textContent = typing;
  $('chat-subtitle').textContent = typing ? ''
    : other ? lastSeen(state.presence.get(other.id))
      : `${conv.members_count} member${conv.members_count === 1 ? '' : 's'}`;
  $('chat-info').hidden = !conv;
  $('chat-info').setAttribute('aria-expanded', String(state.infoOpen));
  $('pins-toggle').hidden = !conv;
  $('pins-toggle').setAttribute('aria-expanded', String(state.pinsOpen));
  $('mute-toggle').parentElement.hidden = !conv;
  if (conv) renderMuteMenu(conv);
}

function scrollToIntent(intent) {
  const scroller = $('scroller');
  let target = null;
  if (intent.message) target = $('messages').querySelector(`[data-message-id="${intent.message}"]`);
  if (intent.unread) target = $('messages').querySelector('[data-testid=new-messages]');
  if (!target) {
    scroller.scrollTop = scroller.scrollHeight;
  } else if (intent.message) {
    scroller.scrollTop = target.offsetTop - (scroller.clientHeight - target.offsetHeight) / 2;
  } else {
    scroller.scrollTop = target.offsetTop - 16;
  }
}

function typingText(conversationId) {
  const now = Date.now();
  const names = [...(state.typing.get(conversationId) || [])].filter(([, until]) => until > now).map(([id]) => userName(id));
  return names.length ? `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…` : '';
}

const messageNodes = new Map();

/**
 * The open chat's rows: day separators, the "New messages" line, messages and the sends
 * not confirmed yet. Each row has a key, a signature (redrawn when it changes) and `build`.
 */
function chatItems(conv, other, s) {
  const direct = conv ? conv.kind === 'direct' : true;
  const messages = [...s.byId.values()].sort((a, b) => a.id - b.id);
  const firstUnread = s.readMark === null ? null
    : messages.find((m) => m.id > s.readMark && m.sender_id !== state.me.id)?.id ?? null;
  const items = [];
  let prev = null;
  const daySeparator = (d) => {
    const label = dayLabel(d);
    items.push({ key: `day-${dayKey(d)}`, signature: label, build: () => el('li', { class: 'day-sep', testid: 'date-separator', 'data-day': dayKey(d) },
      el('span', {}, label)) });
  };
  for (const m of messages) {
    const at = new Date(m.created_at);
    const newDay = !prev || !sameDay(new Date(prev.created_at), at);
    if (newDay) daySeparator(at);
    if (m.id === firstUnread) {
      items.push({ key: 'new-messages', signature: '', build: () => el('li', { class: 'new-line', testid: 'new-messages', role: 'separator' },
        el('span', {}, 'New messages')) });
    }
    const first = newDay || m.id === firstUnread || prev.sender_id !== m.sender_id || at - new Date(prev.created_at) > RUN_GAP_MS;
    const view = messageView(m, conv, direct, first);
    items.push({ key: m.id, signature: view.signature, build: () => messageItem(m, view) });
    prev = m;
  }
  const peer = other ? other.id : null;
  const pending = state.outbox.filter((e) => (conv && e.convId === conv.id) || (peer !== null && !e.convId && e.recipientId === peer));
  if (pending.length && (!prev || !sameDay(new Date(prev.created_at), new Date()))) daySeparator(new Date());
  for (const entry of pending) {
    items.push({ key: `pending-${entry.clientId}`, signature: [entry.status, entry.error], build: () => pendingItem(entry) });
  }
  return items;
}

/** What a message row shows besides the message itself; its signature redraws the row. */
function messageView(m, conv, direct, first) {
  const own = m.sender_id === state.me.id;
  const tick = own && !m.deleted ? (direct ? directTick(conv, m) : groupTick(conv, m)) : null;
  const highlighted = state.highlight === m.id;
  const view = { own, direct, first, tick, editable: canEdit(m), highlighted,
    selected: state.selected === m.id, sender: !own && !direct ? userName(m.sender_id) : null,
    pinnable: canPin(m, conv), picker: state.picker === m.id,
    quoted: m.reply_to ? (m.reply_to.sender_id === state.me.id ? 'You' : userName(m.reply_to.sender_id)) : null,
    mentioned: (m.mentions || []).map((id) => state.users.get(id)?.username || null) };
  view.signature = [m.message, m.edited_at, m.deleted, view.tick, view.editable, highlighted && state.flashSeq, view.selected,
    view.sender, first, m.reactions, m.pinned, m.reply_to, m.auto_reply, view.quoted, view.mentioned, view.pinnable, view.picker];
  return view;
}

function directTick(conv, m) {
  const r = conv ? receipts(conv.id) : { delivered: 0, read: 0 };
  return { state: m.id <= r.read ? 'read' : m.id <= r.delivered ? 'delivered' : 'sent', readBy: null };
}

/** In a group: delivered once every other member has it, and how many read it. */
function groupTick(conv, m) {
  const others = (state.members.get(conv.id) || []).filter((x) => x.user.id !== state.me.id);
  const readBy = others.filter((x) => (x.last_read_message_id || 0) >= m.id).length;
  const delivered = others.length > 0 && others.every((x) => Math.max(x.last_delivered_message_id || 0, x.last_read_message_id || 0) >= m.id);
  const tickState = readBy > 0 && readBy === others.length ? 'read' : delivered ? 'delivered' : 'sent';
  return { state: tickState, readBy };
}

const TICKS = { read: ['✓✓', 'Read'], delivered: ['✓✓', 'Delivered'], sent: ['✓', 'Sent'] };

function messageItem(m, view) {
  const time = new Date(m.created_at);
  const meta = el('span', { class: 'meta' },
    m.auto_reply && !m.deleted ? el('span', { class: 'auto-reply', testid: 'auto-reply', title: m.auto_reply.bot_id
      ? `Written by ${userName(m.auto_reply.bot_id)} while ${userName(m.sender_id)} is away` : 'Sent automatically while away' }, 'auto-reply ') : null,
    m.edited_at && !m.deleted ? el('span', { class: 'edited', testid: 'edited' }, 'edited ') : null,
    el('time', { datetime: m.created_at, title: time.toLocaleString() }, clock(time)));
  if (view.tick) {
    const [mark, label] = TICKS[view.tick.state];
    meta.append(' ', el('span', { class: `tick ${view.tick.state}`, testid: 'tick', 'data-state': view.tick.state, 'aria-label': label, title: label }, mark));
    if (view.tick.readBy) meta.append(' ', el('span', { class: 'read-by', testid: 'read-by', 'data-count': view.tick.readBy }, `Read by ${view.tick.readBy}`));
  }
  const classes = ['msg', view.own ? 'own' : 'theirs', view.first ? 'first' : '', m.deleted ? 'deleted' : '',
    view.highlighted ? 'flash' : '', view.selected ? 'selected' : '', !view.direct && !view.own ? 'with-avatar' : '',
    view.picker ? 'picking' : '', m.pinned ? 'pinned' : '', (m.mentions || []).includes(state.me.id) ? 'mentions-me' : ''];
  const item = el('li', { class: classes.filter(Boolean).join(' '), testid: 'message', 'data-message-id': m.id,
    'data-own': String(view.own), 'data-deleted': String(m.deleted), 'data-highlighted': view.highlighted ? 'true' : null,
    'data-pinned': String(Boolean(m.pinned)) });
  if (view.sender !== null) item.append(view.first ? avatar(view.sender, m.sender_id, 'small') : el('span', { class: 'avatar-gap' }));
  const bubble = el('div', { class: 'bubble' });
  if (view.sender !== null && view.first) bubble.append(el('span', { class: `sender t${m.sender_id % 8}` }, view.sender));
  if (m.reply_to && !m.deleted) bubble.append(quoteNode(m, view.quoted));
  if (m.deleted) bubble.append(el('p', { class: 'text', testid: 'message-text' }, 'message deleted'));
  else if (m.message) bubble.append(el('p', { class: 'text', testid: 'message-text' }, ...mentionize(linkify(m.message), m)));
  if (!m.deleted) m.attachments.forEach((a) => bubble.append(attachmentNode(a)));
  if (!m.deleted && m.reactions && m.reactions.length) bubble.append(reactionsRow(m));
  if (m.pinned && !m.deleted) meta.prepend(el('span', { class: 'pin-mark', testid: 'pin-marker', role: 'img', 'aria-label': 'Pinned', title: 'Pinned' }, icon(PIN_ICON)), ' ');
  bubble.append(meta);
  item.append(bubble);
  const actions = messageActions(m, view);
  if (actions) {
    item.append(actions);
    // On touch screens (no hover) a tap on the bubble shows the actions.
    bubble.addEventListener('click', (event) => {
      if (!phone() || event.target.closest('a, button')) return;
      state.selected = state.selected === m.id ? null : m.id;
      scheduleRender();
    });
  }
  if (view.picker) item.append(emojiPicker(m));
  return item;
}

/** The quoted message above a reply's text; a click goes to it. */
function quoteNode(m, who) {
  const q = m.reply_to;
  return el('button', { type: 'button', class: 'quote', testid: 'reply-quote', 'data-reply-to': q.id,
    'aria-label': `Show the message from ${who} this replies to`, onclick: () => jumpTo(m.conversation_id, q.id) },
  el('span', { class: 'quote-who' }, who), el('span', { class: `quote-text${q.deleted ? ' gone' : ''}` }, q.deleted ? 'message deleted' : q.message));
}

/** Reaction chips with counts; mine are pressed, and a click toggles mine. */
function reactionsRow(m) {
  return el('div', { class: 'reactions', testid: 'reactions' }, ...m.reactions.map((r) => {
    const mine = r.user_ids.includes(state.me.id);
    const who = r.user_ids.map((id) => (id === state.me.id ? 'You' : userName(id))).join(', ');
    return el('button', { type: 'button', class: `reaction${mine ? ' mine' : ''}`, testid: 'reaction', 'data-emoji': r.emoji,
      'data-count': r.count, 'data-mine': String(mine), 'aria-pressed': String(mine), title: who,
      'aria-label': `${r.emoji} ${r.count}${mine ? ', yours' : ''}`, 'data-key': `reaction-${m.id}-${r.emoji}`,
      onclick: () => react(m, r.emoji, !mine) },
    el('span', { class: 'reaction-emoji', 'aria-hidden': 'true' }, r.emoji), el('span', { class: 'reaction-count' }, String(r.count)));
  }));
}

function emojiPicker(m) {
  return el('div', { class: 'emoji-picker', role: 'group', 'aria-label': 'React with', testid: 'emoji-picker' },
    ...EMOJI.map((emoji) => {
      const mine = reactedByMe(m, emoji);
      return el('button', { type: 'button', class: mine ? 'mine' : null, testid: 'emoji-option', 'data-emoji': emoji,
        'aria-pressed': String(mine), 'aria-label': `React with ${emoji}`, 'data-key': `emoji-${m.id}-${emoji}`,
        onclick: () => react(m, emoji, !mine) }, emoji);
    }));
}

/** The per-message toolbar; null when there is nothing to offer. */
function messageActions(m, view) {
  const buttons = [];
  if (!m.deleted) {
    buttons.push(el('button', { type: 'button', testid: 'react-button', 'data-key': `react-${m.id}`, 'aria-label': 'Add a reaction',
      'aria-expanded': String(view.picker), title: 'React', onclick: () => togglePicker(m) }, icon(SMILE_ICON)),
    el('button', { type: 'button', testid: 'reply-button', 'data-key': `reply-${m.id}`, 'aria-label': 'Reply to this message', onclick: () => startReply(m) }, 'Reply'));
  }
  if (view.pinnable) {
    buttons.push(el('button', { type: 'button', testid: 'pin-button', 'data-key': `pin-${m.id}`, 'data-pinned': String(Boolean(m.pinned)),
      'aria-label': m.pinned ? 'Unpin message' : 'Pin message', onclick: () => togglePin(m) }, m.pinned ? 'Unpin' : 'Pin'));
  }
  if (view.editable) {
    buttons.push(el('button', { type: 'button', testid: 'edit-button', 'data-key': `edit-${m.id}`, 'aria-label': 'Edit message', onclick: () => startEdit(m) }, 'Edit'));
  }
  if (view.own && !m.deleted) {
    buttons.push(el('button', { type: 'button', testid: 'delete-button', 'data-key': `delete-${m.id}`, 'aria-label': 'Delete message', onclick: () => deleteMessage(m) }, 'Delete'));
  }
  return buttons.length ? el('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions', testid: 'message-actions' }, ...buttons) : null;
}

/** A message not confirmed yet: sending, queued until the network is back, or failed. */
function pendingItem(entry) {
  const label = { sending: 'Sending…', queued: 'Waiting for network…', failed: `Not sent: ${entry.error}` }[entry.status];
  return el('li', { class: `msg own first pending ${entry.status}`, testid: 'pending-message', 'data-status': entry.status },
    el('div', { class: 'bubble' },
      entry.replyTo ? el('span', { class: 'quote' }, el('span', { class: 'quote-text' }, entry.replyTo.message)) : null,
      el('p', { class: 'text' }, entry.text || (entry.file ? `Attachment: ${entry.file.name}` : '')),
      el('span', { class: 'meta' }, el('span', { class: 'pending-state' }, label))),
    entry.status === 'sending' ? null : el('div', { class: 'msg-actions shown', role: 'toolbar', 'aria-label': 'Message actions', testid: 'message-actions' },
      el('button', { type: 'button', testid: 'retry-button', 'data-key': `retry-${entry.clientId}`, onclick: () => deliver(entry) }, 'Retry'),
      el('button', { type: 'button', testid: 'discard-button', 'data-key': `discard-${entry.clientId}`, onclick: () => discard(entry) }, 'Discard')));
}

// ---------------------------------------------------------------- details panel

const memberNodes = new Map();
let profileDrawn = ''; // the profile card is drawn again only when it changed
const ROLE_LABELS = { owner: 'Owner', admin: 'Admin', member: '' };

const pinNodes = new Map();
function renderPins() {
  const conv = state.openId ? state.convs.get(state.openId) : null;
  const open = Boolean(conv && state.pinsOpen);
  $('pins-panel').hidden = !open;
  if (!open) return;
  const pins = state.pins.get(conv.id);
  $('pins-empty').hidden = !pins || pins.length > 0;
  drawKeyed($('pins-list'), pinNodes, pins || [], (m) => m.id, (m) => [m.message, m.deleted, userName(m.sender_id)], (m) => el('li', {},
    el('button', { type: 'button', class: 'pin-item', testid: 'pinned-item', 'data-message-id': m.id, 'data-key': `pinned-${m.id}`,
      onclick: () => jumpTo(conv.id, m.id) },
    el('span', { class: 'pin-who' }, m.sender_id === state.me.id ? 'You' : userName(m.sender_id),
      el('time', { datetime: m.created_at }, ` · ${shortTime(m.created_at)}`)),
    el('span', { class: 'pin-text' }, messageSummary(m)))));
}

function renderInfo() {
  const conv = state.openId ? state.convs.get(state.openId) : null;
  const open = Boolean(conv && state.infoOpen);
  $('info-panel').hidden = !open;
  document.body.classList.toggle('info-open', open || Boolean(conv && state.pinsOpen));
  if (!open) return;
  const group = conv.kind === 'group';
  $('info-heading').textContent = group ? 'Group info' : 'Contact info';
  $('info-group').hidden = !group;
  $('info-direct').hidden = group;
  const profile = group
    ? [convAvatar(conv, 'large', 'info-presence-dot'), el('p', { class: 'profile-name' }, conv.name), el('p', { class: 'muted' }, `Group · ${conv.members_count} members`)]
    : [convAvatar(conv, 'large', 'info-presence-dot'), el('p', { class: 'profile-name' }, conv.other_user.display_name),
      el('p', { class: 'muted' }, `@${conv.other_user.username}`), el('p', { class: 'muted' }, lastSeen(state.presence.get(conv.other_user.id)))];
  const signature = JSON.stringify([conv.id, conv.members_count, group || lastSeen(state.presence.get(conv.other_user.id))]);
  if (signature !== profileDrawn) $('info-profile').replaceChildren(el('div', { class: 'profile-card' }, ...profile));
  profileDrawn = signature;
  if (group) renderMembers(conv); else renderDirectInfo(conv.other_user);
}

function renderDirectInfo(user) {
  const blocked = state.blocked.has(user.id);
  Object.assign($('block-button'), { textContent: blocked ? `Unblock ${user.display_name}` : `Block ${user.display_name}` });
  $('block-button').dataset.blocked = String(blocked);
  const status = contactStatus(user).kind;
  const label = { contact: '✓ In your contacts', outgoing: 'Contact request sent', incoming: 'Accept contact request', none: 'Add to contacts' }[status];
  Object.assign($('contact-button'), { textContent: label, disabled: status === 'contact' || status === 'outgoing' });
  $('contact-button').dataset.status = status;
}

function renderMembers(conv) {
  const members = state.members.get(conv.id) || [];
  const mine = myRole(conv.id);
  $('member-add').hidden = !canManage(conv.id);
  $('member-count').textContent = `${members.length} member${members.length === 1 ? '' : 's'}`;
  const order = { owner: 0, admin: 1, member: 2 };
  const sorted = [...members].sort((a, b) => order[a.role] - order[b.role] || a.user.display_name.localeCompare(b.user.display_name));
  drawKeyed($('member-list'), memberNodes, sorted, (m) => m.user.id,
    (m) => [m.role, mine, m.user.display_name, presenceOf(m.user.id)], (m) => memberItem(m, mine));
}

function memberItem(member, mine) {
  const { user, role } = member;
  const me = user.id === state.me.id;
  const buttons = [];
  if (!me && mine === 'owner' && role !== 'owner') {
    buttons.push(role === 'admin'
      ? el('button', { type: 'button', class: 'small-btn', testid: 'member-demote', 'data-key': `demote-${user.id}`, onclick: () => setRole(user, 'member') }, 'Remove admin')
      : el('button', { type: 'button', class: 'small-btn', testid: 'member-promote', 'data-key': `promote-${user.id}`, onclick: () => setRole(user, 'admin') }, 'Make admin'));
  }
  // Owners remove anyone else; admins remove plain members (the server has the last word).
  if (!me && (mine === 'owner' || (mine === 'admin' && role === 'member'))) {
    buttons.push(el('button', { type: 'button', class: 'small-btn danger', testid: 'member-remove', 'data-key': `remove-${user.id}`,
      'aria-label': `Remove ${user.display_name}`, onclick: () => removeMember(user) }, 'Remove'));
  }
  const chip = ROLE_LABELS[role] ? el('span', { class: `chip role-${role}`, testid: 'member-role' }, ROLE_LABELS[role]) : null;
  return el('li', { class: 'person-item', testid: 'member-item', 'data-username': user.username, 'data-role': role },
    personRow(user, chip, me ? el('span', { class: 'chip' }, 'You') : null),
    buttons.length ? el('span', { class: 'member-actions' }, ...buttons) : null);
}

// ---------------------------------------------------------------- attachments

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

const formatSize = (bytes) => (bytes < 1024 ? `${bytes} B` : bytes < 1048576 ? `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`
  : `${(bytes / 1048576).toFixed(1)} MB`);

/** A short type label for a file's icon, e.g. "PDF". */
const fileKind = (a) => (a.filename.includes('.') ? a.filename.split('.').pop().slice(0, 4).toUpperCase() : 'FILE');

function attachmentNode(a) {
  const link = el('a', { class: 'attachment', testid: 'attachment-link', href: '#', download: a.filename },
    el('span', { class: 'file-icon', 'aria-hidden': 'true' }, fileKind(a)),
    el('span', { class: 'file-name' }, a.filename), el('span', { class: 'file-size' }, formatSize(a.size)));
  link.setAttribute('aria-label', `Download ${a.filename} (${formatSize(a.size)})`);
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

boot();
