"""The fake's notion of "now", which tests can freeze, scale and move.

Job states are computed from this clock at read time, so a frozen clock makes
every lifecycle step deterministic and nothing has to sleep or spin.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Epoch seconds that follow real time (optionally scaled) or stay frozen.

    ``advance`` works in both modes: it moves a frozen clock, or adds an offset
    to a running one. Waiters (see :meth:`wait`) are woken on every change.
    """

    def __init__(self, *, scale: float = 1.0, frozen: bool = False, at: float | None = None):
        self._cond = threading.Condition()
        self._scale = float(scale)
        self._anchor_epoch = time.time() if at is None else float(at)
        self._anchor_mono = time.monotonic()
        self._frozen = bool(frozen)

    # -- reading -----------------------------------------------------------
    def now(self) -> float:
        with self._cond:
            return self._now_locked()

    def _now_locked(self) -> float:
        if self._frozen:
            return self._anchor_epoch
        return self._anchor_epoch + (time.monotonic() - self._anchor_mono) * self._scale

    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def scale(self) -> float:
        return self._scale

    def state(self) -> dict:
        with self._cond:
            return {"now": self._now_locked(), "frozen": self._frozen, "scale": self._scale}

    # -- changing ----------------------------------------------------------
    def _re_anchor(self, epoch: float) -> None:
        self._anchor_epoch = epoch
        self._anchor_mono = time.monotonic()

    def freeze(self, at: float | None = None) -> float:
        """Stop the clock (at ``at`` epoch seconds, default: now)."""
        with self._cond:
            self._re_anchor(self._now_locked() if at is None else float(at))
            self._frozen = True
            self._cond.notify_all()
            return self._anchor_epoch

    def unfreeze(self) -> float:
        """Let the clock run again from where it stands."""
        with self._cond:
            self._re_anchor(self._now_locked())
            self._frozen = False
            self._cond.notify_all()
            return self._anchor_epoch

    def advance(self, seconds: float) -> float:
        """Jump forward (or back, with a negative value); returns the new now."""
        with self._cond:
            self._re_anchor(self._now_locked() + float(seconds))
            self._cond.notify_all()
            return self._anchor_epoch

    def set_scale(self, scale: float) -> None:
        """Make the running clock go ``scale`` times faster than real time."""
        if scale <= 0:
            raise ValueError("scale must be > 0")
        with self._cond:
            self._re_anchor(self._now_locked())
            self._scale = float(scale)
            self._cond.notify_all()

    def reset(self) -> None:
        """Back to real time, unfrozen, scale 1."""
        with self._cond:
            self._scale = 1.0
            self._frozen = False
            self._re_anchor(time.time())
            self._cond.notify_all()

    # -- waiting -----------------------------------------------------------
    def real_seconds_until(self, epoch: float) -> float | None:
        """Real seconds until the clock reads ``epoch``; None if frozen before it."""
        with self._cond:
            now = self._now_locked()
            if now >= epoch:
                return 0.0
            if self._frozen:
                return None
            return (epoch - now) / self._scale

    def wait(self, real_timeout: float) -> None:
        """Sleep up to ``real_timeout`` real seconds, waking early on any change."""
        with self._cond:
            self._cond.wait(max(0.0, real_timeout))
