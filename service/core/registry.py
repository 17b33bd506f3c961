"""Which versions of which models serve, the current version of each, and who still holds a retired one.

Every request holds a *lease* on the version that admitted it, from admission
until its answer is computed. A version is *current* when it is the highest
READY version of its model; switching the current version is one assignment
under the lock, so each request sees the old or the new version, never a mix.
A retired version (unloaded, or replaced on reload) takes no new lease and is
released (its batcher thread stopped, its memory freed) when its last lease
ends. The registry is safe to call from any thread.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from service.core.batching import Batcher
from service.core.models import LoadedModel, ModelInfo
from service.core.statistics import StatisticsRecorder
from service.errors import NotFound, Unavailable
from service.metrics import MODEL_READY, VERSION_REQUESTS, VERSIONS_LOADED

logger = logging.getLogger(__name__)


class VersionState(enum.Enum):
    """Where a version is in its life: LOADING -> READY -> UNLOADING -> gone, or LOADING -> FAILED.

    UNLOADED is never held here: model control reports it for a repository version the registry
    does not hold (unloaded, or not loaded yet), so that clients can see what there is to load.
    """

    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"
    UNLOADED = "UNLOADED"


@dataclass
class ServedVersion:
    """A loaded, warm version: its model and the batcher that feeds it."""

    model: LoadedModel
    batcher: Batcher
    statistics: StatisticsRecorder = field(default_factory=StatisticsRecorder)  # what its batcher records into
    leases: int = 0
    retired: bool = False

    @property
    def info(self) -> ModelInfo:
        return self.model.info


@dataclass(frozen=True)
class VersionStatus:
    """One row of the index: a model version, its state and, when FAILED, why."""

    name: str
    version: str
    state: VersionState
    reason: str = ""
    weights_sha256: str = ""


@dataclass
class _Version:
    state: VersionState
    served: ServedVersion | None = None
    reason: str = ""
    fingerprint: object = None  # what the files looked like when it was loaded (repository versions)


@dataclass
class _Model:
    versions: dict[str, _Version] = field(default_factory=dict)
    current: ServedVersion | None = None
    in_repository: bool = False


def version_key(version: str) -> tuple[int, str]:
    """Order versions numerically; digest-named versions (models outside the repository) sort first."""
    return (int(version), "") if version.isdigit() else (-1, version)


class ModelRegistry:
    """Versions by model name; ``release`` is called (once, without the lock) for each released version."""

    def __init__(self, release: Callable[[ServedVersion], None]) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._release = release
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(model name)`` after each change of a model's states (health, readiness)."""
        self._listeners.append(listener)

    # -- serving --------------------------------------------------------

    def acquire(self, name: str, version: str = "") -> ServedVersion:
        """Lease the version that serves ``name`` (the current one unless ``version`` pins one)."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise NotFound(f"model {name!r} is not served; served models: {', '.join(self._served_names()) or 'none'}")
            if version:
                entry = model.versions.get(version)
                served = entry.served if entry is not None and entry.state is VersionState.READY else None
                if served is None:
                    ready = [v for v, e in model.versions.items() if e.state is VersionState.READY]
                    raise NotFound(
                        f"model {name!r} has no ready version {version!r}; ready versions: {', '.join(ready) or 'none'}"
                    )
            else:
                served = model.current
                if served is None:
                    if any(e.state is VersionState.LOADING for e in model.versions.values()):
                        raise Unavailable(f"model {name!r} is loading; retry shortly")
                    raise NotFound(f"model {name!r} has no ready version ({self._describe(model)})")
            served.leases += 1
        VERSION_REQUESTS.labels(name, served.info.version).inc()
        return served

    def release(self, served: ServedVersion) -> None:
        """End one lease; the last lease of a retired version releases it."""
        with self._lock:
            served.leases -= 1
            last = served.retired and served.leases == 0
            if last:
                self._forget(served)
        if last:
            self._released(served)

    @contextmanager
    def lease(self, name: str, version: str = "") -> Iterator[ServedVersion]:
        """Hold the version that serves ``name`` (see :meth:`acquire`) for the block's duration."""
        served = self.acquire(name, version)
        try:
            yield served
        finally:
            self.release(served)

    # -- control --------------------------------------------------------

    def begin_loading(self, name: str, version: str, fingerprint: object = None, *, in_repository: bool = True) -> None:
        """Show ``version`` as LOADING; a READY version of the same number keeps serving until replaced."""
        with self._lock:
            model = self._models.setdefault(name, _Model(in_repository=in_repository))
            entry = model.versions.get(version)
            if entry is None or entry.served is None:
                model.versions[version] = _Version(VersionState.LOADING, fingerprint=fingerprint)
        self._changed(name)

    def publish(self, name: str, version: str, served: ServedVersion, fingerprint: object = None, *, in_repository: bool = True) -> None:
        """Make a loaded, warm version READY; it becomes current if it is the model's highest ready version."""
        replaced: ServedVersion | None = None
        with self._lock:
            model = self._models.setdefault(name, _Model(in_repository=in_repository))
            old = model.versions.get(version)
            if old is not None and old.served is not None:
                replaced = old.served
            model.versions[version] = _Version(VersionState.READY, served=served, fingerprint=fingerprint)
            self._elect(model)
        logger.info("model %s version %s is READY", name, version)
        if replaced is not None:
            self._retire(replaced)
        self._changed(name)

    def fail(self, name: str, version: str, reason: str, fingerprint: object = None) -> None:
        """Record that ``version`` could not be loaded; a READY instance of it keeps serving."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                return
            entry = model.versions.get(version)
            if entry is not None and entry.served is not None:
                entry.reason = reason  # a reload failed: the loaded instance still serves
            else:
                model.versions[version] = _Version(VersionState.FAILED, reason=reason, fingerprint=fingerprint)
        logger.error("model %s version %s FAILED: %s", name, version, reason)
        self._changed(name)

    def retire(self, name: str, version: str | None = None) -> list[str]:
        """Unload one version of ``name`` (or all): no new leases; released after the last one. Returns the versions."""
        released: list[ServedVersion] = []
        retired_versions: list[str] = []
        with self._lock:
            model = self._models.get(name)
            if model is None:
                return []
            for number in [version] if version is not None else list(model.versions):
                entry = model.versions.get(number)
                if entry is None:
                    continue
                retired_versions.append(number)
                if entry.served is None:  # FAILED or LOADING: nothing to release
                    del model.versions[number]
                    continue
                entry.state = VersionState.UNLOADING
                entry.served.retired = True
                if entry.served.leases == 0:
                    released.append(entry.served)
                    self._forget(entry.served)
            self._elect(model)
        for served in released:
            self._released(served)
        self._changed(name)
        return retired_versions

    # -- reading --------------------------------------------------------

    def index(self) -> list[VersionStatus]:
        """Every known version of every model, models in the order they appeared, versions in order."""
        with self._lock:
            return [
                VersionStatus(
                    name, number, entry.state, entry.reason, entry.served.info.weights_sha256 if entry.served else ""
                )
                for name in self._models
                for number, entry in sorted(self._models[name].versions.items(), key=lambda item: version_key(item[0]))
            ]

    def names(self) -> list[str]:
        """Every model with at least one known version, in the order they first appeared."""
        with self._lock:
            return list(self._models)

    def current(self, name: str) -> ModelInfo | None:
        """The metadata of the version serving unpinned requests for ``name``, if any."""
        with self._lock:
            model = self._models.get(name)
            return model.current.info if model is not None and model.current is not None else None

    def served(self) -> list[ServedVersion]:
        """Every loaded version, retired ones included (for shutdown)."""
        with self._lock:
            return [e.served for m in self._models.values() for e in m.versions.values() if e.served is not None]

    def in_repository(self, name: str) -> bool:
        with self._lock:
            model = self._models.get(name)
            return model is not None and model.in_repository

    def fingerprint(self, name: str, version: str) -> tuple[VersionState, object] | None:
        """The state of a version and the fingerprint of the files it was loaded (or failed) from."""
        with self._lock:
            model = self._models.get(name)
            entry = model.versions.get(version) if model is not None else None
            return None if entry is None else (entry.state, entry.fingerprint)

    # -- internals (call with the lock held, except _released and _changed) --

    def _served_names(self) -> list[str]:
        return [name for name, model in self._models.items() if model.current is not None]

    @staticmethod
    def _describe(model: _Model) -> str:
        states = [f"{number} {entry.state.value}" for number, entry in model.versions.items()]
        return "versions: " + (", ".join(states) or "none")

    @staticmethod
    def _elect(model: _Model) -> None:
        ready = [(version_key(v), e.served) for v, e in model.versions.items() if e.state is VersionState.READY]
        model.current = max(ready, key=lambda item: item[0])[1] if ready else None

    def _retire(self, served: ServedVersion) -> None:
        with self._lock:
            served.retired = True
            last = served.leases == 0
        if last:
            self._released(served)

    def _forget(self, served: ServedVersion) -> None:
        for name, model in list(self._models.items()):
            for number, entry in list(model.versions.items()):
                if entry.served is served and entry.state is VersionState.UNLOADING:
                    del model.versions[number]
            if not model.versions:
                del self._models[name]

    def _released(self, served: ServedVersion) -> None:
        logger.info("model %s version %s released", served.info.name, served.info.version)
        self._release(served)
        self._changed(served.info.name)

    def _changed(self, name: str) -> None:
        with self._lock:
            model = self._models.get(name)
            ready = model is not None and model.current is not None
            loaded = sum(1 for e in model.versions.values() if e.served is not None) if model is not None else 0
        MODEL_READY.labels(name).set(1 if ready else 0)
        VERSIONS_LOADED.labels(name).set(loaded)
        for listener in self._listeners:
            try:
                listener(name)
            except Exception:
                logger.exception("model state listener failed for %s", name)
