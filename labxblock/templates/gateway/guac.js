// Gateway mode: guacamole-common-js through the gateway's relay to guacd.
import Guacamole from "./guacamole-common-js-1.5.0.min.mjs";
import { setStatus, statusText, takeFragment } from "./common.js";
import { watchCoursePage } from "./page.js";

const { ticket, readOnly, origin } = takeFragment();
const screen = document.getElementById("screen");
// Relative URL: the library builds ws(s)://host/<this page's path>ws from it.
const tunnel = new Guacamole.WebSocketTunnel("ws");
const client = new Guacamole.Client(tunnel);
const display = client.getDisplay();
screen.appendChild(display.getElement());

// The ticket is the first thing we send, as an internal instruction, once the
// tunnel is open (the tunnel UUID has arrived): never in the URL.
let presented = false;
tunnel.onstatechange = (state) => {
    if (state === Guacamole.Tunnel.State.OPEN && !presented) {
        presented = true;
        const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
        tunnel.sendMessage("", "ticket", ticket, screen.clientWidth || 1024, screen.clientHeight || 768,
            Math.round(96 * (window.devicePixelRatio || 1)), tz);
    }
};
client.onstatechange = (state) => {
    if (state === 3) setStatus(readOnly ? "Read-only view." : "", "ready"); // CONNECTED
    // DISCONNECTED with no error before it: a clean end (the learner typed exit).
    if (state === 5 && document.body.dataset.state !== "closed") setStatus(statusText(0), "ended");
};
client.onerror = (status) => setStatus(statusText(status.code), "closed");
tunnel.onerror = (status) => setStatus(statusText(status.code), "closed");

// The library does not resize by itself; a read-only viewer may not resize at all.
if (!readOnly) {
    new ResizeObserver(() => client.sendSize(screen.clientWidth, screen.clientHeight)).observe(screen);
    const keyboard = new Guacamole.Keyboard(screen);
    keyboard.onkeydown = (keysym) => { client.sendKeyEvent(1, keysym); return false; };
    keyboard.onkeyup = (keysym) => client.sendKeyEvent(0, keysym);
    const mouse = new Guacamole.Mouse(display.getElement());
    mouse.onEach(["mousedown", "mouseup", "mousemove"], (event) => client.sendMouseState(event.state, true));
    screen.addEventListener("click", () => screen.focus());
    screen.focus();
}
watchCoursePage(origin, () => client.disconnect());
client.connect("");
