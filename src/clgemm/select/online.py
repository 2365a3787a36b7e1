"""The online selector (T3): a contextual bandit over validated schedules, safe by construction.

For each call `choose(m, n, k, ...)` returns a `Decision` (a schedule and why), and
`observe(decision, kernel_s)` feeds back the event-profiled kernel time.

Model. The reward of an arm on a call is y = ln(GFLOPS). What matters for a choice is an arm's
reward *relative to the static table's choice* for the same shape, r_a = y_a - y_static, so the
static choice is the prior favourite by construction (r_static = 0, plus a small margin). For
each arm, r_a on a shape has a Gaussian posterior that combines
  * a prior from a discounted ridge regression (LinUCB) of r_a on the context
    x = [1, log M, log N, log K, aspect, depth, small, trans_a, trans_b, drift, queue, clock],
    with variance sigma_lin^2 x'A^-1 x + prior_sd^2 (prior_sd: the linear model's bias floor);
  * the discounted per-shape means of the arm's and the static arm's observed y.
The greedy arm maximises the posterior mean; the arm with the largest upper bound
mean + beta sd is played instead when the exploration budget allows (that is exploration). Arms the model
knows to be much slower on similar shapes are therefore not tried on new shapes.

Safety.
  * Arms: only the schedules given (validated: the table's candidates, the class's entry, and
    extras that passed a float64 check), filtered per call by `allowed`.
  * Exploration: every call that runs an arm other than the one the policy would exploit
    (reason "explore": an upper-bound pick; reason "probe": a re-measurement of the static
    choice while another arm is the greedy one) is exploration and spends the budget. Such a
    call is made only while explored + 1 <= explore_share * calls, counted over the current
    *epoch* (from construction or the last `begin_epoch()`; the replay opens one per trace),
    so the share can exceed the bound neither in an epoch nor over the instance's lifetime
    (a sum of epochs), and budget saved in a quiet epoch is not spent in a burst in the
    next. Not exploration: "exploit" and "baseline" (the greedy arm, which is the static
    choice while nothing is known about the shape), "fallback" (the safety policy's static
    choice) and "only" (a single allowed arm).
  * Noise: estimated per shape class (short kernels are far noisier than long ones: ~0.15
    vs ~0.02 log-sd on the H100) from innovations clipped at 4 sd; it sets the posteriors'
    data variance and the drift test's scale.
  * Drift: a two-sided Page-Hinkley test per (shape class, arm) on the innovations of y, with
    delta = max(drift_delta, drift_delta_sd * sd) and threshold = max(drift_threshold,
    drift_threshold_sd * sd) for the class's noise sd (a fixed threshold of a few tenths
    alarms every few dozen calls on a 0.15-sd stream; 8 sd alarms on a 0.5 shift in ~3). An
    alarm forgets that class's per-shape statistics (the static choice is probed again at once
    and the model re-learns from its regression prior) and widens exploration
    (beta x drift_beta) there for `drift_boost` calls.
  * Fallback: over a window of exploit calls that did not pick the static choice, the observed
    time is compared with the static choice's estimated time on the same shapes (the static
    arm's per-shape mean, kept fresh by occasional "probe" calls of the static choice). When
    the online policy is slower by more than `safety_tol`, it is disabled: the static table
    decides for `cooldown` calls (doubling at each new trip), and the offending statistics
    are shrunk so that learning restarts.

State. Counts, per-shape sums and the regressions persist per device fingerprint in SQLite
(see `state.py`), synced every `sync_every` observations and at `close()`.
"""

from __future__ import annotations

import atexit
import math
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..schedule import Schedule
from .drift import PageHinkley
from .table import Table, shape_class

# Feature slice describing the shape alone (log sizes, aspect, depth, small, transposes).
GEOMETRY = slice(1, 9)
FEATURES = ("bias", "log_m", "log_n", "log_k", "aspect", "depth", "small", "trans_a",
            "trans_b", "drift", "queue", "clock")
D = len(FEATURES)


def shape_key(m: int, n: int, k: int, trans_a: bool = False, trans_b: bool = False) -> str:
    return f"{m}x{n}x{k}{'T' if trans_a else 'N'}{'T' if trans_b else 'N'}"


def parse_shape_key(key: str) -> tuple[int, int, int, bool, bool]:
    m, n, rest = key.split("x")
    return int(m), int(n), int(rest[:-2]), rest[-2] == "T", rest[-1] == "T"


def features(m: int, n: int, k: int, trans_a: bool, trans_b: bool, drift: float = 0.0,
             queue_depth: float = 0.0, clock: float | None = None) -> np.ndarray:
    lm, ln, lk = (math.log2(max(v, 1)) for v in (m, n, k))
    return np.array([
        1.0, lm / 12, ln / 12, lk / 12, (lm - ln) / 12, (lk - 0.5 * (lm + ln)) / 12,
        1.0 if m * n <= 128 * 128 else 0.0, float(trans_a), float(trans_b),
        max(-1.0, min(1.0, drift)), math.log2(1 + max(0.0, queue_depth)) / 4,
        0.0 if clock is None else float(clock),
    ])


EXPLORATION = ("explore", "probe")  # reasons that run a non-exploit arm


@dataclass
class Decision:
    schedule: Schedule
    reason: str  # exploit | explore | probe | baseline | fallback | only
    static: Schedule
    shape: tuple[int, int, int, bool, bool]
    key: str  # shape key
    cls: str  # shape class (+ transposes)
    x: np.ndarray = field(repr=False)
    flags: tuple[str, ...] = ()
    estimates: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    @property
    def explored(self) -> bool:
        """True when this call spends the exploration budget (see EXPLORATION)."""
        return self.reason in EXPLORATION

    @property
    def flops(self) -> float:
        m, n, k = self.shape[:3]
        return 2.0 * m * n * k


StaticFn = Callable[[int, int, int], Schedule]


class OnlineSelector:
    """Contextual bandit over validated schedules; see the module docstring."""

    def __init__(
        self,
        fingerprint: str,
        arms: Sequence[Schedule],
        static: Table | StaticFn,
        *,
        explore_share: float = 0.10,
        persist: bool = True,
        state_dir: str | Path | None = None,
        clock_proxy: Callable[[], float | None] | None = None,
        beta: float = 2.0,
        prior_sd: float = 0.15,
        distance_sd: float = 0.6,
        lin_sd: float = 0.25,
        ridge: float = 1.0,
        static_margin: float = 0.01,
        discount: float = 0.97,
        lin_discount: float = 0.995,
        noise_sd: float = 0.05,
        noise_floor: float = 0.02,
        drift_delta: float = 0.02,
        drift_threshold: float = 0.35,
        drift_delta_sd: float = 0.5,
        drift_threshold_sd: float = 8.0,
        drift_boost: int = 64,
        drift_beta: float = 1.5,
        safety_window: int = 48,
        safety_min: int = 12,
        safety_tol: float = 0.03,
        cooldown: int = 256,
        probe_min: int = 32,
        probe_max: int = 1024,
        sync_every: int = 64,
        probe_reserve: float = 0.4,
        exploit_override: Callable[[Decision, list[Schedule]], Schedule] | None = None,
    ) -> None:
        if not 0.0 <= explore_share <= 1.0:
            raise ValueError(f"explore_share must be in [0, 1], got {explore_share}")
        self.fingerprint = fingerprint
        self.arms: list[Schedule] = list(dict.fromkeys(arms))
        if isinstance(static, Table):
            table = static
            self._static: StaticFn = table.lookup
        else:
            self._static = static
        self.explore_share = explore_share
        self.clock_proxy = clock_proxy
        self.beta, self.prior_sd, self.lin_sd, self.ridge = beta, prior_sd, lin_sd, ridge
        self.distance_sd = distance_sd
        self.static_margin, self.discount, self.lin_discount = static_margin, discount, lin_discount
        self.noise_floor = noise_floor
        self._noise_var = noise_sd**2
        self.noise_sd = noise_sd
        self.drift_delta, self.drift_threshold = drift_delta, drift_threshold
        self.drift_delta_sd, self.drift_threshold_sd = drift_delta_sd, drift_threshold_sd
        self.drift_boost, self.drift_beta = drift_boost, drift_beta
        self.safety_window, self.safety_min, self.safety_tol = safety_window, safety_min, safety_tol
        self.cooldown, self.probe_min, self.probe_max = cooldown, probe_min, probe_max
        self.sync_every = sync_every
        self.probe_reserve = probe_reserve
        self.exploit_override = exploit_override

        # Per-instance counters; the exploration bound is enforced on the current epoch's.
        self.calls = 0
        self.explored = 0
        self.epoch_calls = 0
        self.epoch_explored = 0
        self._noise: dict[str, list[float]] = {}  # class -> [variance, observations, MAD]
        self._seen: dict[str, dict[str, np.ndarray]] = {}  # arm -> shape key -> geometry
        self._seen_arr: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {r: 0 for r in
                                       ("exploit", "explore", "probe", "baseline", "fallback", "only")}
        self.trips = 0
        self.drift_alarms = 0
        self.fallback_until = 0
        self._drift = 0.0  # EWMA of innovations (the context's "recent runtime drift")
        self._ph: dict[tuple[str, str], PageHinkley] = {}
        self._boost_until: dict[str, int] = {}
        self._probe: dict[str, list[int]] = {}  # shape key -> [calls since probe, interval]
        self._window: deque[tuple[float, float, str, str]] = deque(maxlen=safety_window)
        self._static_seen: dict[str, int] = {}  # shape key -> call of the last static observation
        self._alarm_at: dict[str, int] = {}  # class -> call of the last forget
        self._alarms: dict[str, tuple[int, int]] = {}  # class -> (call, direction) of its alarm
        self._clock_cache: tuple[int, float | None] = (-1, None)
        self._since_sync = 0
        self._lock = threading.RLock()

        # Persistent statistics: flat float vectors, keyed (kind, key).
        self._cur: dict[tuple[str, str], np.ndarray] = {}
        self._base: dict[tuple[str, str], np.ndarray] = {}
        self._dirty: set[tuple[str, str]] = set()
        self.store = None
        self.note: str | None = None
        if persist:
            from .state import StateStore

            self.store = StateStore(fingerprint, state_dir)
            self.note = self.store.note
            self._install(self.store.load())
            ref = weakref.ref(self)
            atexit.register(lambda: (lambda s: s and s.flush())(ref()))

    # ---- construction helpers -----------------------------------------------------------
    @classmethod
    def for_runtime(cls, rt, extra: Iterable[Schedule] = (), table: Table | None = None,
                    **kwargs) -> "OnlineSelector":
        """Arms = the device table's candidates (validated by the tuner) + `extra`, which the
        caller must have validated (see `replay.validate_schedule`), filtered by validity."""
        from ..lanes.fp32 import search_space
        from .table import load_table

        table = table or load_table(rt.device)
        space = search_space(rt)
        arms = [s for s in [*table.candidates(), *extra] if space.is_valid(s)]
        return cls(rt.device.fingerprint, arms, table, **kwargs)

    # ---- persistent vectors -------------------------------------------------------------
    def _install(self, items: dict) -> None:
        bad = 0
        for key, value in items.items():
            try:
                arr = np.asarray(value, dtype=float).ravel()
            except (TypeError, ValueError):
                bad += 1
                continue
            if not np.isfinite(arr).all():
                bad += 1
                continue
            self._cur[key] = arr.copy()
            self._base[key] = arr.copy()
            if key[0] == "shape" and arr.size == 3 and arr[0] > 1e-9:
                skey, _, arm = key[1].partition("|")
                self._note_seen(arm, skey)
        if bad:
            msg = f"{bad} unreadable selector state item(s) ignored"
            self.note = f"{self.note}; {msg}" if self.note else msg

    def _get(self, kind: str, key: str, size: int, init: Callable[[], np.ndarray] | None = None
             ) -> np.ndarray:
        k = (kind, key)
        arr = self._cur.get(k)
        if arr is None or arr.size != size:
            arr = init() if init else np.zeros(size)
            self._cur[k] = arr
        return arr

    def _touch(self, kind: str, key: str) -> None:
        self._dirty.add((kind, key))

    def flush(self) -> bool:
        """Send this instance's changes to the state file and load everyone's; True when synced."""
        with self._lock:
            return self._flush()

    def _flush(self) -> bool:
        if self.store is None or not self._dirty:
            return self.store is not None
        deltas = {}
        for k in self._dirty:
            cur = self._cur[k]
            base = self._base.get(k)
            delta = cur - base if base is not None and base.size == cur.size else cur
            deltas[k] = delta.tolist()
        merged = self.store.merge(deltas)
        if merged is None:
            self.note = self.note or self.store.note
            return False
        self._dirty.clear()
        self._since_sync = 0
        self._cur, self._base = {}, {}
        self._install(merged)
        self.store.prune("shape", 20000)
        return True

    def close(self) -> None:
        with self._lock:  # not while another thread (or the exit hook) is flushing
            self._flush()
            if self.store is not None:
                self.store.close()
                self.store = None

    # ---- statistics ---------------------------------------------------------------------
    def _shape_stats(self, skey: str, arm: str) -> np.ndarray:
        return self._get("shape", f"{skey}|{arm}", 3)  # discounted n, sum y, sum y^2

    def _lin(self, arm: str) -> np.ndarray:
        def init():
            return np.concatenate([(self.ridge * np.eye(D)).ravel(), np.zeros(D)])
        return self._get("lin", arm, D * D + D, init)

    # ---- where each arm has been measured (for the prior's distance term) ----------------
    def _note_seen(self, arm: str, skey: str) -> None:
        seen = self._seen.setdefault(arm, {})
        if skey in seen:
            return
        try:
            x = features(*parse_shape_key(skey))[GEOMETRY]
        except ValueError:
            return
        if len(seen) >= 1024:  # keep the most recent shapes
            seen.pop(next(iter(seen)))
        seen[skey] = x
        self._seen_arr.pop(arm, None)

    def _distance(self, arm: str, xg: np.ndarray) -> float:
        """Distance (geometric features) from this shape to the nearest one the arm ran on."""
        arr = self._seen_arr.get(arm)
        if arr is None:
            seen = self._seen.get(arm)
            if not seen:
                return 1.0
            arr = self._seen_arr[arm] = np.array(list(seen.values()))
        return float(min(1.0, np.sqrt(((arr - xg) ** 2).sum(axis=1).min())))

    def _lin_predict(self, arm: str, x: np.ndarray) -> tuple[float, float]:
        v = self._lin(arm)
        A, b = v[: D * D].reshape(D, D), v[D * D:]
        try:
            theta = np.linalg.solve(A, b)
            ax = np.linalg.solve(A, x)
        except np.linalg.LinAlgError:
            return 0.0, self.lin_sd**2 + self.prior_sd**2
        width = float(max(x @ ax, 0.0))
        return float(theta @ x), self.lin_sd**2 * width + self.prior_sd**2

    def _lin_update(self, arm: str, x: np.ndarray, r: float) -> None:
        v = self._lin(arm)
        g = self.lin_discount
        A, b = v[: D * D].reshape(D, D), v[D * D:]
        A *= g
        A += np.outer(x, x) + (1 - g) * self.ridge * np.eye(D)
        b *= g
        b += r * x
        self._touch("lin", arm)

    def _mean(self, st: np.ndarray) -> tuple[float, float]:
        n = st[0]
        return (st[1] / n if n > 1e-9 else 0.0), n

    # ---- context ------------------------------------------------------------------------
    def _clock(self) -> float | None:
        if self.clock_proxy is None:
            return None
        at, value = self._clock_cache
        if at < 0 or self.calls - at >= 16:
            try:
                value = self.clock_proxy()
                value = None if value is None or not math.isfinite(float(value)) else float(value)
            except Exception:  # noqa: BLE001 - a failing probe is an absent feature
                value = None
            self._clock_cache = (self.calls, value)
        return value

    def static_choice(self, m: int, n: int, k: int) -> Schedule:
        return self._static(m, n, k)

    def begin_epoch(self) -> None:
        """Start a new accounting period for the exploration bound (e.g. one per trace or
        per job): from here on explored <= explore_share * calls holds over this epoch."""
        with self._lock:
            self.epoch_calls = 0
            self.epoch_explored = 0

    def _may_explore(self, reserve: float = 0.0) -> bool:
        # Checked on the current call (already counted in epoch_calls). `reserve`: the part
        # of the budget that upper-bound exploration leaves to static probes.
        share = self.explore_share * (1.0 - reserve)
        return self.epoch_explored + 1 <= share * self.epoch_calls + 1e-9

    def _class_noise_var(self, cls: str) -> float:
        v = self._noise.get(cls)
        return v[0] if v is not None else self._noise_var

    # ---- the policy ---------------------------------------------------------------------
    def choose(self, m: int, n: int, k: int, trans_a: bool = False, trans_b: bool = False,
               queue_depth: float = 0.0, allowed: Iterable[Schedule] | None = None) -> Decision:
        """The schedule for this call. `allowed` narrows the arms (e.g. those validated for
        this layout); the static choice is used whenever nothing else may be. Thread-safe."""
        with self._lock:
            return self._choose(m, n, k, trans_a, trans_b, queue_depth, allowed)

    def _choose(self, m, n, k, trans_a, trans_b, queue_depth, allowed) -> Decision:
        self.calls += 1
        self.epoch_calls += 1
        static = self._static(m, n, k)
        allowed_set = None if allowed is None else set(allowed)
        arms = [a for a in dict.fromkeys([static, *self.arms])
                if allowed_set is None or a in allowed_set]
        if static not in arms:  # the table's choice failed validation for this layout
            arms = arms or [static]
            static = arms[0]
        skey = shape_key(m, n, k, trans_a, trans_b)
        cls = f"{shape_class(m, n, k)}{'T' if trans_a else 'N'}{'T' if trans_b else 'N'}"
        clock = self._clock()
        flags = ("clock-absent",) if clock is None else ()
        x = features(m, n, k, trans_a, trans_b, self._drift, queue_depth, clock)

        def decide(schedule: Schedule, reason: str, est=None) -> Decision:
            self.counts[reason] += 1
            if reason in EXPLORATION:
                self.explored += 1
                self.epoch_explored += 1
            return Decision(schedule, reason, static, (m, n, k, trans_a, trans_b), skey, cls, x,
                            flags, est or {})

        if len(arms) == 1:
            return decide(static, "only")
        if self.calls <= self.fallback_until:
            return decide(static, "fallback")

        skey_static = static.key()
        mean_st, n_st = self._mean(self._shape_stats(skey, skey_static))
        est: dict[str, tuple[float, float]] = {}
        noise_var = self._class_noise_var(cls)
        prior: dict[str, tuple[float, float, float, float]] = {}
        for arm in arms:
            a = arm.key()
            if arm == static:
                continue
            p, vp = self._lin_predict(a, x)
            # The linear model extrapolates badly across scales (an arm slow on big squares
            # can be the best on small products): its bias floor grows with the distance to
            # the nearest shape where the arm was measured, so untried regions get tried.
            d = self._distance(a, x[GEOMETRY])
            vp += (self.prior_sd + self.distance_sd * d) ** 2 - self.prior_sd**2
            prior[a] = (p, vp, *self._mean(self._shape_stats(skey, a)))
        # The static choice's level on this shape: its own mean when measured; otherwise
        # inferred from the arms that were (y_a - prior r_a, precision-weighted), so that two
        # measured arms are compared with each other before the static one is probed.
        level, level_var = mean_st, (noise_var / n_st if n_st > 1e-9 else math.inf)
        if n_st <= 1e-9:
            w = {a: 1.0 / (v[1] + noise_var / v[3]) for a, v in prior.items() if v[3] > 1e-9}
            if len(w) >= 2:
                level = sum(wa * (prior[a][2] - prior[a][0]) for a, wa in w.items()) / sum(w.values())
                level_var = 1.0 / sum(w.values())
        for arm in arms:
            a = arm.key()
            if arm == static:
                est[a] = (self.static_margin, 0.0)
                continue
            p, vp, mean_a, n_a = prior[a]
            if n_a > 1e-9 and math.isfinite(level_var):
                vd = noise_var / n_a + level_var
                post_var = 1.0 / (1.0 / vp + 1.0 / vd)
                est[a] = (post_var * (p / vp + (mean_a - level) / vd), post_var)
            else:
                est[a] = (p, vp)
        by_key = {a.key(): a for a in arms}
        greedy_key = max(est, key=lambda a: (est[a][0], a == skey_static))
        probe = self._probe.setdefault(skey, [0, self.probe_min])

        if n_st <= 1e-9 and greedy_key == skey_static:
            return decide(static, "baseline", est)
        if greedy_key != skey_static:
            probe[0] += 1
            due = n_st <= 1e-9 and probe[0] >= 2 or probe[0] >= probe[1]
            # A probe runs the static choice, not the greedy arm: it spends the budget, and
            # waits (stays due) while there is none.
            if due and self._may_explore():
                return decide(static, "probe", est)

        beta = self.beta * (self.drift_beta if self._boost_until.get(cls, 0) >= self.calls else 1.0)
        # The arm with the highest upper bound; when it is not the greedy one, trying it is
        # exploration (and needs the budget); when it is, the greedy arm is simply played.
        explore_key = max(est, key=lambda a: (est[a][0] + beta * math.sqrt(est[a][1]),
                                              a == greedy_key))
        if explore_key != greedy_key and self._may_explore(self.probe_reserve):
            return decide(by_key[explore_key], "explore", est)

        choice = by_key[greedy_key]
        if self.exploit_override is not None:
            pre = Decision(choice, "exploit", static, (m, n, k, trans_a, trans_b), skey, cls, x,
                           flags, est)
            forced = self.exploit_override(pre, arms)
            if forced in arms:  # an override can never bring in an unvalidated kernel
                choice = forced
        return decide(choice, "exploit", est)

    # ---- learning -----------------------------------------------------------------------
    def observe(self, decision: Decision, kernel_s: float) -> None:
        """Feed back the kernel time of the decision's schedule (event-profiled, seconds)."""
        with self._lock:
            self._observe(decision, kernel_s)

    def _observe(self, decision: Decision, kernel_s: float) -> None:
        if not (kernel_s > 0 and math.isfinite(kernel_s)):
            return
        y = math.log(decision.flops / kernel_s / 1e9)
        a = decision.schedule.key()
        skey, cls = decision.key, decision.cls
        st = self._shape_stats(skey, a)
        mean_before, n_before = self._mean(st)

        # Drift: innovations feed the EWMA context feature and the Page-Hinkley test.
        if n_before >= 1.0:
            innov = y - mean_before
            # Noise is estimated from innovations clipped at 3 sd: a level shift is drift
            # (the detector's business), not noise, and must not widen every posterior.
            # Per class (short kernels are much noisier than long ones), robust: a running
            # mean absolute innovation (clipped at 4 sd, sd = 1.25 x MAD), started from the
            # prior noise_sd with the weight of 8 observations, then 1/n down to 0.02, so the
            # drift test's scale is right after a few dozen observations and one early
            # outlier does not inflate it for long.
            nv = self._noise.get(cls)
            if nv is None:
                nv = self._noise[cls] = [self.noise_sd**2, 0.0, self.noise_sd / 1.25]
            dev = min(abs(innov) * math.sqrt(n_before / (n_before + 1)), 4.0 * 1.25 * nv[2])
            w = max(0.02, 1.0 / (nv[1] + 9.0))
            nv[2] = (1.0 - w) * nv[2] + w * dev
            nv[1] += 1.0
            nv[0] = max(self.noise_floor, 1.25 * nv[2]) ** 2
            clipped = min(innov**2 * n_before / (n_before + 1), 9.0 * self._noise_var)
            self._noise_var = max(self.noise_floor**2, 0.98 * self._noise_var + 0.02 * clipped)
            self._drift = 0.9 * self._drift + 0.1 * innov
            sd = math.sqrt(nv[0])
            ph = self._ph.setdefault((cls, a), PageHinkley(self.drift_delta, self.drift_threshold))
            ph.delta = max(self.drift_delta, self.drift_delta_sd * sd)
            ph.threshold = max(self.drift_threshold, self.drift_threshold_sd * sd)
            # Clipped at 4 sd: one outlier (a preempted run) is not a change of level, while a
            # real shift keeps coming and crosses the threshold within a few calls.
            bound = 4.0 * sd
            direction = ph.update(max(-bound, min(bound, innov)))
            if direction != 0:
                self._on_drift(cls, direction)
                st = self._shape_stats(skey, a)

        g = self.discount
        st *= g
        st += (1.0, y, y * y)
        self._note_seen(a, skey)
        self._touch("shape", f"{skey}|{a}")

        static_key = decision.static.key()
        if a == static_key:
            self._static_seen[skey] = self.calls
            if decision.reason == "probe":
                probe = self._probe.setdefault(skey, [0, self.probe_min])
                probe[0], probe[1] = 0, min(self.probe_max, probe[1] * 2)
        else:
            mean_st, n_st = self._mean(self._shape_stats(skey, static_key))
            if n_st > 1e-9:
                self._lin_update(a, decision.x, y - mean_st)
                fresh = self._static_seen.get(skey, -1) > self._alarm_at.get(cls, -1)
                if decision.reason == "exploit" and fresh:
                    t_static = decision.flops / (math.exp(mean_st) * 1e9)
                    self._window.append((kernel_s, t_static, skey, a))
                    self._check_safety()

        stats = self._get("count", "totals", 4)
        stats += (1.0, 1.0 if decision.explored else 0.0, 0.0, 0.0)
        self._touch("count", "totals")
        self._since_sync += 1
        if self.store is not None and self._since_sync >= self.sync_every:
            self.flush()

    def _on_drift(self, cls: str, direction: int = -1) -> None:
        self.drift_alarms += 1
        # Two classes changing the same way within `drift_boost` calls: the device changed
        # (load, clocks), so every class forgets, not only those that noticed.
        recent = [c for c, (at, d) in self._alarms.items()
                  if c != cls and d == direction and self.calls - at <= self.drift_boost]
        self._alarms[cls] = (self.calls, direction)
        device_wide = bool(recent)
        if self.fallback_active:
            self.fallback_until = self.calls  # what the fallback judged no longer holds
        classes = set()
        for (kind, key), st in self._cur.items():
            if kind == "shape":
                skey = key.split("|", 1)[0]
                try:
                    m, n, k, ta, tb = parse_shape_key(skey)
                except ValueError:
                    continue
                c = f"{shape_class(m, n, k)}{'T' if ta else 'N'}{'T' if tb else 'N'}"
                if device_wide or c == cls:
                    classes.add(c)
        classes.add(cls)
        for c in classes:
            self._boost_until[c] = self.calls + self.drift_boost
            self._alarm_at[c] = self.calls
        for (kind, key), st in self._cur.items():
            if kind != "shape":
                continue
            skey = key.split("|", 1)[0]
            try:
                m, n, k, ta, tb = parse_shape_key(skey)
            except ValueError:
                continue
            if f"{shape_class(m, n, k)}{'T' if ta else 'N'}{'T' if tb else 'N'}" in classes:
                # Forget: the device changed, old means would mislead. The static choice's
                # mean is kept as one pseudo-observation (a stale level, re-probed at once)
                # so the other arms' new measurements are used from their first one
                # instead of the regression's guess until the probe; theirs are zeroed (a
                # stale ranking is what the change invalidates).
                if key.split("|", 1)[1] == self._static(m, n, k).key():
                    self._shrink(st)
                else:
                    st[:] = 0.0
                self._dirty.add((kind, key))
                # probe the static choice at the next opportunity: its estimate is stale
                self._probe[skey] = [self.probe_min, self.probe_min]
        for (c, _), ph in self._ph.items():
            if c in classes:
                ph.reset()
        self._window.clear()
        stats = self._get("count", "totals", 4)
        stats[3] += 1
        self._touch("count", "totals")

    @staticmethod
    def _shrink(st: np.ndarray) -> None:
        if st[0] > 1.0:
            st *= 1.0 / st[0]  # one pseudo-observation at the same mean and spread

    def _check_safety(self) -> None:
        if len(self._window) < self.safety_min:
            return
        observed = sum(w[0] for w in self._window)
        static = sum(w[1] for w in self._window)
        ratios = np.log([w[0] / w[1] for w in self._window])
        se = float(ratios.std(ddof=1)) / math.sqrt(len(ratios))
        significant = float(ratios.mean()) - 2.0 * se > 0.0
        if observed > (1.0 + self.safety_tol) * static and significant:
            self.trips += 1
            self.fallback_until = self.calls + self.cooldown * 2 ** (self.trips - 1)
            for _, _, skey, a in self._window:
                k = ("shape", f"{skey}|{a}")
                if k in self._cur:
                    self._shrink(self._cur[k])
                    self._dirty.add(k)
            self._window.clear()
            stats = self._get("count", "totals", 4)
            stats[2] += 1
            self._touch("count", "totals")

    # ---- reporting ----------------------------------------------------------------------
    @property
    def fallback_active(self) -> bool:
        return self.calls < self.fallback_until

    def summary(self) -> dict:
        totals = self._cur.get(("count", "totals"), np.zeros(4))
        return {
            "calls": self.calls,
            "explored": self.explored,
            "explore_share": self.explored / self.calls if self.calls else 0.0,
            "explore_bound": self.explore_share,
            "explore_counts": list(EXPLORATION),
            "epoch": {"calls": self.epoch_calls, "explored": self.epoch_explored},
            "decisions": dict(self.counts),
            "safety_trips": self.trips,
            "fallback_active": self.fallback_active,
            "drift_alarms": self.drift_alarms,
            "noise_sd": math.sqrt(self._noise_var),
            "noise_sd_by_class": {c: round(math.sqrt(v[0]), 4) for c, v in self._noise.items()},
            "arms": [a.key() for a in self.arms],
            "clock_feature": "absent (0, flagged)" if self.clock_proxy is None else "callable",
            "persisted_totals": {"observations": float(totals[0]), "explored": float(totals[1]),
                                 "safety_trips": float(totals[2]), "drift_alarms": float(totals[3])},
            "state_file": str(self.store.path) if self.store is not None else None,
            "state_note": self.note,
        }


_selectors: dict[str, OnlineSelector] = {}
_selectors_lock = threading.Lock()


def get_selector(rt, **kwargs) -> OnlineSelector:
    """The process's one online selector of a runtime's device (persistent state), created on
    first use with the device table's candidates as arms. For `matmul(..., selector="online")`."""
    key = f"{rt.device.index}:{rt.device.fingerprint}"
    with _selectors_lock:
        sel = _selectors.get(key)
        if sel is None:
            sel = _selectors[key] = OnlineSelector.for_runtime(rt, **kwargs)
        return sel
