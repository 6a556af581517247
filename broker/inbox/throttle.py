"""Login rate limiting: too many wrong passwords lock the login of that account and of
that client address for a while.

Kept in memory of the one inbox process (a restart forgets it, which only gives an
attacker one more round of `max_failures` guesses). Time is passed in, so tests drive it.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from datetime import datetime, timedelta


class LoginThrottle:
    """`max_failures` wrong passwords within `window`, for one account or from one
    address, lock that key until `window` after the last of them. A success clears the
    account's failures (not the address's: one address guessing many accounts stays locked)."""

    def __init__(self, max_failures: int, window: timedelta) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[datetime]] = defaultdict(deque)
        self._lock = threading.Lock()

    @staticmethod
    def _keys(account: str, address: str) -> tuple[str, str]:
        return f"user:{account.casefold()}", f"addr:{address}"

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures[key]
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def locked(self, account: str, address: str, now: datetime) -> bool:
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in self._keys(account, address))

    def failed(self, account: str, address: str, now: datetime) -> None:
        with self._lock:
            for key in self._keys(account, address):
                times = self._recent(key, now)
                times.append(now)
                while len(times) > self.max_failures:  # only the last max_failures matter
                    times.popleft()

    def succeeded(self, account: str, address: str, now: datetime) -> None:
        with self._lock:
            self._failures.pop(self._keys(account, address)[0], None)
