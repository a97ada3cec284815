"""A small real HTTP server that behaves like KBase auth2's GET /api/V2/token and
GET /api/V2/me (the account, with its linked identities)."""

from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer

from .servers import JsonHandler


class FakeAuthService:
    """Tokens map to users; counts the calls it answered; can be made to fail."""

    def __init__(
        self,
        users: dict[str, str],
        cachefor_ms: int = 300_000,
        idents: dict[str, list[dict[str, str]]] | None = None,
    ):
        self.users = users
        self.cachefor_ms = cachefor_ms
        self.expires_ms: dict[str, int] = {}
        self.idents = idents or {}  # user -> linked identities, as /me lists them
        self.calls = 0
        self.me_calls = 0
        self.failing = False
        self.me_failing = False
        service = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/me"):
                    self.me()
                    return
                service.calls += 1
                token = self.headers.get("Authorization", "")
                if service.failing:
                    self.answer(500, {"error": {"message": "database down"}})
                elif token in service.users:
                    now = int(time.time() * 1000)
                    expires = service.expires_ms.get(token, now + 3_600_000)
                    self.answer(200, {
                        "user": service.users[token], "expires": expires,
                        "cachefor": service.cachefor_ms, "type": "Login",
                    })  # fmt: skip
                else:
                    self.answer(401, {"error": {"appcode": 10020, "message": "Invalid token"}})

            def me(self) -> None:
                service.me_calls += 1
                user = service.users.get(self.headers.get("Authorization", ""))
                if service.me_failing:
                    self.answer(500, {"error": {"message": "database down"}})
                elif user is None:
                    self.answer(401, {"error": {"appcode": 10020, "message": "Invalid token"}})
                else:
                    self.answer(200, {"user": user, "idents": service.idents.get(user, [])})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/V2/token"

    def __enter__(self) -> FakeAuthService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
