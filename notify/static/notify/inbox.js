/**
 * notify/inbox.js: the inbox page (template notify/inbox.html).
 *
 * Loads the newest items from the inbox API, then starts a NotifyClient from the newest
 * listed id so nothing between the two is missed. Live items go to the top of the list
 * (one <li data-id> per id, whatever reconnects replay), new unread ones also get a toast.
 * Every URL comes from the page: the API URLs from <script id="notify-config"> (rendered
 * by {% notify_client_config %}), the sign-in URL from #inbox's data-login-url.
 * The unread badge (#unread-badge) and the tab title follow the server's counts; the
 * connection indicator (#transport-status) shows the client's state and transport.
 *
 * For tests: the client is window.notifyClient (set once the first page is loaded);
 * #inbox gets data-loaded="true" at the same time.
 */
import { NotifyClient, resolveUrls } from "./client.js";

const CONFIG = JSON.parse(document.getElementById("notify-config").textContent);
const URLS = { ...resolveUrls(CONFIG.urls), list: CONFIG.urls.notifications, count: CONFIG.urls.unreadCount };
const PAGE_SIZE = 20;
const LEVELS = ["info", "success", "warning", "error"];
const TRANSPORT_LABELS = { websocket: "WebSocket", sse: "SSE", poll: "Long-poll" };
const TOAST_LIMIT = 4; // visible at once
const TOAST_BURST = 3; // more arrivals than this at once make one summary toast
const TOAST_MS = { info: 6000, success: 6000, warning: 9000, error: 12000 };
const TIME_REFRESH_MS = 60000;

const root = document.getElementById("inbox");
const listEl = document.getElementById("notification-list");
const badgeEl = document.getElementById("unread-badge");
const statusEl = document.getElementById("transport-status");
const markAllEl = document.getElementById("mark-all-read");
const moreEl = document.getElementById("load-more");
const emptyEl = document.getElementById("inbox-empty");
const errorEl = document.getElementById("inbox-error");
const toastsEl = document.getElementById("toasts");

const baseTitle = document.title.replace(/^\(\d+\)\s*/, "") || "Inbox · notify";
const items = new Map(); // id -> <li>
let nextBefore = null;
let loaded = false;
let generation = 0; // bumps on every full reload; stale "load more" answers are dropped
let arrivedDuringReload = null; // Map id -> notification while a reload is in flight
let unreadKnown = false;
let client = null;

// --- API ----------------------------------------------------------------------------

async function getJSON(url) {
  const response = await fetch(url, {
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = new Error((body && body.error && body.error.message) || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = body && body.error ? body.error.code : null;
    throw error;
  }
  return body;
}

function fetchPage(before) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (before !== null && before !== undefined) params.set("before", String(before));
  return getJSON(`${URLS.list}?${params}`);
}

// --- rendering ----------------------------------------------------------------------

function levelOf(notification) {
  return LEVELS.includes(notification.level) ? notification.level : "info";
}

/** Only http(s) links (relative ones resolve to this origin); never javascript: etc. */
function safeHref(url) {
  if (typeof url !== "string" || !url.trim()) return null;
  try {
    const resolved = new URL(url, window.location.href);
    return resolved.protocol === "http:" || resolved.protocol === "https:" ? resolved.href : null;
  } catch {
    return null;
  }
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absoluteFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function relativeTime(date) {
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return "just now";
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relativeFormat.format(Math.round(seconds / 3600), "hour");
  if (abs < 7 * 86400) return relativeFormat.format(Math.round(seconds / 86400), "day");
  return absoluteFormat.format(date);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function renderItem(notification) {
  const id = notification.id;
  const level = levelOf(notification);
  const li = element("li", "notification");
  li.dataset.id = String(id);
  li.dataset.level = level;
  li.dataset.kind = notification.kind || "";
  li.tabIndex = -1; // focus target after the last button in the list goes away

  const main = element("div", "notification__main");
  // Screen-reader prefixes sit before the heading, so its text is exactly the title.
  main.append(element("span", "visually-hidden notification__unread-label", "Unread"));
  if (level === "warning" || level === "error") {
    main.append(element("span", "visually-hidden", level === "error" ? "Error" : "Warning"));
  }
  const title = element("h2", "notification__title");
  title.id = `notification-${id}-title`;
  const href = safeHref(notification.url);
  if (href) {
    const link = element("a", "notification__link", notification.title);
    link.href = href;
    title.append(link);
  } else {
    title.append(document.createTextNode(notification.title || ""));
  }
  main.append(title);
  if (notification.body) main.append(element("p", "notification__body", notification.body));

  const meta = element("p", "notification__meta");
  if (notification.kind) meta.append(element("span", "notification__kind", notification.kind));
  const created = new Date(notification.created_at);
  if (!Number.isNaN(created.getTime())) {
    const time = element("time", "notification__time", relativeTime(created));
    time.dateTime = notification.created_at;
    time.title = absoluteFormat.format(created);
    meta.append(time);
  }
  main.append(meta);

  const actions = element("div", "notification__actions");
  const button = element("button", "btn btn--small mark-read", "Mark read");
  button.type = "button";
  button.setAttribute("aria-describedby", title.id);
  actions.append(button);

  const dot = element("span", `notification__dot notification__dot--${level}`);
  dot.setAttribute("aria-hidden", "true");
  li.append(dot, main, actions);
  setRead(li, notification.read === true);
  return li;
}

function setRead(li, read) {
  if (!li) return;
  li.classList.toggle("unread", !read);
  const button = li.querySelector(".mark-read");
  if (button) button.hidden = read;
  const label = li.querySelector(".notification__unread-label");
  if (label) label.hidden = read;
}

/** Keep the list newest first. Returns false when the item belongs to an unloaded page. */
function insertSorted(li, id) {
  for (const child of listEl.children) {
    if (Number(child.dataset.id) < id) {
      listEl.insertBefore(li, child);
      return true;
    }
  }
  if (nextBefore !== null && items.size > 0) return false; // "Load more" will bring it
  listEl.append(li);
  return true;
}

function updateChrome() {
  emptyEl.hidden = !loaded || items.size > 0;
  moreEl.hidden = nextBefore === null;
}

function setUnread(count) {
  if (!Number.isInteger(count) || count < 0) return;
  unreadKnown = true;
  badgeEl.textContent = String(count);
  badgeEl.dataset.count = String(count);
  badgeEl.classList.toggle("is-zero", count === 0);
  badgeEl.classList.remove("is-loading");
  document.title = count > 0 ? `(${count}) ${baseTitle}` : baseTitle;
}

function renderStatus({ state, transport }) {
  statusEl.dataset.state = state;
  statusEl.dataset.transport = transport || "";
  let text = "Offline";
  if (state === "open" || state === "fallback") text = `Live · ${TRANSPORT_LABELS[transport] || transport}`;
  else if (state === "connecting") text = "Connecting…";
  statusEl.textContent = text;
  statusEl.title =
    state === "fallback"
      ? "Connected without WebSocket; notifications still arrive."
      : state === "offline"
        ? "Not connected; retrying automatically."
        : "";
}

function showError(message, { retry = null, signIn = false } = {}) {
  errorEl.replaceChildren(element("span", "alert__text", message));
  if (signIn) {
    const link = element("a", "alert__action", "Sign in again");
    link.href = root.dataset.loginUrl;
    errorEl.append(" ", link);
  }
  if (retry) {
    const button = element("button", "btn btn--small alert__action", "Retry");
    button.type = "button";
    button.addEventListener("click", () => {
      clearError();
      retry();
    });
    errorEl.append(" ", button);
  }
  errorEl.hidden = false;
}

function clearError() {
  errorEl.hidden = true;
  errorEl.replaceChildren();
}

function refreshTimes() {
  for (const time of listEl.querySelectorAll("time[datetime]")) {
    const date = new Date(time.dateTime);
    if (!Number.isNaN(date.getTime())) time.textContent = relativeTime(date);
  }
}

// --- toasts -------------------------------------------------------------------------

let pendingToasts = [];
let toastFlush = null;

function queueToast(notification) {
  pendingToasts.push(notification);
  // Gather a burst (a replay after reconnecting) into one summary.
  if (!toastFlush) toastFlush = setTimeout(flushToasts, 150);
}

function flushToasts() {
  toastFlush = null;
  const batch = pendingToasts;
  pendingToasts = [];
  if (batch.length > TOAST_BURST) {
    const worst = batch.reduce((a, n) => Math.max(a, LEVELS.indexOf(levelOf(n))), 0);
    showToast({ id: null, level: LEVELS[worst], title: `${batch.length} new notifications`, body: "", url: "" });
  } else {
    batch.forEach(showToast);
  }
}

function showToast(notification) {
  const level = levelOf(notification);
  const toast = element("div", `toast toast--${level}`);
  toast.dataset.level = level;
  if (notification.id !== null && notification.id !== undefined) toast.dataset.id = String(notification.id);

  const content = element("div", "toast__content");
  const title = element("p", "toast__title");
  if (level === "warning" || level === "error") {
    title.append(element("span", "visually-hidden", `${level === "error" ? "Error" : "Warning"}: `));
  }
  const href = safeHref(notification.url);
  if (href) {
    const link = element("a", "", notification.title);
    link.href = href;
    title.append(link);
  } else {
    title.append(document.createTextNode(notification.title || ""));
  }
  content.append(title);
  if (notification.body) content.append(element("p", "toast__body", notification.body));

  const close = element("button", "toast__close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  toast.append(content, close);

  let timer = null;
  const dismiss = () => {
    clearTimeout(timer);
    toast.classList.add("is-leaving");
    setTimeout(() => toast.remove(), 200);
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(dismiss, TOAST_MS[level]);
  };
  close.addEventListener("click", dismiss);
  // Hold still while the user reads or tabs into it.
  toast.addEventListener("mouseenter", () => clearTimeout(timer));
  toast.addEventListener("mouseleave", arm);
  toast.addEventListener("focusin", () => clearTimeout(timer));
  toast.addEventListener("focusout", arm);
  arm();

  toastsEl.append(toast);
  while (toastsEl.children.length > TOAST_LIMIT) toastsEl.firstElementChild.remove();
}

// --- list loading -------------------------------------------------------------------

function addItems(notifications) {
  for (const notification of notifications || []) {
    if (!notification || items.has(notification.id)) continue;
    const li = renderItem(notification);
    items.set(notification.id, li);
    listEl.append(li); // API pages come newest first
  }
}

/** (Re)load the first page, replacing the list; keeps live arrivals that raced it. */
async function reloadList() {
  const mine = ++generation;
  arrivedDuringReload = new Map();
  listEl.setAttribute("aria-busy", "true");
  try {
    const page = await fetchPage(null);
    if (mine !== generation) return null;
    items.clear();
    listEl.replaceChildren();
    nextBefore = page.next_before ?? null;
    addItems(page.notifications);
    for (const notification of arrivedDuringReload.values()) placeLive(notification);
    loaded = true;
    root.dataset.loaded = "true";
    clearError();
    return page;
  } catch (error) {
    if (mine !== generation) return null;
    if (error.status === 401) showError("Your session has ended.", { signIn: true });
    else showError(`Could not load notifications (${error.message}).`, { retry: reloadList });
    throw error;
  } finally {
    if (mine === generation) {
      arrivedDuringReload = null;
      listEl.setAttribute("aria-busy", "false");
      updateChrome();
    }
  }
}

let loadingMore = false;

async function loadMore() {
  if (loadingMore || nextBefore === null) return;
  loadingMore = true;
  const mine = generation;
  moreEl.setAttribute("aria-busy", "true");
  moreEl.textContent = "Loading…";
  try {
    const page = await fetchPage(nextBefore);
    if (mine !== generation) return;
    const firstNew = (page.notifications || []).find((n) => n && !items.has(n.id));
    addItems(page.notifications);
    nextBefore = page.next_before ?? null;
    if (nextBefore === null && document.activeElement === moreEl && firstNew) {
      // The button is about to disappear: keep keyboard focus in the list.
      items.get(firstNew.id).focus();
    }
  } catch (error) {
    showError(`Could not load more (${error.message}).`, { retry: loadMore });
  } finally {
    loadingMore = false;
    moreEl.removeAttribute("aria-busy");
    moreEl.textContent = "Load more";
    updateChrome();
  }
}

// --- live updates -------------------------------------------------------------------

function placeLive(notification) {
  if (items.has(notification.id)) return false;
  const li = renderItem(notification);
  if (!insertSorted(li, notification.id)) return false;
  items.set(notification.id, li);
  return true;
}

function onNotification(notification) {
  if (!notification || items.has(notification.id)) return;
  if (arrivedDuringReload) arrivedDuringReload.set(notification.id, notification);
  if (placeLive(notification)) {
    const li = items.get(notification.id);
    li.classList.add("is-new");
    setTimeout(() => li.classList.remove("is-new"), 2000);
  }
  updateChrome();
  if (!notification.read && !notification.muted) queueToast(notification); // muted: listed, no toast
  if (client) client.ack(notification.id); // delivery receipt: shown
}

function onRead(change) {
  if (!change) return;
  if (change.all) {
    const cursor = Number.isInteger(change.cursor) ? change.cursor : null;
    for (const [id, li] of items) if (cursor === null || id <= cursor) setRead(li, true);
  } else {
    for (const id of change.ids || []) setRead(items.get(id), true);
  }
}

function onClientError(error) {
  if (error && error.status === 401) showError("Your session has ended.", { signIn: true });
}

// --- actions ------------------------------------------------------------------------

function focusAfter(li) {
  // The "Mark read" button that had focus is hidden now: move to the next one.
  const visible = (node) => node && node.querySelector(".mark-read:not([hidden])");
  let node = li.nextElementSibling;
  while (node && !visible(node)) node = node.nextElementSibling;
  if (!node) {
    node = li.previousElementSibling;
    while (node && !visible(node)) node = node.previousElementSibling;
  }
  (node ? visible(node) : markAllEl).focus();
}

async function markOne(li) {
  const id = Number(li.dataset.id);
  const hadFocus = li.contains(document.activeElement);
  setRead(li, true);
  if (hadFocus) focusAfter(li);
  if (!client) return;
  try {
    await client.markRead([id]);
  } catch (error) {
    setRead(li, false);
    showError(`Could not mark as read (${error.message}).`);
  }
}

async function markAll() {
  const wereUnread = [...listEl.querySelectorAll("li.unread")];
  wereUnread.forEach((li) => setRead(li, true));
  if (!client) return;
  try {
    await client.markAllRead();
  } catch (error) {
    wereUnread.forEach((li) => setRead(li, false));
    showError(`Could not mark all as read (${error.message}).`);
  }
}

listEl.addEventListener("click", (event) => {
  const button = event.target.closest(".mark-read");
  if (button && listEl.contains(button)) {
    markOne(button.closest("li"));
    return;
  }
  const link = event.target.closest("a");
  const li = link && link.closest("li.unread");
  if (li && client) {
    // Following an item's link reads it (sent before the page unloads).
    setRead(li, true);
    client.markRead([Number(li.dataset.id)]).catch(() => {});
  }
});
markAllEl.addEventListener("click", markAll);
moreEl.addEventListener("click", loadMore);

// --- boot ---------------------------------------------------------------------------

async function boot() {
  renderStatus({ state: "connecting", transport: null });
  getJSON(URLS.count)
    .then((data) => {
      if (!unreadKnown) setUnread(data.unread); // the client's hello may have been faster
    })
    .catch(() => {});

  let since;
  let listFailed = false;
  try {
    const page = await reloadList();
    const newest = page && page.notifications && page.notifications.length ? page.notifications[0].id : 0;
    since = Number.isInteger(newest) ? newest : undefined;
  } catch {
    listFailed = true; // start live from the first hello, then load the list after it
  }

  client = new NotifyClient({
    since,
    urls: URLS,
    heartbeatSeconds: Number(root.dataset.heartbeat) || undefined,
    onNotification,
    onRead,
    onReset: () => reloadList().catch(() => {}),
    onStatus: (status) => {
      renderStatus(status);
      if (listFailed && (status.state === "open" || status.state === "fallback")) {
        // Live now, so a list loaded from here on cannot miss anything.
        listFailed = false;
        reloadList().catch(() => {});
      }
    },
    onUnread: setUnread,
    onError: onClientError,
  });
  window.notifyClient = client;
  client.start();
  if (since) client.ack(since); // the first page is on screen
  setInterval(refreshTimes, TIME_REFRESH_MS);
}

boot();
