"""signalcast: scheduled, distributed ML market signals delivered to Telegram."""

__version__ = "0.1.0"
