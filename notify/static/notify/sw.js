/**
 * notify/sw.js: the service worker that shows Web Push notifications (issue 14).
 *
 * Served by the app at <prefix>sw.js (scope <prefix>), registered by push.js from the
 * inbox page with ?inbox=<inbox path>. A push's payload is the notification object as
 * the long-poll lists it (id, title, body, url, kind, level, ...). The notification gets
 * the item's title and body and the tag "notify-<id>", so a repeated push replaces it.
 * A click fetches the item (its payload may have been cut to fit the push service's
 * size limit) and opens its url, else the inbox.
 */

const INBOX = new URL(self.location.href).searchParams.get("inbox") || "/";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let item = {};
  try {
    item = event.data ? event.data.json() : {};
  } catch {
    item = { title: event.data ? event.data.text() : "" };
  }
  const id = Number.isInteger(item.id) ? item.id : null;
  const title = typeof item.title === "string" && item.title ? item.title : "New notification";
  event.waitUntil(
    self.registration.showNotification(title, {
      body: typeof item.body === "string" ? item.body : "",
      tag: id === null ? "notify" : `notify-${id}`,
      data: { id, url: typeof item.url === "string" ? item.url : "" },
    }),
  );
});

async function fetchItem(id) {
  const api = new URL("api/notifications/", self.registration.scope);
  api.searchParams.set("before", String(id + 1));
  api.searchParams.set("limit", "1");
  try {
    const response = await fetch(api.href, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return null;
    const page = await response.json();
    const item = (page.notifications || [])[0];
    return item && item.id === id ? item : null;
  } catch {
    return null;
  }
}

function safeUrl(url) {
  try {
    const target = new URL(url || INBOX, self.location.origin);
    return target.protocol === "https:" || target.protocol === "http:" ? target.href : new URL(INBOX, self.location.origin).href;
  } catch {
    return new URL(INBOX, self.location.origin).href;
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  event.waitUntil(
    (async () => {
      const item = data.id === null || data.id === undefined ? null : await fetchItem(data.id);
      const target = safeUrl((item && item.url) || data.url);
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const client of windows) {
        if (client.url === target && "focus" in client) return client.focus();
      }
      return self.clients.openWindow(target);
    })(),
  );
});
