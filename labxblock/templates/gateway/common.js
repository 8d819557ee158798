// Shared by the gateway pages: ticket from the fragment, status line.

/** Read "#ticket=…&ro=1&origin=…" once and wipe it from the address bar and history. */
export function takeFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    history.replaceState(null, "", location.pathname + location.search);
    return { ticket: params.get("ticket") || "", readOnly: params.get("ro") === "1", origin: params.get("origin") || "" };
}

const MESSAGES = {
    0: "Disconnected.",
    512: "The terminal gateway failed. Reload the page to try again.",
    515: "The lab's connection failed. Reload the page to try again.",
    516: "The lab did not answer in time. Reload the page to try again.",
    519: "The lab cannot be reached right now. Reload the page to try again.",
    768: "The connection was refused (bad request). Reload the page.",
    769: "This terminal link has expired or was already used. Reload the page.",
    776: "The connection took too long to start. Reload the page.",
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
