// Shared by the gateway pages, beside common.js: the course page that shows this terminal (the
// frame's parent, or the opener of "Open in a new window") hears that the learner is active here,
// and tells this page when the lab stopped being ready; the session ends when the page is left.

const ACTIVITY_EVERY_MS = 2000; // a sign now and then is enough: the course page keeps the time
const INPUT = ["keydown", "mousedown", "mousemove", "wheel", "touchstart"];

/** The course page's window: the parent of this frame, or the window that opened this one. */
function coursePage() {
    return window.parent !== window ? window.parent : window.opener;
}

/** An exact origin ("https://lms.example.org"), or "" for anything else: never "*". */
function exactOrigin(text) {
    try {
        return text && new URL(text).origin === text ? text : "";
    } catch {
        return "";
    }
}

/**
 * Post activity to the course page at `origin` (the fragment's, from takeFragment), accept its
 * word about the lab only from that window and origin, and call `close` on pagehide (also when
 * the page goes into the back/forward cache: the websocket and the SSH session end there).
 */
export function watchCoursePage(origin, close) {
    window.addEventListener("pagehide", close);
    const target = coursePage();
    const allowed = exactOrigin(origin);
    if (!target || !allowed) return;
    let last = 0;
    const activity = () => {
        const now = Date.now();
        if (now - last < ACTIVITY_EVERY_MS) return;
        last = now;
        target.postMessage({ type: "labxblock:activity" }, allowed);
    };
    // Capture: the terminal handles (and stops) the keys it reads.
    for (const name of INPUT) document.addEventListener(name, activity, { capture: true, passive: true });
    window.addEventListener("message", (event) => {
        if (event.origin !== allowed || event.source !== target || !event.data) return;
        const { type, state, message } = event.data;
        if (type !== "labxblock:lab") return;
        const status = document.getElementById("status");
        if (state === "paused") {
            // Said before closing, and final: the close that follows must not replace it.
            document.body.dataset.state = "paused";
            status.textContent = String(message || "");
            close();
        } else if (state === "detached" && document.body.dataset.state === "ready") {
            status.textContent = String(message || "");
        } else if (state === "attached" && document.body.dataset.state === "ready") {
            status.textContent = "";
        }
    });
}
