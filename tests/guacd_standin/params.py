"""The parameters guacd announces in ``args`` for each protocol (after the version).

SSH as guacd 1.5.5 announces it; RDP from guacd 1.6's ``src/protocols/rdp/settings.c``
(``GUAC_RDP_CLIENT_ARGS``, built with SSH support); VNC the common core of
``src/protocols/vnc/settings.c``. What matters to the gateway is the rule, not
the exact list: one ``connect`` value per announced name, in the same order.
"""

from __future__ import annotations

# The SSH parameters guacd 1.5.5 announces (42 after the version).
SSH_ARGS = [
    "hostname",
    "host-key",
    "port",
    "username",
    "password",
    "font-name",
    "font-size",
    "enable-sftp",
    "sftp-root-directory",
    "sftp-disable-download",
    "sftp-disable-upload",
    "private-key",
    "passphrase",
    "public-key",
    "color-scheme",
    "command",
    "typescript-path",
    "typescript-name",
    "create-typescript-path",
    "typescript-write-existing",
    "recording-path",
    "recording-name",
    "recording-exclude-output",
    "recording-exclude-mouse",
    "recording-include-keys",
    "create-recording-path",
    "recording-write-existing",
    "read-only",
    "server-alive-interval",
    "backspace",
    "terminal-type",
    "scrollback",
    "locale",
    "timezone",
    "clipboard-buffer-size",
    "disable-copy",
    "disable-paste",
    "wol-send-packet",
    "wol-mac-addr",
    "wol-broadcast-addr",
    "wol-udp-port",
    "wol-wait-time",
]
RDP_ARGS = [
    "hostname", "port", "timeout", "domain", "username", "password", "width", "height", "dpi",
    "initial-program", "color-depth", "disable-audio", "enable-printing", "printer-name", "enable-drive",
    "drive-name", "drive-path", "create-drive-path", "disable-download", "disable-upload", "console",
    "console-audio", "server-layout", "security", "ignore-cert", "cert-tofu", "cert-fingerprints",
    "disable-auth", "remote-app", "remote-app-dir", "remote-app-args", "static-channels", "client-name",
    "enable-wallpaper", "enable-theming", "enable-font-smoothing", "enable-full-window-drag",
    "enable-desktop-composition", "enable-menu-animations", "disable-bitmap-caching",
    "disable-offscreen-caching", "disable-glyph-caching", "disable-gfx", "preconnection-id",
    "preconnection-blob", "timezone", "enable-sftp", "sftp-hostname", "sftp-host-key", "sftp-port",
    "sftp-timeout", "sftp-username", "sftp-password", "sftp-private-key", "sftp-passphrase",
    "sftp-public-key", "sftp-directory", "sftp-root-directory", "sftp-server-alive-interval",
    "sftp-disable-download", "sftp-disable-upload", "recording-path", "recording-name",
    "recording-exclude-output", "recording-exclude-mouse", "recording-exclude-touch",
    "recording-include-keys", "create-recording-path", "recording-write-existing", "resize-method",
    "secondary-monitors", "enable-audio-input", "enable-touch", "read-only", "gateway-hostname",
    "gateway-port", "gateway-domain", "gateway-username", "gateway-password", "load-balance-info",
    "clipboard-buffer-size", "disable-copy", "disable-paste", "wol-send-packet", "wol-mac-addr",
    "wol-broadcast-addr", "wol-udp-port", "wol-wait-time", "force-lossless", "normalize-clipboard",
]  # fmt: skip
VNC_ARGS = [
    "hostname", "port", "read-only", "encodings", "username", "password", "swap-red-blue", "color-depth",
    "cursor", "autoretry", "clipboard-encoding", "dest-host", "dest-port", "enable-audio",
    "audio-servername", "reverse-connect", "listen-timeout", "enable-sftp", "sftp-hostname",
    "sftp-host-key", "sftp-port", "sftp-username", "sftp-password", "sftp-private-key",
    "sftp-passphrase", "sftp-public-key", "sftp-directory", "sftp-root-directory",
    "sftp-server-alive-interval", "sftp-disable-download", "sftp-disable-upload", "recording-path",
    "recording-name", "recording-exclude-output", "recording-exclude-mouse", "recording-include-keys",
    "create-recording-path", "recording-write-existing", "disable-copy", "disable-paste",
    "wol-send-packet", "wol-mac-addr", "wol-broadcast-addr", "wol-udp-port", "wol-wait-time",
    "force-lossless", "compress-level", "quality-level",
]  # fmt: skip
ARGS = {"ssh": SSH_ARGS, "rdp": RDP_ARGS, "vnc": VNC_ARGS}
