"""Delivery to people: alert formatting (:mod:`.format`), charts (:mod:`.charts`) and
transports (:mod:`.telegram`, :mod:`.transports`: the console and Telegram)."""

CONSOLE_CHAT = "console"  # the pseudo-chat whose alerts print on the process's own console
