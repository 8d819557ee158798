// Shared by the gateway pages: ticket from the fragment, status line.

/** Read "#ticket=…&ro=1&origin=…" once and wipe it from the address bar and history. */
export function takeFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    history.replaceState(null, "", location.pathname + location.search);
    return { ticket: params.get("ticket") || "", readOnly: params.get("ro") === "1", origin: params.get("origin") || "" };
}

// One message per close status (labxblock/gateway/wsock.py says which is which).
const MESSAGES = {
    0: "The session has ended.",
    512: "The terminal gateway failed. Reload the page to try again.",
    514: "The lab did not answer in time. Reload the page to try again.",
    515: "The lab's connection failed. Reload the page to try again.",
    516: "This lab's address is not allowed on this site. Please tell the course team.",
    519: "The lab cannot be reached right now. Reload the page to try again.",
    768: "The connection was refused (bad request). Reload the page.",
    769: "The lab refused the login. Reset the lab; if it happens again, please tell the course team.",
    771: "This terminal link has expired or was already used. Reload the page.",
    776: "The connection took too long to start. Reload the page.",
    797: "Too many lab connections from your network. Close other lab tabs, then reload the page.",
};

/** Show a status line (textContent only: nothing here is HTML). */
export function setStatus(text, state) {
    if (document.body.dataset.state === "paused") return; // page.js said why the session ended
    document.getElementById("status").textContent = text;
    if (state) document.body.dataset.state = state;
}

export function statusText(code) {
    return MESSAGES[code] || `Disconnected (status ${code}). Reload the page to try again.`;
}
