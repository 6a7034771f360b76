"""Per-chat alert settings: /pause, /resume, /subscribe, /unsubscribe and what a chat
receives. Names are validated here, so a wrong one raises
:class:`~signalcast.core.errors.UnknownNameError` listing the valid choices."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from signalcast.alerts.rules import alert_chats, chat_prefs, delivery_mode
from signalcast.config import Settings
from signalcast.config.settings import ALERT_KINDS
from signalcast.core.errors import UnknownNameError
from signalcast.db.engine import session_scope
from signalcast.db.tables import ChatPref, utcnow


@dataclass(frozen=True)
class ChatSettings:
    chat_id: str
    receives: bool  # a recipient at all (configured or enrolled, not opted out)
    paused: bool
    kinds: dict[str, str]  # kind -> on | silent | off (effective)
    muted_assets: list[str]
    muted_targets: list[str]


def chat_settings(engine: Engine, settings: Settings, chat_id: str) -> ChatSettings:
    with session_scope(engine, readonly=True) as session:
        pref = chat_prefs(session).get(chat_id)
    configured = chat_id in alert_chats(settings)
    receives = (pref.enrolled if pref is not None and pref.enrolled is not None
                else configured)
    return ChatSettings(
        chat_id=chat_id, receives=bool(receives), paused=bool(pref and pref.paused),
        kinds={kind: delivery_mode(_unpaused(pref), settings, kind) for kind in ALERT_KINDS},
        muted_assets=list(pref.muted_assets) if pref else [],
        muted_targets=list(pref.muted_targets) if pref else [])


def pause_alerts(engine: Engine, settings: Settings, chat_id: str, actor: str) -> ChatSettings:
    """Hold back every alert to this chat (queued ones too) until :func:`resume_alerts`."""
    return _change(engine, settings, chat_id, actor, paused=True)


def resume_alerts(engine: Engine, settings: Settings, chat_id: str, actor: str) -> ChatSettings:
    return _change(engine, settings, chat_id, actor, paused=False)


def subscribe(engine: Engine, settings: Settings, chat_id: str, items: Iterable[str],
              actor: str) -> ChatSettings:
    """Receive alerts here; with items, receive these assets/targets again and set kinds
    (``model`` or ``summary:silent``). Unknown items raise UnknownNameError."""
    assets, targets, kinds = _parse_items(settings, items, default_mode="on")
    return _change(engine, settings, chat_id, actor, enrolled=True, unmute_assets=assets,
                   unmute_targets=targets, kinds=kinds)


def unsubscribe(engine: Engine, settings: Settings, chat_id: str, items: Iterable[str],
                actor: str) -> ChatSettings:
    """Without items: receive no alerts here. With items: stop these assets, targets or
    kinds."""
    items = list(items)
    assets, targets, kinds = _parse_items(settings, items, default_mode="off")
    if not items:
        return _change(engine, settings, chat_id, actor, enrolled=False)
    return _change(engine, settings, chat_id, actor, mute_assets=assets, mute_targets=targets,
                   kinds={kind: "off" for kind in kinds})


def _parse_items(settings: Settings, items: Iterable[str],
                 default_mode: str) -> tuple[list[str], list[str], dict[str, str]]:
    """Sort ``BTC/USDT``, ``2pct_72``, ``summary`` and ``summary:silent`` into assets, targets
    and kind modes."""
    assets, targets, kinds = [], [], {}
    symbols = {a.symbol.upper(): a.symbol for a in settings.assets}
    keys = {t.key.lower(): t.key for t in settings.targets}
    for item in items:
        name, _, mode = item.partition(":")
        if name.lower() in ALERT_KINDS and (mode or default_mode) in ("on", "silent", "off"):
            kinds[name.lower()] = mode.lower() or default_mode
        elif item.upper() in symbols:
            assets.append(symbols[item.upper()])
        elif item.lower() in keys:
            targets.append(keys[item.lower()])
        else:
            raise UnknownNameError("asset, target or alert kind", item,
                                   [*symbols.values(), *keys.values(), *ALERT_KINDS])
    return assets, targets, kinds


def _unpaused(pref: ChatPref | None) -> ChatPref | None:
    """The preferences as if not paused and enrolled (to show each kind's own mode)."""
    if pref is None:
        return None
    return ChatPref(chat_id=pref.chat_id, kinds=pref.kinds, muted_assets=[], muted_targets=[])


def _change(engine: Engine, settings: Settings, chat_id: str, actor: str, *,
            paused: bool | None = None, enrolled: bool | None = None,
            kinds: dict[str, str] | None = None, mute_assets: Iterable[str] = (),
            unmute_assets: Iterable[str] = (), mute_targets: Iterable[str] = (),
            unmute_targets: Iterable[str] = ()) -> ChatSettings:
    with session_scope(engine) as session:
        pref = session.get(ChatPref, chat_id, with_for_update=True) or ChatPref(chat_id=chat_id)
        if paused is not None:
            pref.paused = paused
        if enrolled is not None:
            pref.enrolled = enrolled
        # assign new objects: the JSON columns are not tracked for in-place changes
        pref.kinds = {**pref.kinds, **(kinds or {})}
        pref.muted_assets = sorted(set(pref.muted_assets) - set(unmute_assets)
                                   | set(mute_assets))
        pref.muted_targets = sorted(set(pref.muted_targets) - set(unmute_targets)
                                    | set(mute_targets))
        pref.updated_at, pref.updated_by = utcnow(), actor[:80]
        session.add(pref)
    return chat_settings(engine, settings, chat_id)
