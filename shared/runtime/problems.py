"""Refusals meant for people: raised by domain code, rendered by the HTTP layer."""


class Problem(Exception):
    """A refusal meant for the client: status, stable code, French message, optional field errors."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.fields = status, code, detail, fields or {}
        self.headers = headers or {}

    def __call__(self) -> "Problem":
        """A fresh copy of this problem, to raise (a raised constant would keep every raise's frames)."""
        return Problem(self.status, self.code, self.detail, fields=self.fields, headers=self.headers)
