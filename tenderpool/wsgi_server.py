"""Gunicorn, started from `tenderpool serve` (each worker builds its own app and engine)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from tenderpool import create_app

        return create_app()


def serve(*, host: str, port: int, workers: int) -> None:
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            # No preload: the app (and its database pool) is created after the fork, in each worker.
            "preload_app": False,
            "accesslog": "-",
            "forwarded_allow_ips": "127.0.0.1",
            "timeout": 60,
            # Gunicorn's control socket defaults to one path per user ($XDG_RUNTIME_DIR or
            # ~/.gunicorn): two instances on one host (staging beside production, or the two
            # test passes running side by side) would fight over it. TenderPool is managed
            # through its own CLI and signals, so the socket is off.
            "control_socket_disable": True,
        }
    ).run()
