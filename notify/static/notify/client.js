/**
 * notify/client.js: the browser client for a user's notification stream.
 *
 * A dependency-free ES module. It keeps one live link to the server, picks the best
 * transport that works, resumes from the last id it saw and hands every item to the
 * page exactly once.
 *
 *   import { NotifyClient } from "{% static 'notify/client.js' %}";  // in a Django template
 *
 *   // The server names every URL: render {% notify_client_config %} (template tags
 *   // `notify_tags`) in the page, or pass the `urls` option.
 *   const client = new NotifyClient({
 *     onNotification(notification) {},   // each new item, once, oldest first (docs/protocol.md §1)
 *     onRead({ ids, all, cursor, unread }) {},  // items changed to read (here or elsewhere)
 *     onReset(cursor) {},                 // too much was missed: reload the list, then
 *                                         // the stream continues after `cursor`
 *     onStatus({ state, transport }) {},  // on every change of either
 *     onHello({ cursor, unread, heartbeat }) {},  // a WebSocket or SSE link said hello
 *   });
 *   client.start();
 *
 * Options (all optional):
 *   onNotification, onRead, onReset, onStatus, onHello  as above.
 *   onUnread(count)        the unread count changed: from `hello`, `read` frames, long-poll
 *                          answers, mark-read answers, and +1 for each new unread item.
 *   onError({ transport, status, code, message })  an HTTP error answer (e.g. 401 when
 *                          the session ended) or an `error` frame. The client keeps going.
 *   transports             preferred order, default ["websocket", "sse", "poll"]. The page
 *                          URL overrides it: ?transport=poll gives ["poll"],
 *                          ?transport=sse or ?nows=1 gives ["sse", "poll"].
 *   urls                   { websocket, stream, poll, read }: the paths (or absolute
 *                          URLs) of the server's routes. Default: the "urls" object of
 *                          the JSON in <script type="application/json" id="notify-config">,
 *                          which the template tag {% notify_client_config %} renders from
 *                          the server's URLconf. A URL missing from both is an Error.
 *   baseUrl                prefix for every URL, default "" (this origin). An absolute
 *                          http(s) URL also sets the ws(s) host.
 *   heartbeatSeconds       heartbeat assumed until a `hello` gives the real one (default 25).
 *   since                  the cursor to resume from (e.g. the newest id of a list the page
 *                          already shows). Default: none, i.e. live from the first hello.
 *   csrfToken              a string or a function returning one; default: the `csrftoken`
 *                          cookie, else a `csrfmiddlewaretoken` input on the page.
 *   climbSeconds           while in fallback, how often to try the preferred transport
 *                          again (default 180, with ±25% jitter).
 *   clientId               this device's id for delivery receipts (1-64 of A-Z a-z 0-9 _ . : -);
 *                          default: a random id kept in localStorage ("notify.clientId").
 *
 * Read-only properties:
 *   state       "connecting" (an attempt is under way), "open" (live on WebSocket),
 *               "fallback" (live on SSE or long-poll), "offline" (not started, stopped,
 *               waiting to retry, or the browser is offline).
 *   transport   "websocket", "sse", "poll", or null when offline.
 *   lastId      the cursor: the newest id seen, null until known.
 *   unread      the last known unread count, null until known.
 *   transports  the effective transport order (a copy).
 *
 * Methods:
 *   start()          connect; idempotent. Returns the client.
 *   stop()           close everything, state "offline". start() resumes from lastId.
 *   markRead(ids)    mark items read. Over the WebSocket when it is open ({"type": "read",
 *                    "ids": [...]}; the server answers with a `read` frame), otherwise
 *                    POST to the `read` URL with {"ids": [...]} and the
 *                    X-CSRFToken header. Resolves to { via: "websocket"|"http", unread };
 *                    rejects (Error with .status and .code) when the POST fails.
 *   markAllRead()    the same with {"type": "read_all"} or {"all": true}.
 *   ack(id)          delivery receipt: every item with id <= `id` has been shown. Acks are
 *                    coalesced (the highest id, at most one per ACK_DELAY_MS) and go over
 *                    the WebSocket ({"type": "ack", "id": id}) when it is open, otherwise
 *                    POST to the `ack` URL (default: beside `read`) with {"id", "client"}. Never rejects.
 *
 * Behaviour:
 *   - WebSocket at the `websocket` URL with ?since=<cursor>, offering subprotocol
 *     "notify.v1". Two failed opens in a row on a transport move to the next one: SSE
 *     (the `stream` URL), then long-poll (the `poll` URL). While in fallback the client
 *     tries the preferred transport again in the background every `climbSeconds`
 *     (sooner when the failures looked like a server outage rather than a blocked
 *     WebSocket) and switches over without a gap once it says hello.
 *   - Heartbeat: no frame on the WebSocket for two heartbeat periods means the link is
 *     dead; it is closed and reopened. (SSE `: ping` comments are invisible to
 *     EventSource, so an SSE link relies on the browser noticing the drop.)
 *   - Reconnects wait a full-jitter exponential backoff: random(0, min(30 s, 1 s * 2^n)),
 *     with n reset once a link has been live for 10 s.
 *   - Each item is delivered once: ids are remembered in a bounded Set and the cursor
 *     only moves forward. Every (re)connect resumes with since=lastId.
 *   - The browser's offline/online events pause and resume the client; coming back to a
 *     hidden tab retries at once (or checks a WebSocket with a ping).
 *   - Graceful drain (a server process is stopping): WebSocket close code 1012 with the
 *     reason {"reconnect_ms": n}, an SSE `reconnect` event with the same data, or a
 *     long-poll answer carrying "reconnect_ms". The client waits those n ms (the
 *     server's jitter, not its own backoff), reconnects on the same transport with its
 *     cursor, and shows "connecting", never "offline": for DRAIN_EPISODE_MS after the
 *     notice, a link that fails or ends (the stopping process may take a reconnect
 *     before it exits) retries with backoff on the same transport, without falling back.
 */

const DEFAULT_TRANSPORTS = ["websocket", "sse", "poll"];
const SUBPROTOCOL = "notify.v1";

const URL_NAMES = ["websocket", "stream", "poll", "read"];
const CONFIG_ELEMENT_ID = "notify-config";
const ACK_DELAY_MS = 300; // acks wait this long to coalesce (a burst is one ack)

const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 30000;
const HEALTHY_AFTER_MS = 10000; // a link live this long resets the backoff
const FAILED_OPENS_BEFORE_FALLBACK = 2;
const CONNECT_TIMEOUT_MS = 15000; // until the link is live (hello, or a first poll answer)
const PING_TIMEOUT_MS = 10000; // for our own ping when the tab wakes up
const DEFAULT_HEARTBEAT_S = 25;
const DEFAULT_CLIMB_S = 180;
const QUICK_CLIMB_MS = 2000; // climb back soon after what looked like an outage
const POLL_TIMEOUT_S = 25; // server-side hold, seconds
const POLL_GRACE_MS = 15000; // on top of the hold before we give up on a request
const POLL_MIN_CYCLE_MS = 1000; // never loop faster than this on empty answers
const SEEN_LIMIT = 2000; // ids remembered for de-duplication
const CLOSE_SERVICE_RESTART = 1012; // WebSocket close code of a draining server
const DRAIN_MAX_DELAY_MS = 60000; // the most a server may make us wait
const DRAIN_EPISODE_MS = 60000; // after a drain notice, lost links keep "connecting" this long

/**
 * Full-jitter exponential backoff.
 * @param {number} attempt 0 for the first retry.
 * @param {() => number} [random] a source in [0, 1).
 * @returns {number} milliseconds in [0, min(30000, 1000 * 2**attempt)).
 */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(Math.max(attempt, 0), 16));
  return Math.floor(random() * ceiling);
}

/**
 * The transport order to use: the page URL's wish, else the option, else the default;
 * unknown names and transports this browser lacks are dropped.
 * @param {string[]|undefined} requested the `transports` option.
 * @param {string} [search] a query string such as location.search.
 * @returns {string[]} never empty.
 */
export function resolveTransports(requested, search = "") {
  const params = new URLSearchParams(search);
  const wish = (params.get("transport") || "").toLowerCase();
  const nows = params.get("nows");
  let order;
  if (["poll", "long-poll", "longpoll"].includes(wish)) order = ["poll"];
  else if (wish === "sse") order = ["sse", "poll"];
  else if (wish === "websocket" || wish === "ws") order = DEFAULT_TRANSPORTS;
  else if (nows !== null && !["", "0", "false"].includes(nows)) order = ["sse", "poll"];
  else order = Array.isArray(requested) && requested.length ? requested : DEFAULT_TRANSPORTS;
  const supported = {
    websocket: typeof WebSocket === "function",
    sse: typeof EventSource === "function",
    poll: typeof fetch === "function",
  };
  const result = [...new Set(order.map((name) => String(name).toLowerCase()))].filter(
    (name) => supported[name],
  );
  return result.length ? result : ["poll"];
}

/**
 * The server's URLs for the client: the option, else the page's config element.
 * @param {object|undefined} given the `urls` option.
 * @param {Document|undefined} [doc] where to look for <script id="notify-config">.
 * @returns {{websocket: string, stream: string, poll: string, read: string, ack: string}}
 * @throws {Error} naming a URL found in neither place.
 */
export function resolveUrls(given, doc = typeof document === "undefined" ? undefined : document) {
  let fromPage = {};
  const element = doc && doc.getElementById(CONFIG_ELEMENT_ID);
  if (element) {
    try {
      fromPage = JSON.parse(element.textContent || "{}").urls || {};
    } catch {
      fromPage = {};
    }
  }
  const urls = {};
  for (const name of URL_NAMES) {
    const value = (given && given[name]) || fromPage[name];
    if (typeof value !== "string" || !value) {
      throw new Error(
        `NotifyClient: no "${name}" URL; render {% notify_client_config %} in the page or pass urls.${name}`,
      );
    }
    urls[name] = value;
  }
  // Delivery receipts: optional, next to read/ unless given.
  urls.ack = (given && given.ack) || fromPage.ack || urls.read.replace(/read\/?$/, "ack/");
  return urls;
}

export class NotifyClient {
  #on;
  #baseUrl;
  #urls;
  #transports;
  #heartbeatS;
  #csrfToken;
  #climbMs;
  #clientId;
  #acked = 0; // highest id acknowledged (sent or queued)
  #ackTimer = null;

  #state = "offline";
  #transport = null;
  #cursor = null;
  #unread = null;
  #countedThrough = null; // items with id <= this are already in #unread
  #seen = new Set();

  #running = false;
  #index = 0; // position in #transports of the transport in use
  #failures = 0; // consecutive failed opens on #transports[#index]
  #attempt = 0; // backoff exponent
  #link = null; // the link we live on (or are opening)
  #probe = null; // a link to a better transport, opened while in fallback
  #retryTimer = null;
  #climbTimer = null;
  #episode = null; // { fallbackFailed } between falling back and being live again
  #drainUntil = 0; // Date.now() before which failed opens belong to a server's drain
  #everLive = new Set(); // transports that have been live in this client's life
  #unlisten = null;

  /** @param {object} [options] see the comment at the top of this file. */
  constructor(options = {}) {
    const o = options || {};
    this.#on = {
      onNotification: o.onNotification,
      onRead: o.onRead,
      onReset: o.onReset,
      onStatus: o.onStatus,
      onHello: o.onHello,
      onUnread: o.onUnread,
      onError: o.onError,
    };
    this.#baseUrl = String(o.baseUrl ?? "").replace(/\/+$/, "");
    this.#urls = resolveUrls(o.urls);
    this.#transports = resolveTransports(o.transports, pageSearch());
    this.#heartbeatS = positiveNumber(o.heartbeatSeconds) ?? DEFAULT_HEARTBEAT_S;
    this.#csrfToken = o.csrfToken ?? null;
    this.#climbMs = (positiveNumber(o.climbSeconds) ?? DEFAULT_CLIMB_S) * 1000;
    this.#cursor = toId(o.since);
    this.#clientId = clientIdOf(o.clientId);
  }

  get state() {
    return this.#state;
  }

  get transport() {
    return this.#transport;
  }

  get lastId() {
    return this.#cursor;
  }

  get unread() {
    return this.#unread;
  }

  get transports() {
    return [...this.#transports];
  }

  /** Connect (idempotent). */
  start() {
    if (this.#running) return this;
    this.#running = true;
    this.#index = 0;
    this.#failures = 0;
    this.#attempt = 0;
    this.#episode = null;
    this.#listen();
    this.#connect();
    return this;
  }

  /** Close every link and timer; state becomes "offline". */
  stop() {
    if (!this.#running) return this;
    this.#running = false;
    if (this.#unlisten) this.#unlisten();
    this.#unlisten = null;
    this.#goOffline();
    return this;
  }

  /** Drop every link and timer and report "offline" (stop() and the browser going offline). */
  #goOffline() {
    this.#clearTimers();
    this.#drop(this.#probe);
    this.#drop(this.#link);
    this.#probe = null;
    this.#link = null;
    this.#setStatus("offline", null);
  }

  /**
   * Mark items read.
   * @param {number[]|number} ids
   * @returns {Promise<{via: string|null, unread: number|null}>}
   */
  markRead(ids) {
    const list = [...new Set((Array.isArray(ids) ? ids : [ids]).map(toId))].filter((id) => id !== null);
    if (!list.length) return Promise.resolve({ via: null, unread: this.#unread });
    return this.#sendRead({ type: "read", ids: list }, { ids: list });
  }

  /** Mark every item read. @returns {Promise<{via: string, unread: number|null}>} */
  markAllRead() {
    return this.#sendRead({ type: "read_all" }, { all: true });
  }

  /** Acknowledge that every item with id <= `id` was shown (delivery receipt). */
  ack(id) {
    const n = toId(id);
    if (n === null || n <= this.#acked) return;
    this.#acked = n;
    if (this.#ackTimer) return;
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = null;
      const link = this.#link;
      if (link && link.live && link.name === "websocket" && link.send({ type: "ack", id: this.#acked })) return;
      const headers = { "Content-Type": "application/json", Accept: "application/json" };
      const token = this.#csrf();
      if (token) headers["X-CSRFToken"] = token;
      fetch(this.#url(this.#urls.ack), {
        method: "POST",
        headers,
        body: JSON.stringify({ id: this.#acked, client: this.#clientId }),
        credentials: "same-origin",
        cache: "no-store",
      }).catch(() => {});
    }, ACK_DELAY_MS);
  }

  // --- connection management -------------------------------------------------------

  #connect() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (!this.#running) return;
    this.#drop(this.#link);
    this.#link = null;
    if (browserOffline()) {
      // Wait for the "online" event; look again now and then in case it never comes.
      this.#setStatus("offline", null);
      this.#retryTimer = setTimeout(() => this.#connect(), BACKOFF_CAP_MS);
      return;
    }
    const name = this.#transports[this.#index];
    this.#setStatus("connecting", name);
    this.#link = this.#open(name, "main");
  }

  #open(name, role) {
    const link = {
      name,
      role,
      live: false,
      closed: false,
      liveAt: 0,
      watchdog: null,
      teardown() {},
      send() {
        return false;
      },
      ping() {},
    };
    try {
      if (name === "websocket") this.#openWebSocket(link);
      else if (name === "sse") this.#openEventSource(link);
      else this.#openPoll(link);
    } catch (error) {
      // A constructor threw (bad URL, CSP): fail like a network error, asynchronously.
      setTimeout(() => this.#closed(link, {}), 0);
    }
    return link;
  }

  #openWebSocket(link) {
    const url = new URL(this.#url(this.#urls.websocket, { ...this.#sinceParams(), client: this.#clientId }));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.href, [SUBPROTOCOL]);
    link.teardown = () => {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      // 0 CONNECTING, 1 OPEN: close without waiting for the closing handshake.
      if (ws.readyState === 0 || ws.readyState === 1) {
        try {
          ws.close(1000);
        } catch {
          // already closing
        }
      }
    };
    link.send = (frame) => {
      if (ws.readyState !== 1) return false;
      ws.send(JSON.stringify(frame));
      return true;
    };
    link.ping = () => {
      if (link.send({ type: "ping" })) this.#arm(link, PING_TIMEOUT_MS); // the pong re-arms
    };
    this.#arm(link, CONNECT_TIMEOUT_MS);
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        let frame = null;
        try {
          frame = JSON.parse(event.data);
        } catch {
          // not ours; ignore
        }
        this.#frame(link, frame);
      }
      // Any frame proves the link alive (the server pings after `heartbeat` s of silence).
      if (!link.closed) this.#arm(link, link.live ? this.#deadAfterMs() : CONNECT_TIMEOUT_MS);
    };
    ws.onclose = (event) =>
      this.#closed(link, {
        code: event.code,
        reconnectMs: event.code === CLOSE_SERVICE_RESTART ? drainDelay(parseJson(event.reason), true) : null,
      });
  }

  #openEventSource(link) {
    const source = new EventSource(this.#url(this.#urls.stream, this.#sinceParams()));
    // We reconnect ourselves (with backoff, the current cursor and transport fallback)
    // rather than let EventSource retry on its own.
    link.teardown = () => {
      source.onerror = null;
      source.close();
    };
    this.#arm(link, CONNECT_TIMEOUT_MS);
    const on = (type, toFrame) =>
      source.addEventListener(type, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.#frame(link, toFrame(data));
        // `: ping` comments fire no event, so there is no heartbeat to watch once live.
        if (link.live) clearTimeout(link.watchdog);
      });
    on("hello", (data) => ({ ...data, type: "hello" }));
    on("notification", (data) => ({
      type: "notification",
      notification: data && data.id === undefined && data.notification ? data.notification : data,
    }));
    on("read", (data) => ({ ...data, type: "read" }));
    on("reset", (data) => ({ ...data, type: "reset" }));
    source.addEventListener("reconnect", (event) => {
      this.#closed(link, { reconnectMs: drainDelay(parseJson(event.data), true) });
    });
    source.onerror = () => this.#closed(link, {});
  }

  #openPoll(link) {
    let controller = null;
    let timer = null;
    link.teardown = () => {
      clearTimeout(timer);
      if (controller) controller.abort();
    };
    const loop = async () => {
      let first = true;
      while (!link.closed) {
        const since = this.#cursor;
        // Without a cursor the server answers at once with the current one. With one,
        // the first request does not wait either, so the link is live (and the unread
        // count known) straight away.
        const timeout = first ? 0 : POLL_TIMEOUT_S;
        const params = since === null ? {} : { since, timeout };
        const started = Date.now();
        let body;
        controller = new AbortController();
        const abort = controller.abort.bind(controller);
        const requestTimer = setTimeout(abort, timeout * 1000 + POLL_GRACE_MS);
        try {
          const response = await fetch(this.#url(this.#urls.poll, params), {
            credentials: "same-origin",
            cache: "no-store",
            headers: { Accept: "application/json" },
            signal: controller.signal,
          });
          if (!response.ok) {
            this.#closed(link, await httpFailure(response, "poll"));
            return;
          }
          body = await response.json();
        } catch {
          this.#closed(link, {});
          return;
        } finally {
          clearTimeout(requestTimer);
        }
        if (link.closed) return;
        this.#pollAnswer(link, body);
        const drained = drainDelay(body, false);
        if (drained !== null) {
          this.#closed(link, { reconnectMs: drained });
          return;
        }
        first = false;
        const empty = !(body && Array.isArray(body.notifications) && body.notifications.length);
        const waited = since !== null && timeout > 0;
        if (empty && waited && Date.now() - started < POLL_MIN_CYCLE_MS) {
          // A proxy that ignores `timeout` must not turn this into a busy loop.
          await new Promise((resolve) => {
            timer = setTimeout(resolve, POLL_MIN_CYCLE_MS);
          });
        }
      }
    };
    loop();
  }

  #pollAnswer(link, body) {
    if (!body || typeof body !== "object") return;
    const items = Array.isArray(body.notifications) ? body.notifications : [];
    // The answer's `unread` already counts the items it carries.
    for (const notification of items) this.#deliver(notification, true);
    const cursor = toId(body.cursor);
    if (cursor !== null && (this.#cursor === null || cursor > this.#cursor)) this.#cursor = cursor;
    this.#setUnread(body.unread, this.#cursor);
    this.#live(link);
  }

  /** Handle one frame from any link (WebSocket frames; SSE events shaped like them). */
  #frame(link, frame) {
    if (link.closed || !frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "hello": {
        const heartbeat = positiveNumber(frame.heartbeat);
        if (heartbeat) this.#heartbeatS = heartbeat;
        const cursor = toId(frame.cursor);
        let behind = false;
        if (cursor !== null) {
          if (this.#cursor === null) {
            this.#cursor = cursor;
          } else if (cursor < this.#cursor) {
            // The stream is behind our cursor (another user signed in, or the data was
            // replaced): start over from the server's cursor.
            this.#cursor = cursor;
            this.#seen.clear();
            behind = true;
          }
        }
        this.#setUnread(frame.unread, cursor);
        this.#emit("onHello", { cursor, unread: frame.unread, heartbeat: frame.heartbeat });
        if (behind) this.#emit("onReset", cursor);
        this.#live(link);
        break;
      }
      case "notification": {
        const id = toId(frame.notification && frame.notification.id);
        const counted = id !== null && this.#countedThrough !== null && id <= this.#countedThrough;
        this.#deliver(frame.notification, counted);
        break;
      }
      case "read": {
        this.#setUnread(frame.unread);
        const { type, ...change } = frame;
        this.#emit("onRead", change);
        break;
      }
      case "reset": {
        const cursor = toId(frame.cursor);
        if (cursor === null) break;
        this.#cursor = cursor;
        if (this.#countedThrough === null || cursor > this.#countedThrough) this.#countedThrough = cursor;
        this.#emit("onReset", cursor);
        break;
      }
      case "error":
        this.#emit("onError", { transport: link.name, status: null, code: frame.code, message: frame.message });
        break;
      default:
        // "ping", "pong", and anything newer than this client: nothing to do.
        break;
    }
  }

  #deliver(notification, counted) {
    if (!notification || typeof notification !== "object") return;
    const id = toId(notification.id);
    if (id === null || this.#seen.has(id)) return;
    this.#seen.add(id);
    if (this.#seen.size > SEEN_LIMIT) this.#seen.delete(this.#seen.values().next().value);
    if (this.#cursor === null || id > this.#cursor) this.#cursor = id;
    if (!counted && notification.read !== true && this.#unread !== null) this.#setUnread(this.#unread + 1);
    this.#emit("onNotification", notification);
  }

  /** A link said hello (or answered its first poll): it is live. */
  #live(link) {
    if (link.closed || link.live) return;
    link.live = true;
    link.liveAt = Date.now();
    this.#everLive.add(link.name);
    if (link.role === "probe") {
      // Climbed back: the better transport takes over; the old link goes.
      this.#probe = null;
      const previous = this.#link;
      link.role = "main";
      this.#link = link;
      this.#drop(previous);
    }
    if (link !== this.#link) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#failures = 0;
    this.#index = Math.max(0, this.#transports.indexOf(link.name));
    const quick =
      this.#index > 0 &&
      Boolean((this.#episode && this.#episode.fallbackFailed) || this.#everLive.has(this.#transports[0]));
    this.#episode = null;
    this.#setStatus(link.name === "websocket" ? "open" : "fallback", link.name);
    this.#scheduleClimb(quick);
  }

  /** A link ended (closed, failed, timed out). */
  #closed(link, info) {
    if (link.closed) return;
    this.#drop(link);
    if (info && info.status) {
      this.#emit("onError", { transport: link.name, status: info.status, code: info.code, message: info.message });
    }
    if (link.role === "probe") {
      if (this.#probe === link) this.#probe = null;
      this.#climbFailed(link);
      return;
    }
    if (link !== this.#link) return;
    this.#link = null;
    if (!this.#running) return;
    clearTimeout(this.#climbTimer);
    this.#climbTimer = null;
    if (info && info.reconnectMs !== null && info.reconnectMs !== undefined) {
      // The server is draining: come back after its delay, same transport, no backoff.
      this.#failures = 0;
      this.#drainUntil = Date.now() + info.reconnectMs + DRAIN_EPISODE_MS;
      this.#setStatus("connecting", link.name);
      this.#retryTimer = setTimeout(() => this.#connect(), info.reconnectMs);
      return;
    }
    const draining = Date.now() < this.#drainUntil;
    if (link.live) {
      this.#failures = 0;
      if (Date.now() - link.liveAt >= HEALTHY_AFTER_MS) this.#attempt = 0;
    } else if (draining) {
      // The old process is gone and the next one may not be up yet: retry, do not fall back.
    } else {
      this.#failures += 1;
      if (this.#index > 0 && this.#episode) this.#episode.fallbackFailed = true;
      if (this.#failures >= FAILED_OPENS_BEFORE_FALLBACK && this.#index < this.#transports.length - 1) {
        this.#index += 1;
        this.#failures = 0;
        if (!this.#episode) this.#episode = { fallbackFailed: false };
      }
    }
    const delay = Math.max(backoffDelay(this.#attempt), (info && info.retryAfterMs) || 0);
    this.#attempt += 1;
    if (draining) this.#setStatus("connecting", this.#transports[this.#index]);
    else this.#setStatus("offline", null);
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #scheduleClimb(quick) {
    clearTimeout(this.#climbTimer);
    this.#climbTimer = null;
    if (!this.#running || this.#index === 0) return;
    const delay = quick
      ? QUICK_CLIMB_MS + Math.random() * QUICK_CLIMB_MS
      : this.#climbMs * (0.75 + Math.random() * 0.5);
    this.#climbTimer = setTimeout(() => this.#climb(0), delay);
  }

  /** Open a probe on transports[position] alongside the live fallback link. */
  #climb(position) {
    this.#climbTimer = null;
    if (!this.#running || this.#probe || !this.#link || !this.#link.live) return;
    if (position >= this.#index) return;
    this.#probe = this.#open(this.#transports[position], "probe");
  }

  #climbFailed(link) {
    if (!this.#running || !this.#link || !this.#link.live) return; // reconnect logic owns it
    const position = this.#transports.indexOf(link.name);
    if (position + 1 < this.#index) this.#climb(position + 1);
    else this.#scheduleClimb(false);
  }

  #drop(link) {
    if (!link || link.closed) return;
    link.closed = true;
    clearTimeout(link.watchdog);
    try {
      link.teardown();
    } catch {
      // nothing left to clean
    }
  }

  #arm(link, ms) {
    clearTimeout(link.watchdog);
    link.watchdog = setTimeout(() => this.#closed(link, { reason: "timeout" }), ms);
  }

  #deadAfterMs() {
    return 2 * this.#heartbeatS * 1000;
  }

  #clearTimers() {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#climbTimer);
    this.#retryTimer = null;
    this.#climbTimer = null;
  }

  #listen() {
    if (typeof window === "undefined" || typeof window.addEventListener !== "function") return;
    const onOffline = () => {
      if (!this.#running) return;
      this.#goOffline();
      this.#retryTimer = setTimeout(() => this.#connect(), BACKOFF_CAP_MS);
    };
    const wake = (online) => {
      if (!this.#running) return;
      if (this.#link) {
        if (this.#link.live) this.#link.ping(); // is it still there after the sleep?
        return;
      }
      if (online) this.#attempt = 0;
      this.#connect(); // we were waiting out a backoff: try now
    };
    const onOnline = () => wake(true);
    const onVisible = () => {
      if (document.visibilityState === "visible") wake(false);
    };
    window.addEventListener("offline", onOffline);
    window.addEventListener("online", onOnline);
    if (typeof document !== "undefined") document.addEventListener("visibilitychange", onVisible);
    this.#unlisten = () => {
      window.removeEventListener("offline", onOffline);
      window.removeEventListener("online", onOnline);
      if (typeof document !== "undefined") document.removeEventListener("visibilitychange", onVisible);
    };
  }

  // --- reads, state, helpers ---------------------------------------------------------

  #sendRead(frame, body) {
    const link = this.#link;
    if (link && link.live && link.name === "websocket" && link.send(frame)) {
      return Promise.resolve({ via: "websocket", unread: this.#unread });
    }
    return this.#postRead(body);
  }

  async #postRead(body) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const token = this.#csrf();
    if (token) headers["X-CSRFToken"] = token;
    const response = await fetch(this.#url(this.#urls.read), {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!response.ok) {
      const failure = await httpFailure(response, "http");
      this.#emit("onError", { transport: "http", status: failure.status, code: failure.code, message: failure.message });
      const error = new Error(failure.message);
      error.status = failure.status;
      error.code = failure.code;
      throw error;
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    const unread = data && Number.isInteger(data.unread) ? data.unread : null;
    this.#setUnread(unread);
    // Tell the page now: SSE also gets a `read` event, long-poll gets nothing.
    this.#emit("onRead", body.all ? { all: true, cursor: this.#cursor, unread } : { ids: body.ids, unread });
    return { via: "http", unread };
  }

  #setUnread(count, countedThrough) {
    if (!Number.isInteger(count) || count < 0) return;
    this.#unread = count;
    const through = toId(countedThrough);
    if (through !== null) this.#countedThrough = through;
    this.#emit("onUnread", count);
  }

  #setStatus(state, transport) {
    if (state === this.#state && transport === this.#transport) return;
    this.#state = state;
    this.#transport = transport;
    this.#emit("onStatus", { state, transport });
  }

  #emit(name, ...args) {
    const callback = this.#on[name];
    if (typeof callback !== "function") return;
    try {
      callback(...args);
    } catch (error) {
      // A page bug must not break the connection logic; surface it all the same.
      if (typeof reportError === "function") reportError(error);
      else console.error(error);
    }
  }

  #sinceParams() {
    return this.#cursor === null ? {} : { since: this.#cursor };
  }

  #url(path, params = {}) {
    const url = new URL(this.#baseUrl + path, pageHref());
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, String(value));
    return url.href;
  }

  #csrf() {
    if (typeof this.#csrfToken === "function") return this.#csrfToken();
    if (this.#csrfToken) return String(this.#csrfToken);
    if (typeof document === "undefined") return null;
    for (const part of (document.cookie || "").split(";")) {
      const [name, ...rest] = part.trim().split("=");
      if (name === "csrftoken") return decodeURIComponent(rest.join("="));
    }
    const input = document.querySelector('input[name="csrfmiddlewaretoken"]');
    return input ? input.value : null;
  }
}

async function httpFailure(response, transport) {
  let code = null;
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code ?? null;
      message = body.error.message ?? message;
    }
  } catch {
    // not JSON (a proxy's error page)
  }
  const seconds = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return {
    transport,
    status: response.status,
    code,
    message,
    retryAfterMs: Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, 5 * 60 * 1000) : 0,
  };
}

/**
 * The reconnect delay a draining server asked for.
 * @param {object|null} data `{reconnect_ms}` from a close reason, SSE event or poll answer.
 * @param {boolean} required true when the message itself means "drain" (1012, `reconnect`):
 *   a missing or bad delay then gives a random one of up to 10 s; otherwise null.
 * @returns {number|null} milliseconds in [0, DRAIN_MAX_DELAY_MS], or null.
 */
export function drainDelay(data, required) {
  const ms = data && typeof data === "object" ? Number(data.reconnect_ms) : NaN;
  if (Number.isFinite(ms) && ms >= 0) return Math.min(Math.floor(ms), DRAIN_MAX_DELAY_MS);
  return required ? Math.floor(Math.random() * 10000) : null;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The client id for receipts: a valid given one, else one kept in localStorage. */
function clientIdOf(given) {
  const valid = (value) => typeof value === "string" && /^[A-Za-z0-9_.:-]{1,64}$/.test(value);
  if (valid(given)) return given;
  let id = null;
  try {
    id = window.localStorage.getItem("notify.clientId");
    if (!valid(id)) {
      id = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
      window.localStorage.setItem("notify.clientId", id);
    }
  } catch {
    id = id || `tab-${Math.random().toString(36).slice(2, 14)}`;
  }
  return id;
}

function toId(value) {
  const number = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  return Number.isSafeInteger(number) && number >= 0 ? number : null;
}

function positiveNumber(value) {
  const number = Number(value);
  return value !== null && value !== "" && Number.isFinite(number) && number > 0 ? number : null;
}

function pageHref() {
  return typeof location !== "undefined" && location.href ? location.href : "http://localhost/";
}

function pageSearch() {
  return typeof location !== "undefined" && typeof location.search === "string" ? location.search : "";
}

function browserOffline() {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}
