// Switchboard service worker: shows Web Push notifications and routes their clicks to the
// page. It caches nothing and has no fetch handler, so every request goes to the network
// exactly as without it.
'use strict';

// A new version takes over at once: the worker holds no state an old page could depend on.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

/** The push's JSON payload, or null when it is missing or not what we expect. */
function readPayload(data) {
  if (!data) return null;
  let payload = null;
  try {
    payload = data.json();
  } catch (err) {
    return null;
  }
  if (!payload || payload.type !== 'new_message' || !Number.isInteger(payload.conversation_id)) return null;
  return payload;
}

self.addEventListener('push', (event) => {
  const payload = readPayload(event.data);
  // A push must always show something: browsers penalize (or revoke) subscriptions whose
  // pushes show nothing, so an unreadable one still gets a generic notification. It shows
  // even when a Switchboard window is focused: one rule is easier to predict than many.
  if (!payload) {
    event.waitUntil(self.registration.showNotification('Switchboard', {
      body: 'New message', tag: 'sb-new-message', renotify: true, data: {},
    }));
    return;
  }
  const sender = payload.sender || {};
  const title = sender.display_name || sender.username || 'Switchboard';
  const body = typeof payload.preview === 'string' && payload.preview ? payload.preview : 'New message';
  // One notification per conversation (the same tag as the page's own): a newer message
  // replaces it, and renotify makes the replacement alert again.
  event.waitUntil(self.registration.showNotification(title, {
    body,
    tag: `sb-conv-${payload.conversation_id}`,
    renotify: true,
    data: { conversation_id: payload.conversation_id, message_id: payload.message_id },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const conversationId = Number.isInteger(data.conversation_id) ? data.conversation_id : null;
  event.waitUntil(openApp(conversationId));
});

/** Brings a Switchboard window forward at the conversation, opening one if there is none. */
async function openApp(conversationId) {
  // Uncontrolled windows count too: a page loaded before this worker activated is still ours.
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  // Only the app page (served at /) understands the message; other same-origin tabs (an
  // opened attachment, say) do not.
  const app = windows.filter((client) => new URL(client.url).pathname === '/');
  const target = app.find((client) => client.focused) || app.find((client) => client.visibilityState === 'visible') || app[0];
  if (!target) {
    // The page reads the hash once its conversation list has loaded.
    return self.clients.openWindow(conversationId === null ? '/' : `/#conversation=${conversationId}`);
  }
  try {
    await target.focus();
  } catch (err) {
    // Focus can be refused (no user activation left); the conversation still opens.
  }
  if (conversationId !== null) target.postMessage({ type: 'open-conversation', conversation_id: conversationId });
  return undefined;
}
