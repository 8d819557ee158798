// Console mode: xterm.js over the gateway's own websocket protocol (see gateway/console.py).
import { Terminal } from "./xterm-6.0.0.mjs";
import { FitAddon } from "./xterm-addon-fit-0.11.0.mjs";
import { setStatus, statusText, takeFragment } from "./common.js";
import { watchCoursePage } from "./page.js";

const { ticket, origin } = takeFragment();
const term = new Terminal({ cursorBlink: true, scrollback: 2000 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById("screen"));
fit.fit();

const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + location.pathname + "ws", "labxblock-console");
ws.binaryType = "arraybuffer";
watchCoursePage(origin, () => ws.close(1000));
const ACK_EVERY = 16 * 1024;
let drawn = 0;
const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };

ws.onopen = () => send({ type: "ticket", ticket, cols: term.cols, rows: term.rows });
ws.onmessage = (event) => {
    if (typeof event.data === "string") {
        const msg = JSON.parse(event.data);
        if (msg.type === "ready") {
            term.options.disableStdin = Boolean(msg.read_only);
            setStatus(msg.read_only ? "Read-only view." : "", "ready");
            term.focus();
        } else if (msg.type === "exit") {
            setStatus("The session has ended.", "ended");
        }
        return;
    }
    const data = new Uint8Array(event.data);
    // Ack once drawn, in batches far below the gateway's 256 KiB window: the
    // gateway sends more only while the terminal keeps up.
    term.write(data, () => {
        drawn += data.length;
        if (drawn >= ACK_EVERY) { send({ type: "ack", bytes: drawn }); drawn = 0; }
    });
};
ws.onclose = (event) => {
    const code = event.reason ? parseInt(event.reason, 10) : 512;
    if (document.body.dataset.state !== "ended") setStatus(statusText(code), "closed");
    term.options.disableStdin = true;
};
term.onData((data) => send({ type: "data", data }));
term.onResize(({ cols, rows }) => send({ type: "resize", cols, rows }));
new ResizeObserver(() => fit.fit()).observe(document.getElementById("screen"));
