/**
 * notify/push.js: the inbox page's "Enable desktop notifications" control (issue 14).
 *
 * When the server has Web Push on (GET push-subscriptions/ answers the VAPID public key;
 * 404 means off and the control stays hidden), registers the service worker (sw.js) and
 * shows the button. A click asks for permission, subscribes through the browser's push
 * service and POSTs the subscription; a second click unsubscribes (DELETE).
 * `window.notifyPush` = { registration, publicKey } once the worker is registered.
 */

const button = document.getElementById("enable-push");

function csrf() {
  for (const part of (document.cookie || "").split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return "";
}

function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

async function call(method, body) {
  const response = await fetch(button.dataset.api, {
    method,
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`${method} push subscription: HTTP ${response.status}`);
}

function show(on, text) {
  button.dataset.state = on ? "on" : "off";
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.textContent = text || (on ? "Disable desktop notifications" : "Enable desktop notifications");
  button.hidden = false;
}

async function boot() {
  if (!button || !("serviceWorker" in navigator) || !("PushManager" in window)) return;
  let publicKey;
  try {
    const response = await fetch(button.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return; // 404: Web Push is off on this server
    publicKey = (await response.json()).public_key;
  } catch {
    return;
  }
  const registration = await navigator.serviceWorker.register(
    `${button.dataset.sw}?inbox=${encodeURIComponent(location.pathname)}`,
  );
  window.notifyPush = { registration, publicKey };
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && Notification.permission === "granted") {
    call("POST", subscription.toJSON()).catch(() => {}); // keep the server's copy current
    show(true);
  } else {
    show(false);
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (button.dataset.state === "on" && subscription) {
        await call("DELETE", { endpoint: subscription.endpoint });
        await subscription.unsubscribe();
        subscription = null;
        show(false);
        return;
      }
      if ((await Notification.requestPermission()) !== "granted") {
        show(false, "Desktop notifications are blocked");
        return;
      }
      subscription =
        (await registration.pushManager.getSubscription()) ||
        (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(publicKey) }));
      await call("POST", subscription.toJSON());
      show(true);
    } catch (error) {
      show(false, "Desktop notifications are unavailable");
      console.warn("notify: push subscription failed", error);
    } finally {
      button.disabled = false;
    }
  });
}

boot();
